"""The one method interface of segbench, and the method registry.

A method is a class with a ``kind`` ("classical" or "deep"), a ``Settings`` dataclass whose
fields are everything that defines it, and declared ``capabilities``. It is created by
:func:`create_method` (unknown settings are an error at once, not late), fitted with
``fit(train, val, context)`` and then predicts one HxW label map per RGB image::

    method = create_method("sobel", {"n_segments": 300})
    method.fit(train_split, val_split, FitContext(run_dir=Path("run"), device="cpu"))
    labels = method.predict(image)

Implementations override ``_fit`` (``self.context`` is set when it runs) and ``predict``.
Registering a method is one entry point in the ``segbench.methods`` group of a package's
``pyproject.toml``; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.datasets.types import DatasetInfo, Split
from bench.errors import SegbenchError
from bench.files import write_json_atomic
from bench.registry import Registry

#: the file :meth:`Method.save` writes last into a folder: what was fitted (method, settings,
#: the dataset's classes); its presence means the folder holds a complete fitted state
FITTED_FILE = "fitted.json"
FITTED_FORMAT = "segbench-fitted-v1"


class MethodError(SegbenchError, ValueError):
    """Bad settings or a method used wrongly (e.g. predict before fit)."""


@dataclasses.dataclass
class NoSettings:
    """Settings of a method that has none."""


def runtime_setting(default: Any, **kwargs: Any) -> Any:
    """A settings field that changes how a method runs but not what it computes (workers,
    checkpoints kept, ...): it is recorded but left out of the job id, so changing it does
    not redo finished jobs."""
    return dataclasses.field(default=default, metadata={"affects_result": False}, **kwargs)


def predict_setting(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A settings field that changes what a method predicts from a fitted state but not the
    fit (test-time augmentation, ...): it enters the job id, not the fit id, so jobs that
    differ only in it share one fit (``bench.run.plan.Job.fit_id``) and a saved state loads
    with any value of it."""
    return dataclasses.field(default=default, metadata={"affects_fit": False}, **kwargs)


