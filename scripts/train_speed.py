#!/usr/bin/env python
"""Training throughput of the networks before and after the CPU speed work, in one run.

    python scripts/train_speed.py --data-root ../shared/datasets/camvid --networks fcn8s,segnet,unet

For each network the same short training (CamVid train, or its first ``--images`` images, at
scale 0.5, batch 8, ``--epochs`` epochs, validation on ``--val-images`` val images) runs
twice, interleaved, from the same seed:

- ``before``: images decoded and resized every epoch, contiguous memory format, eager
  execution, torch's default (unfused) Adam, validation every epoch (the settings of the
  8-epoch CamVid suite);
- ``after``: images decoded and resized once and kept in memory, fused Adam, validation
  only after the last epoch (``val_every`` = epochs), the trainer's channels-last default
  (``auto``: on where it pays, e.g. CPUs with AVX-512; ``--channels-last on|off`` forces it)
  and ``torch.compile`` with ``--compile`` (it does not pay for these widths on the CPUs
  measured: docs/BENCHMARKS.md).

It prints one Markdown row per network: training images/s of the training steps alone
(median over the epochs after the first), wall seconds of the whole training (decoding,
steps, validation), and the ratio after/before of images per wall second.

With ``--workers N`` (N > 1) it measures a suite rather than one fit: every ``before`` runs
first, one after the other on all threads (as the 8-epoch suite ran its networks), then every
``after`` runs N at a time, each in a process of its own with ``cores // N`` threads (as
``python -m bench run --workers N`` runs them; networks are handed out in the order given, so
list the longest first). The last row is the whole suite: every network's training images
over the wall time of all ``before`` fits, and of all ``after`` fits.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import get_dataset  # noqa: E402
from bench.method import FitContext, create_method  # noqa: E402
from bench.run.provenance import device_name  # noqa: E402
from bench.run.processes import threads_per_worker  # noqa: E402
from bench.threads import limit_threads  # noqa: E402
from deep.engine.config import TrainConfig, use_channels_last  # noqa: E402
from deep.engine.loop import train  # noqa: E402

class _View:
    """The first ``n`` samples of a split (same decoding cost on every access)."""

    def __init__(self, split, n: int):
        self._split, self._n = split, n
        self.info, self.name = split.info, split.name

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._split[i]

    def __iter__(self):
        return (self[i] for i in range(self._n))


def one_training(name: str, train_split, val_split, epochs: int, after: bool, compile: bool,
                 channels_last: bool | str) -> dict:
    cfg = dict(width=0.25, scale=0.5, epochs=epochs, batch_size=8, lr=0.002, class_weights="median-freq",
               in_memory="on" if after else "off", val_every=epochs if after else 1, fused=after,
               channels_last=channels_last if after else False, compile=after and compile)
    torch.manual_seed(0)
    net = create_method(name, {"width": cfg.pop("width")}).create_network(train_split.info.num_classes)
    tc = TrainConfig(**cfg)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        result = train(net, train_split, val_split, tc, FitContext(run_dir=run_dir, seed=0, progress=False),
                       model_name=name)
        wall = time.perf_counter() - t0
    steady = [row["images_per_s"] for row in result.history[1:]] or [result.history[0]["images_per_s"]]
    return {"step_images_per_s": statistics.median(steady), "wall_s": wall,
            "images_per_wall_s": epochs * len(train_split) / wall}


def _splits(data_root: str, images: int, val_images: int) -> tuple[_View, _View]:
    data = get_dataset("camvid", data_root)
    train, val = data.split("train"), data.split("val")
    return _View(train, images or len(train)), _View(val, val_images or len(val))


def _after_in_worker(name: str, args: argparse.Namespace, channels_last: bool | str, threads: int) -> dict:
    """One ``after`` fit in a worker process of ``threads`` threads (what ``bench run --workers`` does)."""
    train_split, val_split = _splits(args.data_root, args.images, args.val_images)
    with limit_threads(threads):
        return one_training(name, train_split, val_split, args.epochs, after=True, compile=args.compile,
                            channels_last=channels_last)


def _row(name: str, before: dict, after: dict) -> str:
    ratio = after["images_per_wall_s"] / before["images_per_wall_s"]
    return (f"| {name} | {before['step_images_per_s']:.2f} | {after['step_images_per_s']:.2f} | "
            f"{before['wall_s']:.0f} | {after['wall_s']:.0f} | {ratio:.2f}x |")


def _suite(names: list[str], args: argparse.Namespace, channels_last: bool | str, train_split, val_split) -> None:
    """Every ``before`` fit in turn on all threads, then the ``after`` fits ``args.workers`` at a time."""
    before = {}
    t0 = time.perf_counter()
    for name in names:
        before[name] = one_training(name, train_split, val_split, args.epochs, after=False, compile=args.compile,
                                    channels_last=channels_last)
    before_wall = time.perf_counter() - t0
    threads = threads_per_worker(args.workers)
    from concurrent.futures import ProcessPoolExecutor  # a worker's death may fail the whole measurement here
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_after_in_worker, name, args, channels_last, threads) for name in names}
        after = {name: f.result() for name, f in futures.items()}
    after_wall = time.perf_counter() - t0
    for name in names:
        print(_row(name, before[name], after[name]))
    images = len(names) * args.epochs * len(train_split)
    print(f"| **suite** ({len(names)} fits; after: {args.workers} at a time, {threads} thread(s) each) | | | "
          f"{before_wall:.0f} | {after_wall:.0f} | **{before_wall / after_wall:.2f}x** |")
    print(f"\nsuite images per wall s: before {images / before_wall:.2f}, after {images / after_wall:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--networks", default="fcn8s,segnet,unet")
    p.add_argument("--images", type=int, default=0, help="first N train images (default 0: all 367)")
    p.add_argument("--val-images", type=int, default=0, help="first N val images (default 0: all 101)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="after: torch.compile the training step")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="after: channels-last memory format (auto: the trainer's default, on where it pays)")
    p.add_argument("--workers", type=int, default=1,
                   help="N > 1: time the networks as a suite, the after fits N at a time with cores // N threads each")
    args = p.parse_args()
    if args.workers < 1:
        p.error(f"--workers must be 1 or more, not {args.workers}")
    train_split, val_split = _splits(args.data_root, args.images, args.val_images)
    print(f"device: {device_name('cpu')}, torch {torch.__version__}, {len(train_split)} train images at 180x240, "
          f"batch 8, {args.epochs} epochs, {len(val_split)} val images\n")
    channels_last = {"auto": "auto", "on": True, "off": False}[args.channels_last]
    print(f"after: channels-last {use_channels_last(channels_last, torch.device('cpu'))}\n")
    print("| network | step img/s before | step img/s after | wall s before | wall s after | ratio (img per wall s) |")
    print("|---|---|---|---|---|---|")
    names = args.networks.split(",")
    if args.workers > 1:
        _suite(names, args, channels_last, train_split, val_split)
        return
    for name in names:
        before = one_training(name, train_split, val_split, args.epochs, after=False, compile=args.compile,
                              channels_last=channels_last)
        after = one_training(name, train_split, val_split, args.epochs, after=True, compile=args.compile,
                             channels_last=channels_last)
        print(_row(name, before, after), flush=True)


if __name__ == "__main__":
    main()
