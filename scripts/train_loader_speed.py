#!/usr/bin/env python
"""How fast the trainer's own training loader supplies batches, with no training step.

    python scripts/train_loader_speed.py --data-root ../shared/datasets/camvid --workers 0,1,2

The loader is the one the trainer builds (``make_loaders``: the split decoded once and kept
in memory, then random scale, crop, flip and colour jitter per image, padded batches), with
the `deep-camvid-gpu` recipe by default (full size, 360x480 crops, batch 8). Each epoch
starts the data workers again, so per worker count and epoch it prints the seconds to the
first batch and to the whole epoch, and the epoch's images per second: a training epoch
shorter than the loader's waits for data. (The whole epoch, since the workers prepare
batches ahead: the intervals after a slow first batch are short while their queue empties.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import get_dataset  # noqa: E402
from bench.run.provenance import device_name  # noqa: E402
from deep.engine.config import TrainConfig  # noqa: E402
from deep.engine.data import make_loaders  # noqa: E402
from deep.engine.parallel import SingleProcess  # noqa: E402


def epoch_times(loader) -> tuple[float, float, int]:
    """(seconds to the first batch, seconds to the last, images) of one pass over ``loader``."""
    t0 = time.perf_counter()
    first, images = None, 0
    for x, _ in loader:
        first = time.perf_counter() - t0 if first is None else first
        images += x.shape[0]
    return first, time.perf_counter() - t0, images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="camvid")
    p.add_argument("--data-root", required=True)
    p.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--crop", default="360x480", help="HxW")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    crop = tuple(int(v) for v in args.crop.split("x"))
    split = get_dataset(args.dataset, args.data_root).split("train")
    print(f"{device_name('cpu')}; {args.dataset} train ({len(split)} images), scale {args.scale}, "
          f"crop {args.crop}, batch {args.batch}\n")
    print("| workers | epoch | first batch (s) | epoch (s) | images/s |")
    print("|---:|---:|---:|---:|---:|")
    for workers in (int(w) for w in args.workers.split(",")):
        cfg = TrainConfig(scale=args.scale, crop=crop, scale_range=(0.75, 1.5), hflip=True, jitter=0.2,
                          batch_size=args.batch, num_workers=workers, in_memory="on")
        loaders = make_loaders(split, None, cfg, seed=0, process_seed=0, min_size=32, pin_memory=False,
                               parallel=SingleProcess())
        for epoch in range(1, args.epochs + 1):
            first, seconds, images = epoch_times(loaders.train)
            print(f"| {workers} | {epoch} | {first:.2f} | {seconds:.2f} | {images / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
