"""The one trainer of segbench: every network is trained by :func:`train`.

Plain PyTorch in the style of torchvision's ``references/segmentation``: a dataset that
wraps a segbench :class:`~bench.datasets.types.Split`, a DataLoader, and a readable loop
(forward, cross-entropy, backward, step, schedule), validation mIoU after each epoch and
a checkpoint after each epoch.

Usage::

    from deep.models import create_model
    from deep.train import TrainConfig, train

    model = create_model("unet", num_classes=train_split.info.num_classes, width=0.25)
    cfg = TrainConfig(epochs=30, batch_size=8, lr=1e-3, optimizer="adam", crop=(256, 256))
    result = train(model, train_split, val_split, cfg, out_dir="results/runs/unet")
    model.load_state_dict(result.best_state or result.final_state)

What lands in ``out_dir``: ``history.csv`` (one row per epoch), ``curves.png`` (loss and
val mIoU), ``progress.png`` (the first validation images at the first, middle and last
epoch), ``last.pt`` (everything needed to resume) and ``best.pt`` (best weights by val
mIoU). ``cfg.resume=True`` continues from ``last.pt`` at the next epoch and reaches the
same weights as a run that was never interrupted (same seed; bit-identical on CPU).

Several processes (``torchrun``, DistributedDataParallel) train through the same loop:
:mod:`deep.ddp` passes ``parallel=`` an object with the hooks of :class:`SingleProcess`
(training sampler, validation shard, model wrapper, sum over processes, BatchNorm
statistics), and only the writing process (rank 0) writes files.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.datasets.types import Split
from deep import transforms as T

from bench.errors import SegbenchError
from bench.records import fsync_folder

#: bumped when the layout of ``last.pt`` changes
CHECKPOINT_FORMAT = "segbench-train-v1"
#: validation images drawn in ``progress.png``
N_PROGRESS_IMAGES = 3


class CheckpointError(SegbenchError, ValueError):
    """A checkpoint that does not fit the model or dataset it is loaded into."""


# ---------------------------------------------------------------------------------------
# configuration and result
# ---------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-3
    optimizer: str = "adam"  # "sgd" (momentum 0.9) | "adam"
    schedule: str = "poly"  # "poly" (power 0.9, per iteration) | "cosine" | "constant"
    weight_decay: float = 1e-4
    class_weights: str = "none"  # "none" | "median-freq" (SegNet's median frequency balancing)
    # data and augmentation (image and mask transformed together)
    scale: float = 1.0  # resize factor applied to every image first (train and evaluation)
    scale_range: tuple[float, float] = (1.0, 1.0)  # random rescale factor range
    crop: tuple[int, int] | None = None  # random training crop HxW (padded with ignore); None: whole images
    hflip: bool = True
    jitter: float = 0.0  # colour jitter strength (brightness/contrast/saturation), 0 = off
    # numerics and speed
    amp: str = "none"  # "none" | "bf16" | "fp16"
    channels_last: bool = False
    compile: bool = False  # torch.compile the model for training
    grad_clip: float = 0.0  # max gradient norm, 0 = off
    device: str = "cpu"
    num_workers: int = 0
    # reproducibility and bookkeeping
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms(True, warn_only=True)
    val_every: int = 1  # validate every n epochs (and always after the last)
    checkpoint_dir: str | None = None  # where last.pt/best.pt go; None: out_dir
    resume: bool = False  # continue from checkpoint_dir/last.pt when it exists

    def __post_init__(self) -> None:
        if isinstance(self.crop, int):
            self.crop = None if self.crop == 0 else (self.crop, self.crop)
        elif self.crop is not None:
            self.crop = tuple(int(c) for c in self.crop)
            if self.crop == (0, 0):
                self.crop = None
        self.scale_range = tuple(float(s) for s in self.scale_range)
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}"),
            (self.schedule in ("poly", "cosine", "constant"),
             f"schedule must be 'poly', 'cosine' or 'constant', got {self.schedule!r}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.class_weights in ("none", "median-freq"),
             f"class_weights must be 'none' or 'median-freq', got {self.class_weights!r}"),
            (self.scale > 0, f"scale must be > 0, got {self.scale}"),
            (len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1],
             f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}"),
            (self.crop is None or (len(self.crop) == 2 and min(self.crop) >= 1),
             f"crop must be None, 0, an int or (height, width) >= 1, got {self.crop}"),
            (self.jitter >= 0, f"jitter must be >= 0, got {self.jitter}"),
            (self.amp in ("none", "bf16", "fp16"), f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.val_every >= 1, f"val_every must be >= 1, got {self.val_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one row per epoch (see HISTORY_COLUMNS)
    best_epoch: int  # epoch with the best val mIoU (the last epoch when there is no validation)
    best_miou: float  # nan without validation
    final_state: dict[str, torch.Tensor]  # model weights after the last epoch (CPU)
    best_state: dict[str, torch.Tensor] | None  # weights of the best epoch (None without validation)
    out_dir: Path
    train_time_s: float = 0.0  # training time of this call (a resumed run counts only its part)
    # (K, K) confusion matrix of the last validation over the whole validation split
    # (summed over every process); None without validation
    val_confusion: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary for records."""
        return {
            "best_epoch": self.best_epoch,
            "best_val_miou": None if math.isnan(self.best_miou) else self.best_miou,
            "epochs_trained": len(self.history),
            "final_train_loss": self.history[-1]["train_loss"] if self.history else None,
            "train_loss": [row["train_loss"] for row in self.history],
            "val_miou": [None if math.isnan(row["val_miou"]) else row["val_miou"] for row in self.history],
            "run_dir": str(self.out_dir),
        }


