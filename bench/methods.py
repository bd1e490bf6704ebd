"""The one method interface of segbench, and the method registry.

A method is a class with a registry name, a ``kind`` ("classical" or "deep") and a
``Settings`` dataclass whose fields are everything that defines it. It is created by
:func:`create_method` (unknown settings are an error at once, not late), fitted on a
training split (``fit`` may do nothing) and then predicts one HxW label map per RGB image.

Adding a method is one file that defines the class with ``@register_method("name")`` and
one line naming that module in ``_MODULES`` below.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np

from bench.datasets.types import DatasetInfo, Split
from bench.errors import SegbenchError
from bench.registry import Registry


class MethodError(SegbenchError, ValueError):
    """Bad settings or a method used wrongly (e.g. predict before fit)."""


@dataclasses.dataclass
class NoSettings:
    """Settings of a method that has none."""


class Method(ABC):
    #: registry name, set by :func:`register_method`
    name: ClassVar[str] = ""
    #: "classical" or "deep": plots and leaderboards mark the two apart
    kind: ClassVar[str] = "classical"
    #: dataclass of the settings that define the method; every field goes into the record
    Settings: ClassVar[type] = NoSettings
    #: set by the runner before ``fit``: the job's ``run_dir`` may hold what an interrupted
    #: earlier attempt of this same job left (a training checkpoint); continue from it
    resume_interrupted: bool = False

    def __init__(self, settings: Any = None, *, seed: int = 0, device: str = "cpu", progress: bool = True):
        self.settings = settings if settings is not None else self.Settings()
        self.seed = seed
        self.device = device
        self.progress = progress
        self.info: DatasetInfo | None = None

    # -- the interface ------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Split) -> None:
        """Learn from a training split (may only record ``train.info``)."""

    @abstractmethod
    def predict(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> HxW integer label map of the same height and width."""

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several images at once; networks override this to run one forward pass."""
        return [self.predict(im) for im in images]

    # -- optional -----------------------------------------------------------------------
    def num_parameters(self) -> int | None:
        """Learned parameters (None when the notion does not apply)."""
        return None

    def extra_metrics(self) -> dict[str, Any]:
        """Method-specific figures gathered during predict (e.g. regions per image).

        Called once after the evaluation split has been predicted; goes into the record
        under ``extra``.
        """
        return {}

    def sync(self) -> None:
        """Wait for queued device work (CUDA) so that timings are honest."""

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


#: modules that register methods; adding a method = one file + one line here
_MODULES: list[str] = [
    "baselines.majority",
    "baselines.edges",
    "baselines.region_growing",
    "baselines.mser",
    "baselines.superpixel_crf",
    "deep.method",  # one method per network in deep.models
]

def _check_method(name: str, cls: type[Method]) -> None:
    if cls.kind not in ("classical", "deep"):
        raise ValueError(f"method '{name}': kind must be 'classical' or 'deep', not {cls.kind!r}")
    if not dataclasses.is_dataclass(cls.Settings):
        raise ValueError(f"method '{name}': Settings must be a dataclass")


_REGISTRY: Registry[type[Method]] = Registry("method", _MODULES, MethodError, _check_method)
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


def create_method(name: str, settings: dict[str, Any] | None = None, **kwargs) -> Method:
    """Instantiate a registered method from a settings dict (validated)."""
    cls = method_class(name)
    return cls(make_settings(cls, settings), **kwargs)
