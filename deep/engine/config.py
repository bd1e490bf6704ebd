"""TrainConfig: every setting of a training run, with the one set of defaults segbench uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from bench.method import runtime_setting

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("poly", "cosine", "constant")
CLASS_WEIGHTS = ("none", "median-freq", "sqrt-median-freq")
AMPS = ("none", "bf16", "fp16")
IN_MEMORY = ("auto", "on", "off")
#: settings a resumed run may change without changing what the finished run computes
#: (besides the runtime settings): more epochs continue the schedule's own count
RESUMABLE_CHANGES = ("epochs", "val_every")


@dataclass
class TrainConfig:
    """How a network is trained (the network itself and the run's seed, device and folder
    are given apart). Values are kept as given; :attr:`crop_size` is the normalised crop."""

    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9)
    schedule: str = "poly"  # "poly" (power 0.9, per iteration) | "cosine" | "constant"
    warmup_epochs: float = 0.0  # linear learning-rate warm-up over this many epochs' steps, then the schedule
    weight_decay: float = 1e-4
    class_weights: str = "none"  # "none" | "median-freq" (SegNet's median frequency balancing) | "sqrt-median-freq" (its square root)
    #: recompute BatchNorm running statistics over the training images before each validation
    #: and after the last epoch (deep.engine.batchnorm); networks without BatchNorm: no effect
    precise_bn: bool = True
    # data and augmentation (image and mask transformed together)
    scale: float = 1.0  # input resize factor, training and prediction (small CPU variants)
    scale_range: tuple = (1.0, 1.0)  # random rescale augmentation (low, high)
    crop: Any = None  # training crop: None/0 = whole images, an int (square) or (height, width)
    hflip: bool = True  # random horizontal flips
    jitter: float = 0.0  # colour jitter strength (brightness/contrast/saturation), 0 = off
    # numerics and speed
    amp: str = "none"  # "none" | "bf16" | "fp16": autocast in training and prediction
    #: channels-last memory layout for training and prediction: True, False, or "auto": on
    #: where it was measured to pay (:func:`channels_last_pays`); same numbers to rounding
    channels_last: Any = runtime_setting("auto")
    compile: bool = False  # torch.compile the model for training
    #: torch's fused optimiser kernels where it has them (CPU, CUDA): the same update to rounding
    fused: bool = runtime_setting(True)
    grad_clip: float = 0.0  # max gradient norm, 0 = off
    deterministic: bool = False  # torch.use_deterministic_algorithms(True, warn_only=True)
    val_every: int = 1  # validate every n epochs (and always after the last)
    num_workers: int = runtime_setting(0)  # DataLoader workers
    #: decode (and resize by ``scale``) every image once and keep the splits in memory:
    #: "auto" when they fit in a quarter of the free memory, "on", "off"; same numbers either way
    in_memory: str = runtime_setting("auto")
    #: write last.pt/best.pt, history.csv and the figures after the first epoch, then at most
    #: every this many seconds, and after the last epoch: a resumed run repeats at most that
    #: much work (0 = after every epoch); same numbers either way
    checkpoint_every_s: float = runtime_setting(60.0)

    def __post_init__(self) -> None:
        if isinstance(self.crop, list):
            self.crop = tuple(self.crop)
        if isinstance(self.scale_range, list):
            self.scale_range = tuple(self.scale_range)
        for ok, message in self._checks():
            if not ok:
                raise ValueError(message)

    def _checks(self) -> list[tuple[bool, str]]:
        crop_ok = self.crop is None or (not isinstance(self.crop, bool) and (
            isinstance(self.crop, int) and self.crop >= 0
            or isinstance(self.crop, tuple) and len(self.crop) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in self.crop)))
        range_ok = (isinstance(self.scale_range, tuple) and len(self.scale_range) == 2
                    and 0 < self.scale_range[0] <= self.scale_range[1])
        return [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}"),
            (self.schedule in SCHEDULES,
             f"schedule must be 'poly', 'cosine' or 'constant', got {self.schedule!r}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.class_weights in CLASS_WEIGHTS,
             f"class_weights must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weights!r}"),
            (self.scale > 0, f"scale must be > 0, got {self.scale}"),
            (range_ok, f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}"),
            (crop_ok, f"crop must be None, 0, an int or (height, width) >= 1, got {self.crop!r}"),
            (self.jitter >= 0, f"jitter must be >= 0, got {self.jitter}"),
            (self.amp in AMPS, f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.val_every >= 1, f"val_every must be >= 1, got {self.val_every}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (self.checkpoint_every_s >= 0, f"checkpoint_every_s must be >= 0, got {self.checkpoint_every_s}"),
            (self.channels_last in (True, False, "auto"),
             f"channels_last must be true, false or 'auto', got {self.channels_last!r}"),
            (self.in_memory in IN_MEMORY, f"in_memory must be 'auto', 'on' or 'off', got {self.in_memory!r}"),
        ]

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """The training crop as (height, width); None: whole images."""
        if not self.crop:
            return None
        if isinstance(self.crop, int):
            return self.crop, self.crop
        return int(self.crop[0]), int(self.crop[1])


def channels_last_pays(device: torch.device) -> bool:
    """Whether the channels-last layout speeds training up on ``device``: on CUDA, and on
    CPUs whose oneDNN kernels use AVX-512 (a training step 1.1-1.5x faster on the Intel Xeon
    with AVX-512, 0.94-1.16x on the AVX2 AMD EPYC: docs/BENCHMARKS.md)."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def use_channels_last(setting: Any, device: torch.device) -> bool:
    """The ``channels_last`` setting (True, False, "auto") resolved for ``device``."""
    return channels_last_pays(device) if setting == "auto" else bool(setting)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The :class:`TrainConfig` fields of ``cfg`` (also of a subclass such as DeepSettings)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}


def changed_settings(saved: dict[str, Any], cfg: TrainConfig, seed: int) -> list[str]:
    """Names of the settings (and the seed) in which a resumed run differs from a checkpoint's
    saved ones, leaving out those it may change (runtime settings, :data:`RESUMABLE_CHANGES`)
    and those the checkpoint does not know."""
    current = {**config_dict(cfg), "seed": seed}
    free = set(RESUMABLE_CHANGES) | {f.name for f in dataclasses.fields(TrainConfig)
                                     if not f.metadata.get("affects_result", True)}
    return sorted(k for k, v in saved.items() if k in current and k not in free
                  and current[k] != (tuple(v) if isinstance(v, list) else v))