HISTORY_COLUMNS = ("epoch", "train_loss", "val_miou", "lr", "train_time_s", "val_time_s", "images_per_s")


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
class SplitDataset(torch.utils.data.Dataset):
    """A segbench Split as (normalised image CxHxW float32, label HxW int64) pairs.

    ``keep_label=True`` (evaluation) transforms the image only and returns the label at
    its original size, so that predictions are scored at the original resolution.
    """

    def __init__(self, split: Split, transform: Callable, *, keep_label: bool = False):
        self.split = split
        self.transform = transform
        self.keep_label = keep_label
        self.num_classes = split.info.num_classes
        self.ignore = T.loss_ignore_index(split.info.ignore_index)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        sample = self.split[index]
        label = np.asarray(sample.label)
        if label.shape != sample.image.shape[:2]:
            raise ValueError(f"sample {sample.id}: label {label.shape} and image {sample.image.shape[:2]} differ in size")
        bad = (label != self.ignore) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            raise ValueError(f"sample {sample.id}: label value {int(label[bad][0])} is neither a class "
                             f"(0..{self.num_classes - 1}) nor the ignore index {self.ignore}")
        image, mask = T.to_tv(sample.image, label)
        if self.keep_label:
            return self.transform(image).as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and random follow the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def median_frequency_weights(labels: Iterable[np.ndarray], num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Median frequency balancing (Eigen & Fergus 2015, used by SegNet on CamVid).

    ``freq(c)`` = pixels of class c / total labelled pixels of the images where c occurs;
    ``weight(c) = median(freq) / freq(c)``, the median over the classes that occur.
    Ignored pixels count nowhere. A class absent from every label map gets weight 1 (it is
    never a target, so its weight does not matter).
    """
    class_pixels = np.zeros(num_classes, np.float64)
    image_pixels = np.zeros(num_classes, np.float64)
    for label in labels:
        lab = np.asarray(label).ravel()
        valid = (lab >= 0) & (lab < num_classes)
        if ignore_index is not None:
            valid &= lab != ignore_index
        counts = np.bincount(lab[valid].astype(np.int64), minlength=num_classes)[:num_classes]
        present = counts > 0
        class_pixels += counts
        image_pixels[present] += counts.sum()
    weights = np.ones(num_classes, np.float64)
    present = class_pixels > 0
    if present.any():
        freq = class_pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)


# ---------------------------------------------------------------------------------------
# model helpers shared with deep.method
# ---------------------------------------------------------------------------------------
def amp_dtype(amp: str) -> torch.dtype | None:
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def check_amp(amp: str, device: torch.device) -> None:
    """Clear error when the device cannot autocast to the requested precision."""
    if amp == "none":
        return
    if not torch.amp.autocast_mode.is_autocast_available(device.type):
        raise ValueError(f"amp={amp!r}: autocast is not available on device '{device.type}'")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("amp='bf16': this GPU does not support bfloat16; use amp='fp16'")


def autocast(device: torch.device, amp: str):
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def min_input_size(model: nn.Module) -> int:
    return int(getattr(model, "min_input_size", 1) or 1)


def predict_logits(
    net: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    out_size: Sequence[int] | None = None,
    *,
    amp: str = "none",
    channels_last: bool = False,
    min_size: int = 1,
) -> torch.Tensor:
    """Float32 logits N x K x H x W of a normalised batch (on the model's device).

    Inputs smaller than ``min_size`` are zero-padded and the logits cropped back; with
    ``out_size`` the logits are resized bilinearly to it (the label's original size).
    """
    h, w = images.shape[-2:]
    x = T.pad_to(images, max(h, min_size), max(w, min_size), 0.0)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, amp):
        logits = net(x)
    logits = logits[..., :h, :w].float()
    if out_size is not None and tuple(out_size) != (h, w):
        logits = F.interpolate(logits, size=tuple(int(s) for s in out_size), mode="bilinear", align_corners=False)
    return logits


def state_to_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def check_state_compatible(model_state: dict[str, torch.Tensor], ckpt_state: dict[str, torch.Tensor], where: str) -> None:
    """Raise CheckpointError naming the first missing/unexpected/mis-shaped tensor."""
    missing = [k for k in model_state if k not in ckpt_state]
    unexpected = [k for k in ckpt_state if k not in model_state]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: checkpoint weights do not fit this model "
            f"(missing: {', '.join(missing[:3]) or '-'}; unexpected: {', '.join(unexpected[:3]) or '-'})"
        )
    for k, v in model_state.items():
        if tuple(v.shape) != tuple(ckpt_state[k].shape):
            raise CheckpointError(
                f"{where}: checkpoint tensor {k} has shape {tuple(ckpt_state[k].shape)}, "
                f"the model's has {tuple(v.shape)} (another width or class count?)"
            )


def load_checkpoint(path: str | os.PathLike, *, model_name: str, num_classes: int) -> dict[str, Any]:
    """Read a trainer checkpoint (``last.pt`` / ``best.pt``) and check that it belongs to
    network ``model_name`` with ``num_classes`` classes."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a segbench training checkpoint (format {CHECKPOINT_FORMAT})")
    if ckpt["model_name"] != model_name:
        raise CheckpointError(f"{path}: checkpoint is of network '{ckpt['model_name']}', not '{model_name}'")
    if ckpt["num_classes"] != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint was trained for {ckpt['num_classes']} classes but the dataset has {num_classes}"
        )
    return ckpt


def save_atomic(obj: Any, path: Path) -> None:
    """Write a checkpoint so that a crash or kill leaves the old file or the new one, never half
    of one: a temporary file in the same folder, flushed and fsynced, renamed over ``path``,
    then the folder fsynced so that the rename itself is on disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


# ---------------------------------------------------------------------------------------
# random state (saved in checkpoints so that a resumed run continues identically)
# ---------------------------------------------------------------------------------------
def _rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
        "loader": loader_generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    loader_generator.set_state(state["loader"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------
# optimiser and schedule
# ---------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_iters: int):
    """Per-iteration learning-rate schedule over ``total_iters`` steps."""
    total = max(1, total_iters)
    if cfg.schedule == "poly":
        factor = lambda it: (1 - min(it, total) / total) ** 0.9  # noqa: E731
    elif cfg.schedule == "cosine":
        factor = lambda it: 0.5 * (1 + math.cos(math.pi * min(it, total) / total))  # noqa: E731
    else:
        factor = lambda it: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------
def validation_confusion(
    net: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    num_classes: int,
    ignore_index: int | None,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    min_size: int = 1,
    keep: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(K, K) int64 confusion matrix over a loader of (image, label) pairs of batch size 1,
    each scored at its label's original size; matrices of disjoint loaders add up to the
    matrix of their union. Also returns the predicted maps of the first ``keep`` images."""
    from bench.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, ignore_index)
    kept: list[np.ndarray] = []
    with torch.inference_mode():
        for i, (image, label) in enumerate(tqdm(loader, desc="validate", unit="img", leave=False, disable=not progress)):
            logits = predict_logits(net, image.to(device), label.shape[-2:], amp=amp,
                                    channels_last=channels_last, min_size=min_size)
            pred = logits.argmax(1)[0].cpu().numpy().astype(np.int32)
            cm.update(pred, label[0].numpy())
            if i < keep:
                kept.append(pred)
    return cm.matrix, kept