def fit_settings(cls: type["Method"], settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` that define ``cls``'s fit: its :func:`result_settings`
    without the :func:`predict_setting` fields."""
    predict_only = {f.name for f in dataclasses.fields(cls.Settings) if not f.metadata.get("affects_fit", True)}
    return {k: v for k, v in result_settings(cls, settings).items() if k not in predict_only}


def result_settings(cls: type["Method"], settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` that define what ``cls`` computes: its Settings fields
    that are not :func:`runtime_setting`; names that are no field (any longer) are dropped."""
    keep = {f.name for f in dataclasses.fields(cls.Settings) if f.metadata.get("affects_result", True)}
    return {k: v for k, v in settings.items() if k in keep}


def id_settings(cls: type["Method"], settings: dict[str, Any]) -> dict[str, Any]:
    """What of ``settings`` enters a job id: the :func:`result_settings` that differ from
    ``cls``'s defaults, and ``cls.version`` when it is above 1."""
    defaults = dataclasses.asdict(cls.Settings())
    out = {k: v for k, v in result_settings(cls, settings).items()
           if k not in defaults or _comparable(v) != _comparable(defaults[k])}
    if cls.version != 1:
        out["__version__"] = cls.version
    return out


def _comparable(value: Any) -> Any:
    """Settings as JSON would hold them (tuples as lists), so a record's settings compare."""
    if isinstance(value, (tuple, list)):
        return [_comparable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class FitContext:
    """What the runner gives a method for one fit, besides the data."""

    #: the job's own folder (checkpoints, curves, fitted state); None: the method needs none
    #: or makes a temporary one
    run_dir: Path | None = None
    #: continue from what an interrupted earlier attempt of the same job left in ``run_dir``
    resume: bool = False
    device: str = "cpu"
    seed: int = 0
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """Optional parts of the interface a method declares (the runner asks, never probes)."""

    #: ``fit`` uses a validation split when one is given (per-epoch scores, best epoch)
    validation: bool = False
    #: ``partition_oracle(image, label)``: the best labelling of the method's own regions
    partition_oracle: bool = False
    #: ``create_network(num_classes)``: the torch module (speed sweeps, model tables)
    network: bool = False
    #: ``edge_strength(image)``: an HxW boundary strength map (the BSDS500 benchmark)
    edge_map: bool = False
    #: ``predict_with_stages(image)``: (labels, seconds by stage) for per-stage timing
    stages: bool = False
    #: ``save(folder)`` writes the fitted state, ``load(folder)`` reads it back (``bench
    #: predict``), in formats whose reading runs no code (JSON, .npz, skops, torch weights)
    save: bool = False


class Method(ABC):
    #: registry name, set by the registry when the class is looked up
    name: ClassVar[str] = ""
    #: "classical" or "deep": plots and leaderboards mark the two apart
    kind: ClassVar[str] = "classical"
    #: dataclass of the settings that define the method; every field goes into the record
    Settings: ClassVar[type] = NoSettings
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: raise when a change of defaults or of the algorithm changes what a job computes, so
    #: that its earlier records no longer count as done (it enters the job id)
    version: ClassVar[int] = 1

    def __init__(self, settings: Any = None):
        self.settings = settings if settings is not None else self.Settings()
        self.context = FitContext()
        self.info: DatasetInfo | None = None  # set by fit: the classes it learned

    # -- the interface ------------------------------------------------------------------
    def fit(self, train: Split, val: Split | None = None, context: FitContext | None = None) -> None:
        """Learn from ``train``; ``val`` is used only by methods whose capabilities say so."""
        context = context or FitContext()
        if val is not None and val.info.num_classes != train.info.num_classes:
            raise MethodError(f"{self.name}: the validation split has {val.info.num_classes} classes, "
                              f"the training split {train.info.num_classes}")
        self.context = context
        self._fit(train, val if self.capabilities.validation else None)
        self.info = train.info

    @abstractmethod
    def _fit(self, train: Split, val: Split | None) -> None:
        """The method's own fitting; ``self.context`` holds the run folder, device, seed."""

    @abstractmethod
    def predict(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> HxW integer label map of the same height and width."""

    # -- optional -----------------------------------------------------------------------
    def num_parameters(self) -> int | None:
        """Learned parameters (None when the notion does not apply)."""
        return None

    def extra_metrics(self) -> dict[str, Any]:
        """Method-specific figures gathered during fit and predict (e.g. regions per image);
        called once after the evaluation split is predicted, stored in the record's ``extra``."""
        return {}

    def sync(self) -> None:
        """Wait for queued device work (CUDA) so that timings are honest."""

    # -- the fitted state (capabilities.save) -------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the fitted state into ``folder``: the method's own files, then
        :data:`FITTED_FILE` (method, settings, the dataset's classes and palette)."""
        info = self._require_fitted()
        if not self.capabilities.save:
            raise MethodError(f"{self.name}: this method cannot save its fitted state")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / FITTED_FILE).unlink(missing_ok=True)  # a half-written state never looks complete
        self._save_state(folder)
        write_json_atomic(folder / FITTED_FILE, {
            "format": FITTED_FORMAT, "method": self.name, "version": self.version, "settings": self.settings_dict(),
            "info": {"name": info.name, "class_names": list(info.class_names), "palette": info.palette.tolist(),
                     "ignore_index": info.ignore_index, "citation": info.citation},
        })
        return folder

    @classmethod
    def load(cls, folder: str | Path, settings: Any = None, device: str = "cpu") -> "Method":
        """The fitted method :meth:`save` wrote into ``folder``, ready to predict on ``device``.

        ``settings`` (default: the saved ones) must match the saved ones in every setting of the
        fit (:func:`fit_settings`; predict settings such as test-time augmentation may differ). Reading
        runs no code from the folder (JSON, .npz without pickle, skops with a trusted-types
        list, torch ``weights_only``). MethodError when the folder holds no such state.
        """
        folder = Path(folder)
        if not cls.capabilities.save:
            raise MethodError(f"{cls.name}: this method cannot save or load a fitted state")
        meta = _read_fitted(folder / FITTED_FILE, cls.name)
        version = meta.get("version", cls.version)  # states saved before the field: not checked
        if version != cls.version:
            raise MethodError(f"{folder / FITTED_FILE}: saved by version {version} of {cls.name}, which computes "
                              f"otherwise than this version ({cls.version}): fit it again")
        saved = make_settings(cls, meta["settings"])
        settings = saved if settings is None else settings
        if fit_settings(cls, dataclasses.asdict(settings)) != fit_settings(cls, dataclasses.asdict(saved)):
            raise MethodError(f"{folder / FITTED_FILE}: saved with other settings than the job's")
        method = cls(settings)
        try:
            info = meta["info"]
            method.info = DatasetInfo(**{**info, "class_names": tuple(info["class_names"])})
        except (KeyError, TypeError, ValueError) as e:
            raise MethodError(f"{folder / FITTED_FILE}: bad dataset info ({e})") from None
        method.context = FitContext(run_dir=folder, device=device, progress=False)
        method._load_state(folder)
        return method

    def _save_state(self, folder: Path) -> None:
        """Write what ``predict`` needs besides settings and classes (``capabilities.save``)."""
        raise NotImplementedError(f"{type(self).__name__} declares capabilities.save but has no _save_state")

    def _load_state(self, folder: Path) -> None:
        """Read back what :meth:`_save_state` wrote (``self.info`` and ``self.context`` are set)."""
        raise NotImplementedError(f"{type(self).__name__} declares capabilities.save but has no _load_state")

    # -- helpers ------------------------------------------------------------------------
    def settings_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def _require_fitted(self) -> DatasetInfo:
        if self.info is None:
            raise MethodError(f"{self.name}: predict() called before fit()")
        return self.info

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings_dict().items())
        return f"{self.name}({args})"


def _read_fitted(path: Path, name: str) -> dict[str, Any]:
    """The checked contents of a :data:`FITTED_FILE` of method ``name``."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MethodError(f"{path.parent}: no saved fitted state ({FITTED_FILE} is missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MethodError(f"{path}: not a readable fitted state ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FITTED_FORMAT:
        raise MethodError(f"{path}: not a segbench fitted state (format {FITTED_FORMAT})")
    if meta.get("method") != name:
        raise MethodError(f"{path}: holds the state of method {meta.get('method')!r}, not {name!r}")
    if not isinstance(meta.get("settings"), dict) or not isinstance(meta.get("info"), dict):
        raise MethodError(f"{path}: no settings or dataset info")
    return meta


def _check_method(name: str, cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodError(f"method '{name}': {cls!r} is not a bench.method.Method")
    if cls.kind not in ("classical", "deep"):
        raise MethodError(f"method '{name}': kind must be 'classical' or 'deep', not {cls.kind!r}")
    if not dataclasses.is_dataclass(cls.Settings):
        raise MethodError(f"method '{name}': Settings must be a dataclass")


_REGISTRY: Registry[type[Method]] = Registry("method", "segbench.methods", MethodError, _check_method)
#: decorator for methods defined outside an installed package (tests, notebooks)
register_method = _REGISTRY.register
method_names = _REGISTRY.names
method_class = _REGISTRY.get


def make_settings(cls: type[Method], overrides: dict[str, Any] | None) -> Any:
    """Build ``cls.Settings`` from overrides; unknown names or wrong types are errors."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Settings)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise MethodError(
            f"{cls.name}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields) or '(none)'}"
        )
    defaults = cls.Settings()
    for key, value in overrides.items():
        default = getattr(defaults, key)
        if default is not None and value is not None and not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                overrides[key] = float(value)
            elif isinstance(default, tuple) and isinstance(value, list):
                overrides[key] = tuple(value)
            else:
                raise MethodError(
                    f"{cls.name}: setting {key}={value!r} should be {type(default).__name__}"
                )
    try:
        return cls.Settings(**overrides)
    except (TypeError, ValueError) as e:
        raise MethodError(f"{cls.name}: bad settings {overrides}: {e}") from None


def create_method(name: str, settings: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method (or ``module:Class``) from a settings dict (validated)."""
    cls = method_class(name)
    return cls(make_settings(cls, settings))
