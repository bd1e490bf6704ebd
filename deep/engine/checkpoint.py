"""Checkpoints of a training run: what ``last.pt`` (everything needed to resume) and
``best.pt`` / ``model.pt`` (weights) hold, writing them atomically, reading them back with
the real cause of any failure, and checking that they fit a model and dataset."""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.errors import SegbenchError
from bench.files import write_atomic
from deep.engine.config import TrainConfig, changed_settings, config_dict

#: bumped when the layout of ``last.pt`` changes
CHECKPOINT_FORMAT = "segbench-train-v1"


class CheckpointError(SegbenchError, ValueError):
    """A checkpoint that cannot be read, or does not fit the model or dataset it is loaded into."""


@dataclass
class TrainState:
    """What a run has done so far: the part of ``last.pt`` besides the weights and optimiser."""

    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    snapshots: dict[int, list[np.ndarray]] = field(default_factory=dict)  # epoch -> predicted maps
    best_epoch: int = 0  # 0: no validation yet
    best_miou: float = math.nan
    best_state: dict[str, torch.Tensor] | None = None  # weights of the best epoch (CPU)
    start_epoch: int = 1  # the next epoch to train


def state_to_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Write ``checkpoint`` with :func:`torch.save` so that a crash or kill leaves the old file
    or the new one, never part of one (:func:`bench.files.write_atomic`)."""
    write_atomic(path, lambda f: torch.save(checkpoint, f))


def read_checkpoint(path: str | Path) -> Any:
    """The object stored in ``path`` (CPU tensors, ``weights_only``); a CheckpointError that
    says why when the file is missing or torch cannot read it."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch reports a bad file as any of several errors
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a read object is a checkpoint of this trainer (``last.pt``, ``best.pt``,
    ``model.pt``) rather than some other state_dict file."""
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def check_checkpoint(ckpt: Any, path: str | Path, *, model_name: str, num_classes: int) -> dict[str, Any]:
    """``ckpt`` itself when it is a trainer checkpoint of network ``model_name`` with
    ``num_classes`` classes; a CheckpointError naming the mismatch otherwise."""
    if not is_training_checkpoint(ckpt):
        found = f"format {ckpt.get('format')!r}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise CheckpointError(f"{path}: not a segbench training checkpoint (format {CHECKPOINT_FORMAT}; "
                              f"the file holds {found})")
    if ckpt["model_name"] != model_name:
        raise CheckpointError(f"{path}: checkpoint is of network '{ckpt['model_name']}', not '{model_name}'")
    if ckpt["num_classes"] != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint was trained for {ckpt['num_classes']} classes but the dataset has {num_classes}"
        )
    return ckpt


def load_checkpoint(path: str | Path, *, model_name: str, num_classes: int) -> dict[str, Any]:
    """Read a trainer checkpoint and check that it belongs to network ``model_name`` with
    ``num_classes`` classes."""
    return check_checkpoint(read_checkpoint(path), path, model_name=model_name, num_classes=num_classes)


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


def weights_checkpoint(model_name: str, num_classes: int, epoch: int, state: dict[str, torch.Tensor],
                       **extra: Any) -> dict[str, Any]:
    """The layout of ``best.pt`` and ``model.pt``: weights and what they are for."""
    return {"format": CHECKPOINT_FORMAT, "model_name": model_name, "num_classes": num_classes, "epoch": epoch,
            **extra, "model": state}


@dataclass
class Trainables:
    """What training changes besides the run's state: saved in and restored from ``last.pt``."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # the training loader's


def last_checkpoint(t: Trainables, state: TrainState, *, model_name: str, num_classes: int, dataset: str,
                    epoch: int, cfg: TrainConfig, seed: int) -> dict[str, Any]:
    """The layout of ``last.pt``: everything a resumed run needs to continue identically."""
    return {
        "format": CHECKPOINT_FORMAT, "model_name": model_name, "num_classes": num_classes,
        "dataset": dataset, "epoch": epoch, "config": {**config_dict(cfg), "seed": seed},
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict(), "history": state.history,
        "best_epoch": state.best_epoch, "best_miou": state.best_miou,
        "snapshots": {e: [torch.from_numpy(p) for p in preds] for e, preds in state.snapshots.items()},
        "rng": _rng_state(t.generator),
    }


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Put every per-parameter state tensor (Adam's moments, SGD's momentum) in its parameter's
    memory layout. A checkpoint keeps the layout that ran (channels-last or not, a runtime
    setting), and torch's fused CPU optimisers silently misread moments whose strides differ
    from the parameter's."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for k, v in state.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.dim() > 1 and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def restore_last(last_path: Path, best_path: Path, t: Trainables, *, model_name: str, num_classes: int,
                 cfg: TrainConfig, seed: int) -> TrainState:
    """Put the trainables and the random state back as ``last.pt`` saved them; the run's state
    (with the best epoch's weights from ``best.pt``)."""
    ckpt = load_checkpoint(last_path, model_name=model_name, num_classes=num_classes)
    check_state_compatible(t.model.state_dict(), ckpt["model"], str(last_path))
    changed = changed_settings(ckpt["config"], cfg, seed)
    if changed:
        warnings.warn(f"{last_path}: resuming with different settings ({', '.join(changed)}); "
                      "the result will differ from an uninterrupted run", stacklevel=4)
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    match_state_layouts(t.optimizer)
    t.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"] and t.scaler.is_enabled():
        t.scaler.load_state_dict(ckpt["scaler"])
    state = TrainState(
        history=[dict(row) for row in ckpt["history"]],
        snapshots={int(e): [p.numpy() for p in preds] for e, preds in ckpt["snapshots"].items()},
        best_epoch=int(ckpt["best_epoch"]), best_miou=float(ckpt["best_miou"]), start_epoch=int(ckpt["epoch"]) + 1,
    )
    if state.best_epoch and best_path.exists() and not math.isnan(state.best_miou):
        state.best_state = read_checkpoint(best_path)["model"]
    _set_rng_state(ckpt["rng"], t.generator)
    return state


# random state (saved in checkpoints so that a resumed run continues identically)
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
