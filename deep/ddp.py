"""Command line of data-parallel training: ``torchrun ... -m deep.ddp`` trains one network on
several GPUs (or CPU processes) through the one training loop, one process per device.

::

    torchrun --nproc-per-node 4 -m deep.ddp --model unet --dataset camvid \\
        --data-root ../shared/datasets/camvid --width 0.5 --epochs 60 --batch-size 4 --out runs/unet

    python -m deep.ddp --model unet --dataset shapes --width 0.125 --epochs 2 --out runs/u  # one process

The training and network options are the fields of the deep methods' settings
(:class:`deep.method.DeepSettings`, which extends :class:`deep.engine.config.TrainConfig`),
with their defaults. ``--batch-size`` is per process: one optimiser step sees
``nproc x batch-size`` images, and the learning rate is not rescaled. Every process builds
the network from ``--seed``; how the work is shared is :mod:`deep.engine.parallel`. Only
rank 0 writes the run folder (``history.csv``, figures, ``last.pt``, ``best.pt``: the
unwrapped network's weights, loadable in one process). ``--resume`` reads ``last.pt`` in
every process, so the folder must be visible to all of them; a resumed multi-process run
continues correctly but not bit-identically (only rank 0's random state is saved).

Rank 0 prints the run's summary as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from torch import nn

from bench.errors import SegbenchError
from bench.method import FitContext, create_method
from deep.engine.checkpoint import CheckpointError
from deep.engine.config import TrainConfig
from deep.engine.loop import TrainResult, train
from deep.engine.parallel import cleanup, setup
from deep.method import DeepMethod, DeepSettings

#: settings of the method's fit alone (what it keeps after training), not of a run here
_FIT_ONLY = ("keep", "keep_checkpoints")


def _numbers(kind: type, count: int | None) -> Callable[[str], Any]:
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


#: settings whose values are not one plain number, word or flag
_PARSERS = {"crop": _numbers(int, None), "scale_range": _numbers(float, 2)}


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def _add_settings(p: argparse.ArgumentParser) -> None:
    """One option per field of DeepSettings (but those of the method's fit alone)."""
    training = p.add_argument_group("training (deep.engine.config.TrainConfig; --batch-size is per process)")
    network = p.add_argument_group("network (deep.method.DeepSettings)")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    defaults = DeepSettings()
    for field in dataclasses.fields(DeepSettings):
        if field.name in _FIT_ONLY:
            continue
        group = training if field.name in train_fields else network
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = _PARSERS.get(field.name, str if default is None else type(default))
            group.add_argument(flag, type=kind, default=default, help=f"(default {default})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m deep.ddp",
        description="Train one network of deep.models on several GPUs/processes (DistributedDataParallel). "
                    "Runs as one process without torchrun.",
    )
    p.add_argument("--model", required=True, help="network method name (python -m bench models)")
    p.add_argument("--dataset", required=True, help="dataset name (python -m bench list)")
    p.add_argument("--data-root", default=None, help="folder that holds the dataset (not for built-in data)")
    p.add_argument("--dataset-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="dataset option, value as YAML (e.g. n_val=5, size=[64,96]); repeatable")
    p.add_argument("--train-split", default="train", help="split to train on (default train)")
    p.add_argument("--val-split", default="val", help="split to validate on, 'none' for no validation (default val)")
    p.add_argument("--out", required=True, help="run folder: history.csv, figures, last.pt, best.pt")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--seed", type=int, default=FitContext.seed, help=f"(default {FitContext.seed})")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (rank 0 shows them otherwise)")
    _add_settings(p)
    return p


def _method(args: argparse.Namespace) -> DeepMethod:
    names = {f.name for f in dataclasses.fields(DeepSettings)} - set(_FIT_ONLY)
    method = create_method(args.model, {name: getattr(args, name) for name in names})
    if not isinstance(method, DeepMethod):
        raise ValueError(f"--model {args.model}: not a network of deep.models")
    return method


def main(argv: Sequence[str] | None = None) -> TrainResult:
    """Train as the command line says; returns this process's :class:`TrainResult`."""
    from bench.datasets import get_dataset

    args = build_parser().parse_args(argv)
    try:
        parallel, device = setup(args.device)
    except ValueError as e:
        raise SystemExit(f"deep.ddp: {e}") from None
    try:
        try:  # bad settings, data or network: a message, not a traceback from every process
            if args.sync_bn and device.type != "cuda":
                raise ValueError("--sync-bn needs CUDA (SyncBatchNorm does not run on the CPU)")
            method = _method(args)
            data = get_dataset(args.dataset, args.data_root, **dict(args.dataset_option))
            train_split = data.split(args.train_split)
            val_split = None if args.val_split.lower() == "none" else data.split(args.val_split)
            model = method.initial_network(data.info.num_classes, args.seed)  # the same in every process
        except (SegbenchError, ValueError, TypeError) as e:
            raise SystemExit(f"deep.ddp: {e}") from None
        if args.sync_bn and parallel.world_size > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same state_dict keys as BatchNorm
        context = FitContext(run_dir=Path(args.out), resume=args.resume, device=str(device), seed=args.seed,
                             progress=not args.no_progress and parallel.is_writer)
        try:
            result = train(model, train_split, val_split, method.settings, context, model_name=method.network,
                           parallel=parallel)
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
