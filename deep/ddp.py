"""Data-parallel training on several GPUs (or CPU processes) with ``torchrun``.

One process per GPU, started by ``torchrun``; each process trains the same network on its
share of the training images (DistributedSampler, reshuffled every epoch), gradients are
averaged by DistributedDataParallel, and the one trainer (:func:`deep.train.train`) runs
unchanged through the hooks of :class:`Distributed`::

    torchrun --nproc-per-node 4 -m deep.ddp --model unet --dataset camvid \\
        --data-root ../shared/datasets/camvid --width 0.5 --epochs 60 --batch-size 4 --out runs/unet

    python -m deep.ddp --model unet --dataset shapes --width 0.125 --epochs 2 --out runs/u  # one process

What each process does:

* **Backend**: nccl on CUDA (process ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``), gloo on the CPU.
  Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) no process group is made and
  training is exactly :func:`deep.train.train` in one process.
* **Batch**: ``--batch-size`` is per process; one optimiser step sees ``nproc x batch-size``
  images. The learning rate is not rescaled: pass the ``--lr`` you want.
* **Seeds**: every process builds the network after ``torch.manual_seed(--seed)`` (DDP
  broadcasts rank 0's weights anyway); the random augmentations of rank ``r > 0`` draw
  from a stream of their own, rank 0's is the single-process one.
* **BatchNorm**: statistics are per process (as in DDP's default); after each training
  epoch every process takes rank 0's running statistics, so all processes validate and
  save the same model. ``--sync-bn`` (CUDA only) uses SyncBatchNorm instead.
* **Validation**: process ``r`` scores images ``r, r + n, r + 2n, ...`` of the validation
  split (no padding, so no image counts twice); the confusion matrices are summed with
  ``all_reduce`` and every process gets the whole split's matrix and mIoU.
* **Files**: only rank 0 writes ``history.csv``, the figures and the checkpoints
  ``last.pt`` / ``best.pt``; they hold the unwrapped network's ``state_dict``, so they load
  into a plain single-process model (:func:`deep.train.load_checkpoint`). ``--resume``
  reads ``last.pt`` in every process: the checkpoint folder must be visible to all of them.
  A resumed multi-process run continues correctly but is not bit-identical to an
  uninterrupted one (only rank 0's random state is saved).

Rank 0 prints the run's summary as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Sequence

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from bench.errors import SegbenchError
from deep.train import CheckpointError, SingleProcess, TrainConfig, TrainResult, train


class Distributed(SingleProcess):
    """The trainer's hooks for one process of an initialised process group."""

    def __init__(self, rank: int, world_size: int, device: torch.device | str):
        self.rank, self.world_size, self.device = int(rank), int(world_size), torch.device(device)

    def train_sampler(self, dataset, seed: int) -> DistributedSampler:
        # equal-length shards (padded by repeating images) keep the processes in step
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                  seed=seed, drop_last=False)

    def val_shard(self, n: int) -> Sequence[int]:
        return range(self.rank, n, self.world_size)  # strided, never padded

    def wrap(self, model: nn.Module) -> nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        on_device = tensor.to(self.device)  # nccl reduces CUDA tensors only
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        return on_device.to(tensor.device)

    def broadcast_buffers(self, model: nn.Module) -> None:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def setup(device: str | None = None) -> tuple[SingleProcess, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and return this
    process's hooks and device. Without ``WORLD_SIZE``: one process, no process group."""
    device = torch.device(device or default_device())
    if "WORLD_SIZE" not in os.environ:
        return SingleProcess(), device
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        elif world_size > 1:
            raise ValueError(f"device {device}: with several processes pass plain 'cuda' "
                             "(process LOCAL_RANK uses cuda:LOCAL_RANK)")
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device {device}: only cuda (nccl) and cpu (gloo) are supported")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, device), device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def _numbers(kind: type, count: int | None):
    """argparse type: ``"256"``, ``"256,320"`` or ``"256x320"``; ``count`` values exactly
    (None: one or two, a lone value stays a scalar)."""

    def parse(text: str):
        parts = text.replace("x", ",").split(",")
        try:
            values = tuple(kind(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {kind.__name__} values: {text!r}") from None
        if count is not None and len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated values, got {text!r}")
        if count is None and len(values) not in (1, 2):
            raise argparse.ArgumentTypeError(f"expected one value or two (HxW), got {text!r}")
        return values[0] if len(values) == 1 else values

    return parse


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


#: TrainConfig fields that are not plain options of their own type
_SPECIAL = {"device", "crop", "scale_range", "checkpoint_dir"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m deep.ddp",
        description="Train one network of deep.models on several GPUs/processes (DistributedDataParallel). "
                    "Runs as one process without torchrun.",
    )
    p.add_argument("--model", required=True, help="network name (python -m bench models)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--pretrained", default=None, help="'imagenet' or a VGG16 state_dict file (VGG-based networks)")
    p.add_argument("--dataset", required=True, help="dataset name (python -m bench list)")
    p.add_argument("--data-root", default=None, help="folder that holds the dataset (not for built-in data)")
    p.add_argument("--dataset-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="dataset option, value as YAML (e.g. n_val=5, size=[64,96]); repeatable")
    p.add_argument("--train-split", default="train", help="split to train on (default train)")
    p.add_argument("--val-split", default="val", help="split to validate on, 'none' for no validation (default val)")
    p.add_argument("--out", required=True, help="run folder: history.csv, figures, last.pt, best.pt")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (rank 0 shows them otherwise)")

    train_opts = p.add_argument_group("training (deep.train.TrainConfig; --batch-size is per process)")
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name in _SPECIAL:
            continue
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            train_opts.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            train_opts.add_argument(flag, type=type(default), default=default, help=f"(default {default})")
    train_opts.add_argument("--crop", type=_numbers(int, None), default=defaults.crop,
                            help="random training crop: H or HxW, 0 = whole images (default whole images)")
    train_opts.add_argument("--scale-range", type=_numbers(float, 2), default=defaults.scale_range,
                            help="random rescale range LOW,HIGH (default 1,1)")
    train_opts.add_argument("--checkpoint-dir", default=None, help="where last.pt/best.pt go (default --out)")
    return p


def train_config(args: argparse.Namespace, device: torch.device) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "device"}
    return TrainConfig(**values, device=str(device))


def main(argv: Sequence[str] | None = None) -> TrainResult:
    """Train as the command line says; returns this process's :class:`TrainResult`."""
    from bench.datasets import get_dataset
    from deep.models import create_model

    args = build_parser().parse_args(argv)
    try:
        parallel, device = setup(args.device)
    except ValueError as e:
        raise SystemExit(f"deep.ddp: {e}") from None
    try:
        try:  # bad settings, data or network: a message, not a traceback from every process
            if args.sync_bn and device.type != "cuda":
                raise ValueError("--sync-bn needs CUDA (SyncBatchNorm does not run on the CPU)")
            cfg = train_config(args, device)
            data = get_dataset(args.dataset, args.data_root, **dict(args.dataset_option))
            train_split = data.split(args.train_split)
            val_split = None if args.val_split.lower() == "none" else data.split(args.val_split)
            torch.manual_seed(cfg.seed)  # the same initial weights in every process
            model = create_model(args.model, num_classes=data.info.num_classes, width=args.width,
                                 pretrained=args.pretrained)
        except (SegbenchError, ValueError, TypeError) as e:
            raise SystemExit(f"deep.ddp: {e}") from None
        if args.sync_bn and parallel.world_size > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same state_dict keys as BatchNorm
        try:
            result = train(model, train_split, val_split, cfg, args.out, model_name=args.model,
                           progress=not args.no_progress and parallel.is_writer, parallel=parallel)
        except CheckpointError as e:  # --resume with a checkpoint of another run
            raise SystemExit(f"deep.ddp: {e}") from None
        if parallel.is_writer:
            print(json.dumps({"model": args.model, "dataset": args.dataset, "world_size": parallel.world_size,
                              **result.summary()}), flush=True)
        return result
    finally:
        cleanup()

if __name__ == "__main__":
    main(sys.argv[1:])