def _predict_first(net, dataset: SplitDataset, k: int, *, device, amp, channels_last, min_size) -> list[np.ndarray]:
    preds = []
    with torch.inference_mode():
        for i in range(min(k, len(dataset))):
            image, label = dataset[i]
            logits = predict_logits(net, image[None].to(device), label.shape[-2:], amp=amp,
                                    channels_last=channels_last, min_size=min_size)
            preds.append(logits.argmax(1)[0].cpu().numpy().astype(np.int32))
    return preds


def snapshot_epochs(epochs: int) -> list[int]:
    """Epochs whose predictions go into progress.png: first, middle and last."""
    return sorted({1, (epochs + 1) // 2, epochs})


# ---------------------------------------------------------------------------------------
# how the work is shared between processes
# ---------------------------------------------------------------------------------------
class SingleProcess:
    """The hooks through which :func:`train` shares its work with other processes; this
    base class is one process doing everything. :class:`deep.ddp.Distributed` overrides
    them for DistributedDataParallel, so one loop serves one process and many."""

    rank = 0
    world_size = 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes checkpoints, ``history.csv`` and figures."""
        return self.rank == 0

    def train_sampler(self, dataset: torch.utils.data.Dataset, seed: int):
        """Sampler (with ``set_epoch``) of this process's training images; None: the
        loader shuffles the whole dataset itself."""
        return None

    def val_shard(self, n: int) -> Sequence[int]:
        """Indices of the validation images this process scores (the shards of all
        processes together hold each image exactly once)."""
        return range(n)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module that the training forward and backward go through."""
        return model

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all processes (may work in place)."""
        return tensor

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm running statistics)."""


def _process_seed(seed: int, rank: int, start_epoch: int = 1) -> int:
    """Seed of the random augmentation stream of process ``rank`` (``seed`` itself for
    rank 0, so that one process trains exactly as without distribution)."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank, start_epoch]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------
def train(
    model: nn.Module,
    train_split: Split,
    val_split: Split | None,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
    *,
    model_name: str | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    parallel: SingleProcess | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_split`` (validating on ``val_split`` when given).

    Seeds Python, numpy and torch with ``cfg.seed`` first (the model's initial weights
    are the caller's business). ``model_name`` (default ``model.name``) is stored in the
    checkpoints so that resuming with another network is an error. ``on_epoch_end(epoch, history_row)`` is called after
    each epoch's checkpoint is written (raising in it stops training like an interrupt).

    ``parallel`` (default: one process) shares the work between processes; see
    :mod:`deep.ddp`. Every process returns the same weights and validation figures; only
    ``parallel.is_writer`` writes files, and ``on_epoch_end`` is called in every process.
    """
    parallel = parallel or SingleProcess()
    info = train_split.info
    num_classes = info.num_classes
    ignore = T.loss_ignore_index(info.ignore_index)
    model_name = model_name or getattr(model, "name", "") or type(model).__name__
    device = torch.device(cfg.device)
    check_amp(cfg.amp, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else out_dir
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"

    previous_determinism = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
    previous_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if cfg.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    seed_all(_process_seed(cfg.seed, parallel.rank))
    try:
        return _train(model, train_split, val_split, cfg, out_dir, progress, model_name, on_epoch_end,
                      info, num_classes, ignore, device, last_path, best_path, parallel)
    finally:
        torch.use_deterministic_algorithms(previous_determinism[0], warn_only=previous_determinism[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous_cudnn


def _train(model, train_split, val_split, cfg, out_dir, progress, model_name, on_epoch_end,
           info, num_classes, ignore, device, last_path, best_path, parallel: SingleProcess) -> TrainResult:
    from bench.metrics import summarize
    from deep import plots

    min_size = min_input_size(model)

    # -- data ---------------------------------------------------------------------------
    train_ds = SplitDataset(train_split, T.train_transform(
        scale=cfg.scale, scale_range=cfg.scale_range, crop=cfg.crop, hflip=cfg.hflip, jitter=cfg.jitter,
        ignore=ignore))
    loader_generator = torch.Generator()
    loader_generator.manual_seed(_process_seed(cfg.seed, parallel.rank))
    train_sampler = parallel.train_sampler(train_ds, cfg.seed)  # None: the loader shuffles
    n_train = len(train_sampler) if train_sampler is not None else len(train_ds)  # this process's images
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=train_sampler is None, sampler=train_sampler,
        # a lone last image would make a batch of one (BatchNorm cannot train on it)
        drop_last=n_train > cfg.batch_size and n_train % cfg.batch_size == 1,
        num_workers=cfg.num_workers, collate_fn=T.PadCollate(ignore, min_size),
        worker_init_fn=seed_worker, generator=loader_generator, pin_memory=device.type == "cuda",
    )
    # evaluation never draws from the global random state (own generator, no shuffling)
    eval_split = val_split if val_split is not None else train_split
    eval_ds = SplitDataset(eval_split, T.eval_transform(cfg.scale), keep_label=True)
    val_loader = None
    if val_split is not None:
        val_loader = torch.utils.data.DataLoader(
            eval_ds, batch_size=1, sampler=parallel.val_shard(len(eval_ds)), num_workers=cfg.num_workers,
            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(0),
        )

    # -- loss ---------------------------------------------------------------------------
    weights = None
    if cfg.class_weights == "median-freq":
        labels = (s.label for s in tqdm(train_split, desc="class frequencies", unit="img", leave=False,
                                         disable=not progress))
        weights = torch.from_numpy(median_frequency_weights(labels, num_classes, info.ignore_index)).to(device)

    # -- model, optimiser, schedule -----------------------------------------------------
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * len(train_loader))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

    history: list[dict[str, float]] = []
    snapshots: dict[int, list[np.ndarray]] = {}
    best_epoch, best_miou = 0, float("nan")
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 1

    # -- resume -------------------------------------------------------------------------
    if cfg.resume and last_path.exists():
        ckpt = load_checkpoint(last_path, model_name=model_name, num_classes=num_classes)
        check_state_compatible(model.state_dict(), ckpt["model"], str(last_path))
        changed = {k for k, v in ckpt["config"].items()
                   if k not in ("resume", "epochs", "num_workers", "device", "checkpoint_dir", "val_every")
                   and dataclasses.asdict(cfg).get(k) != (tuple(v) if isinstance(v, list) else v)}
        if changed:
            warnings.warn(f"{last_path}: resuming with different settings ({', '.join(sorted(changed))}); "
                          "the result will differ from an uninterrupted run", stacklevel=3)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        history = [dict(row) for row in ckpt["history"]]
        snapshots = {int(e): [p.numpy() for p in preds] for e, preds in ckpt["snapshots"].items()}
        best_epoch, best_miou = int(ckpt["best_epoch"]), float(ckpt["best_miou"])
        if best_epoch and best_path.exists() and not math.isnan(best_miou):
            best_state = torch.load(best_path, map_location="cpu", weights_only=True)["model"]
        start_epoch = int(ckpt["epoch"]) + 1
        _set_rng_state(ckpt["rng"], loader_generator)  # rank 0's random state
        if parallel.rank != 0:  # the others draw a fresh stream of their own
            seed_all(_process_seed(cfg.seed, parallel.rank, start_epoch))
            loader_generator.manual_seed(_process_seed(cfg.seed, parallel.rank, start_epoch))
        if progress:
            tqdm.write(f"{model_name}: resumed from {last_path} at epoch {start_epoch}")

    # the training forward/backward goes through net; model (unwrapped) is what is validated and saved
    net = parallel.wrap(model)
    net = torch.compile(net) if cfg.compile else net
    val_confusion: np.ndarray | None = None

    # -- the loop -----------------------------------------------------------------------
    first_images = [eval_split[i] for i in range(min(N_PROGRESS_IMAGES, len(eval_split)))]
    wanted_snapshots = snapshot_epochs(cfg.epochs)
    run_start = time.perf_counter()
    epochs_bar = tqdm(range(start_epoch, cfg.epochs + 1), desc=f"{model_name}: train", unit="epoch",
                      disable=not progress, initial=start_epoch - 1, total=cfg.epochs)
    for epoch in epochs_bar:
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        batches = images_seen = 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=not progress)
        for images, labels in bar:
            labelled = bool((labels != ignore).any())
            # all padding/ignore: nothing to learn from. With several processes every one must
            # take part in each gradient all-reduce, so such a batch gets a zero loss instead.
            if not labelled and parallel.world_size == 1:
                continue
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, cfg.amp):
                logits = net(images)
                if labelled:
                    loss = F.cross_entropy(logits.float(), labels, weight=weights, ignore_index=ignore)
                else:
                    loss = logits.float().sum() * 0.0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

            if labelled:
                loss_sum += loss.detach()
                batches += 1
            images_seen += images.shape[0]
            if progress and (batches % 10 == 1 or batches == len(train_loader)):
                bar.set_postfix(loss=f"{loss.item():.4f}",
                                img_s=f"{images_seen / max(time.perf_counter() - t0, 1e-9):.1f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - t0
        # loss and image counts of all processes
        totals = torch.cat([loss_sum.double().reshape(1),
                            torch.tensor([batches, images_seen], dtype=torch.float64, device=device)])
        loss_total, batches, images_seen = parallel.all_reduce_sum(totals).tolist()
        train_loss = loss_total / batches if batches else float("nan")
        parallel.broadcast_buffers(model)  # every process validates and saves the same model

        # validation and the progress snapshot (uncompiled model: image sizes vary)
        model.eval()
        val_miou, val_time = float("nan"), 0.0
        eval_kw = dict(device=device, amp=cfg.amp, channels_last=cfg.channels_last, min_size=min_size)
        keep = N_PROGRESS_IMAGES if epoch in wanted_snapshots else 0
        if val_loader is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
            t1 = time.perf_counter()
            # each process scores its shard; the sum over processes is the whole split's matrix
            whole_split = parallel.world_size == 1
            cm, kept = validation_confusion(model, val_loader, num_classes, info.ignore_index,
                                            keep=keep if whole_split else 0, progress=progress, **eval_kw)
            val_confusion = parallel.all_reduce_sum(torch.from_numpy(cm)).numpy()
            val_miou = float(summarize(val_confusion)["miou"])
            val_time = time.perf_counter() - t1
            if kept:
                snapshots[epoch] = kept
        if keep and epoch not in snapshots and parallel.is_writer:
            snapshots[epoch] = _predict_first(model, eval_ds, keep, **eval_kw)

        row = {
            "epoch": epoch, "train_loss": train_loss, "val_miou": val_miou,
            "lr": optimizer.param_groups[0]["lr"], "train_time_s": train_time, "val_time_s": val_time,
            "images_per_s": images_seen / train_time if train_time > 0 else float("nan"),
        }
        history.append(row)
        improved = not math.isnan(val_miou) and (math.isnan(best_miou) or val_miou > best_miou)
        if improved:
            best_epoch, best_miou = epoch, val_miou
            best_state = state_to_cpu(model)
            if parallel.is_writer:
                save_atomic({"format": CHECKPOINT_FORMAT, "model_name": model_name, "num_classes": num_classes,
                              "epoch": epoch, "val_miou": val_miou, "model": best_state}, best_path)

        # checkpoint, then the files a person looks at
        if parallel.is_writer:
            save_atomic({
                "format": CHECKPOINT_FORMAT, "model_name": model_name, "num_classes": num_classes,
                "dataset": info.name, "epoch": epoch, "config": dataclasses.asdict(cfg),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "history": history,
                "best_epoch": best_epoch, "best_miou": best_miou,
                "snapshots": {e: [torch.from_numpy(p) for p in preds] for e, preds in snapshots.items()},
                "rng": _rng_state(loader_generator),
            }, last_path)
            write_history_csv(history, out_dir / "history.csv")
            plots.plot_curves(history, out_dir / "curves.png", title=f"{model_name} on {info.name}")
            if snapshots:
                plots.plot_progress(first_images, snapshots, info, out_dir / "progress.png")
        epochs_bar.set_postfix(loss=f"{train_loss:.4f}", val_miou=f"{val_miou:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    epochs_bar.close()

    if not best_epoch:  # no validation: the last epoch is the one kept
        best_epoch = history[-1]["epoch"] if history else 0
    return TrainResult(
        history=history, best_epoch=best_epoch, best_miou=best_miou, final_state=state_to_cpu(model),
        best_state=best_state, out_dir=out_dir, train_time_s=time.perf_counter() - run_start,
        val_confusion=val_confusion,
    )


def write_history_csv(history: Sequence[dict[str, float]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k) for k in HISTORY_COLUMNS})
    os.replace(tmp, path)


__all__ = [
    "TrainConfig", "TrainResult", "CheckpointError", "SingleProcess", "train", "validation_confusion",
    "predict_logits", "median_frequency_weights", "load_checkpoint", "check_state_compatible", "SplitDataset",
    "snapshot_epochs", "HISTORY_COLUMNS",
]
