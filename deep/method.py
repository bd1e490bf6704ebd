"""Every network of :mod:`deep.models` as a segbench Method, trained by :mod:`deep.train`.

One method is registered per network name (``fcn32s``, ``fcn16s``, ``fcn8s``,
``deconvnet``, ``unet``, ``segnet``, ``segnet-basic``, ``dilatednet``): a subclass of
:class:`DeepMethod` whose ``network`` is that name, created by :func:`register_networks`
for every name of :func:`deep.models.model_names` at import.

Protocol additions a runner may use (both optional, both used by ``bench.runner``):

* ``method.run_dir = Path(...)`` before ``fit``: where ``history.csv``, ``curves.png``,
  ``progress.png``, the checkpoints ``last.pt`` / ``best.pt`` (while training; removed after a
  successful fit unless ``keep_checkpoints``) and the final ``model.pt`` go (default: a new
  temporary folder under ``results/deep-runs/``).
* ``method.set_validation(split)`` before ``fit``: a validation split, used for the
  per-epoch mIoU, the ``progress.png`` figure and for keeping the best epoch's weights
  (``keep="best"``). Without it the last epoch's weights are kept. ``fit(train)`` itself
  never splits anything off the training data.

Predictions are made like the trainer's validation: resize by ``scale``, normalise,
forward, bilinear resize of the logits to the image's size, argmax.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from bench.datasets.types import Split
from bench.methods import Method, MethodError, register_method
from deep import transforms as T
from deep.train import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainConfig,
    TrainResult,
    check_state_compatible,
    load_checkpoint,
    min_input_size,
    predict_logits,
    save_atomic,
    train,
)

#: the networks segbench ships; used only when deep.models cannot be imported at all
KNOWN_NETWORKS = ("fcn32s", "fcn16s", "fcn8s", "deconvnet", "unet", "segnet", "segnet-basic", "dilatednet")

#: default parent of run folders when the runner sets no ``run_dir``
DEFAULT_RUNS_DIR = Path("results") / "deep-runs"


@dataclasses.dataclass
class DeepSettings:
    """Everything that defines a trained network (all of it goes into the record)."""

    width: float = 0.25  # channel multiplier of the network (1.0 = the paper's widths)
    scale: float = 1.0  # input resize factor, training and prediction (small CPU variants)
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9)
    schedule: str = "poly"  # "poly" (power 0.9) | "cosine" | "constant"
    weight_decay: float = 1e-4
    class_weights: str = "none"  # "none" | "median-freq"
    amp: str = "none"  # "none" | "bf16" | "fp16": autocast in training and prediction
    crop: Any = None  # training crop: None/0 = whole images, an int (square) or (height, width)
    scale_range: tuple = (1.0, 1.0)  # random rescale augmentation (low, high)
    hflip: bool = True  # random horizontal flips
    jitter: float = 0.0  # colour jitter strength, 0 = off
    pretrained: str | None = None  # None (from scratch) | "imagenet" | path (VGG16 file or a segbench checkpoint)
    from_scratch: bool = False  # with pretrained="imagenet": train from scratch if the weights are missing
    keep: str = "last"  # "last" | "best" (by val mIoU: optimistic when the scored split is the validation split)
    batch_eval: int = 4  # images per forward pass in predict_batch
    num_workers: int = 0  # DataLoader workers
    val_every: int = 1
    grad_clip: float = 0.0  # max gradient norm, 0 = off
    channels_last: bool = False
    compile: bool = False  # torch.compile for training
    deterministic: bool = False  # torch.use_deterministic_algorithms(True, warn_only=True)
    resume: bool = False  # continue from run_dir/last.pt when it exists (the runner does so anyway; see Runner)
    keep_checkpoints: bool = False  # after training keep last.pt/best.pt (with optimiser state); default: model.pt only

    def __post_init__(self) -> None:
        if isinstance(self.crop, list):
            self.crop = tuple(self.crop)
        if isinstance(self.scale_range, list):
            self.scale_range = tuple(self.scale_range)
        checks = [
            (self.width > 0, f"width must be > 0, got {self.width}"),
            (self.pretrained is None or isinstance(self.pretrained, str),
             f"pretrained must be None, 'imagenet' or a path, got {self.pretrained!r}"),
            (self.keep in ("best", "last"), f"keep must be 'best' or 'last', got {self.keep!r}"),
            (self.batch_eval >= 1, f"batch_eval must be >= 1, got {self.batch_eval}"),
            (self.crop is None or isinstance(self.crop, (int, tuple)) and not isinstance(self.crop, bool),
             f"crop must be None, 0, an int or (height, width), got {self.crop!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise MethodError(message)
        try:  # the trainer's own checks (epochs >= 1, optimizer names, ...)
            self.train_config()
        except (ValueError, TypeError) as e:
            raise MethodError(str(e)) from None

    def train_config(self, **overrides: Any) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values.update(overrides)
        return TrainConfig(**values)


class DeepMethod(Method):
    """A network of :mod:`deep.models` trained with :func:`deep.train.train`."""

    kind = "deep"
    Settings = DeepSettings
    #: the deep.models name of the network, set on each registered subclass
    network: ClassVar[str] = ""

    def __init__(self, settings: Any = None, *, seed: int = 0, device: str = "cpu", progress: bool = True):
        super().__init__(settings, seed=seed, device=device, progress=progress)
        self.run_dir: Path | None = None
        self.model: torch.nn.Module | None = None
        self.result: TrainResult | None = None
        self.pretrained_loaded: bool = False
        self.kept_weights: str | None = None  # "best" or "last" after fit
        self._validation: Split | None = None
        try:
            self._device = torch.device(device)
        except RuntimeError as e:
            raise MethodError(f"{self.name}: bad device {device!r} ({e})") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise MethodError(f"{self.name}: device {device!r} asked for but CUDA is not available")

    # -- runner hooks -------------------------------------------------------------------
    def set_validation(self, split: Split | None) -> None:
        """Validation split for per-epoch mIoU, progress.png and best-epoch selection."""
        self._validation = split

    # -- fit ----------------------------------------------------------------------------
    def fit(self, train_split: Split) -> None:
        s: DeepSettings = self.settings
        info = train_split.info
        val = self._validation
        if val is not None and val.info.num_classes != info.num_classes:
            raise MethodError(f"{self.name}: validation split has {val.info.num_classes} classes, "
                              f"training split {info.num_classes}")
        if self.run_dir is None:
            DEFAULT_RUNS_DIR.mkdir(parents=True, exist_ok=True)
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=DEFAULT_RUNS_DIR))
        self.run_dir = Path(self.run_dir)

        torch.manual_seed(self.seed)  # the initial weights depend on the seed only
        model = self._create_model(info.num_classes)
        cfg = s.train_config(device=str(self._device), seed=self.seed, checkpoint_dir=str(self.run_dir),
                             resume=s.resume or self.resume_interrupted)
        try:
            result = train(model, train_split, val, cfg, self.run_dir, progress=self.progress,
                           model_name=self.network)
        except CheckpointError as e:
            raise MethodError(f"{self.name}: {e}") from None
        self.kept_weights = "best" if s.keep == "best" and result.best_state is not None else "last"
        model.load_state_dict(result.best_state if self.kept_weights == "best" else result.final_state)
        model.to(self._device).eval()
        # the weights live in the model (and in run_dir); drop the copies
        self.result = dataclasses.replace(result, final_state={}, best_state=None)
        self.model, self.info = model, info
        self._save_final_weights(model, info.num_classes)

    #: the weights kept after a successful fit, loadable with ``pretrained=<path>``
    WEIGHTS_FILE = "model.pt"

    def _save_final_weights(self, model: torch.nn.Module, num_classes: int) -> None:
        """Write ``run_dir/model.pt`` (the kept weights only) and, unless ``keep_checkpoints``,
        delete the training checkpoints: they hold the optimiser state too (Adam: twice the
        weights again) and serve only to resume a run that has now finished."""
        assert self.run_dir is not None and self.result is not None
        epoch = self.result.best_epoch if self.kept_weights == "best" else (
            self.result.history[-1]["epoch"] if self.result.history else 0)
        save_atomic({"format": CHECKPOINT_FORMAT, "model_name": self.network, "num_classes": num_classes,
                      "epoch": epoch, "kept": self.kept_weights, "settings": self.settings_dict(),
                      "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
                     self.run_dir / self.WEIGHTS_FILE)
        if not self.settings.keep_checkpoints:
            for name in ("last.pt", "best.pt"):
                (self.run_dir / name).unlink(missing_ok=True)

    def _create_model(self, num_classes: int) -> torch.nn.Module:
        from deep.models import create_model

        try:
            from deep.weights import WeightsUnavailable
        except ImportError:  # pragma: no cover - deep.weights ships with deep.models
            WeightsUnavailable = RuntimeError  # noqa: N806
        s: DeepSettings = self.settings
        pretrained = s.pretrained
        checkpoint = None
        if pretrained is not None and pretrained.lower() != "imagenet" and _is_training_checkpoint(pretrained):
            checkpoint, pretrained = pretrained, None
        try:
            model = create_model(self.network, num_classes=num_classes, width=s.width, pretrained=pretrained)
            self.pretrained_loaded = pretrained is not None
        except WeightsUnavailable as e:
            if not s.from_scratch:
                raise MethodError(f"{_named(self.name, e)} (or set from_scratch=true to train without them)") from None
            warnings.warn(f"{self.name}: pretrained weights unavailable, training from scratch: {e}", stacklevel=3)
            torch.manual_seed(self.seed)
            model = create_model(self.network, num_classes=num_classes, width=s.width, pretrained=None)
        except (ValueError, TypeError) as e:
            raise MethodError(_named(self.name, e)) from None
        if checkpoint is not None:
            try:
                ckpt = load_checkpoint(checkpoint, model_name=self.network, num_classes=num_classes)
                check_state_compatible(model.state_dict(), ckpt["model"], checkpoint)
            except CheckpointError as e:
                raise MethodError(f"{self.name}: {e}") from None
            model.load_state_dict(ckpt["model"])
            self.pretrained_loaded = True
        return model

    # -- predict ------------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> np.ndarray:
        return self._predict_same_size([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-size images go through the network together, ``batch_eval`` at a time."""
        self._require_model()
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(tuple(np.shape(im)), []).append(i)
        step = self.settings.batch_eval
        for indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for i, pred in zip(chunk, self._predict_same_size([images[i] for i in chunk])):
                    out[i] = pred
        return out  # type: ignore[return-value]

    def _predict_same_size(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        model = self._require_model()
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise MethodError(f"{self.name}: expected an HxWx3 uint8 RGB image, got {im.dtype} {im.shape}")
        s: DeepSettings = self.settings
        h, w = images[0].shape[:2]
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(images)).to(self._device).permute(0, 3, 1, 2)
            x = T.normalize_images(x, s.scale)
            logits = predict_logits(model, x, (h, w), amp=s.amp, channels_last=s.channels_last,
                                    min_size=min_input_size(model))
            labels = logits.argmax(1).to(torch.int32).cpu().numpy()
        return list(labels)

    def _require_model(self) -> torch.nn.Module:
        self._require_fitted()
        assert self.model is not None
        return self.model

    # -- optional interface -------------------------------------------------------------
    def sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def num_parameters(self) -> int | None:
        if self.model is None:
            return None
        return sum(p.numel() for p in self.model.parameters())

    def extra_metrics(self) -> dict[str, Any]:
        if self.result is None:
            return {}
        return {
            "network": self.network,
            **self.result.summary(),
            "kept_weights": self.kept_weights,
            "pretrained_loaded": self.pretrained_loaded,
            "train_time_s": self.result.train_time_s,
        }


def _named(name: str, error: Exception) -> str:
    """The error's message, prefixed with the method name unless it starts with it."""
    message = str(error)
    return message if message.startswith(f"{name}:") else f"{name}: {message}"


def _is_training_checkpoint(path: str) -> bool:
    """True for a file written by deep.train (last.pt/best.pt), False for anything else."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def _class_name(network: str) -> str:
    return "Deep" + "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", network) if part)


def register_networks(names: Sequence[str]) -> dict[str, type[DeepMethod]]:
    """Register one DeepMethod subclass per network name; returns them by name."""
    classes = {}
    for network in names:
        cls = type(_class_name(network), (DeepMethod,), {
            "network": network, "__module__": __name__,
            "__doc__": f"The {network} network of deep.models trained by deep.train.",
        })
        classes[network] = register_method(network)(cls)
    return classes


def _network_names() -> list[str]:
    try:
        from deep.models import model_names

        return list(model_names())
    except Exception as e:  # a broken network module must not hide the working ones' methods
        warnings.warn(f"deep.models.model_names() failed ({type(e).__name__}: {e}); "
                      f"registering the known network names", stacklevel=2)
        return list(KNOWN_NETWORKS)


NETWORK_METHODS = register_networks(_network_names())
