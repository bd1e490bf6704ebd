#!/usr/bin/env python
"""Seconds of one training step (forward, loss, backward, Adam) of a network under the speed
options the trainer has: eager, channels-last, torch.compile, both, and bf16 autocast (``amp: bf16``,
which changes the numerics) with and without channels-last.

    python scripts/train_step_options.py --networks fcn8s,segnet --input 180x240 --batch 8
    python scripts/train_step_options.py --device cuda --width 1 --input 360x480 --options "bf16 + channels-last"

On a GPU (``--device cuda``) each timed step ends with a device synchronisation, cuDNN runs in
benchmark mode as in the trainer, and the data are already on the device: the step alone,
to hold against a run's training images/s (which includes waiting for the data loader).

Random images and labels (11 classes), the network's CPU-variant width; the first two calls
of each option are untimed (compilation, kernel selection), then the median of ``--iters``.
It prints one Markdown row per network and option: images/s, the time to the first step,
and the step's arithmetic rate: its floating-point operations (counted once by
``torch.utils.flop_counter``: convolutions and matrix products, forward and backward) per
second, and that rate against a large single-precision matrix product on the same threads
(what this CPU's BLAS reaches, measured first; on a GPU the same product in the step's
precision), which says how far the step is from the hardware.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.method import create_method  # noqa: E402
from bench.run.provenance import device_name  # noqa: E402
from bench.torch_helpers import sync  # noqa: E402
from deep.engine.config import TrainConfig  # noqa: E402
from deep.engine.inference import amp_context  # noqa: E402
from deep.engine.loop import cudnn_mode  # noqa: E402
from deep.engine.optim import make_optimizer  # noqa: E402

# option -> (channels-last, torch.compile, bf16 autocast); bf16 changes the numerics (the trainer's ``amp: bf16``)
OPTIONS = {"eager": (False, False, False), "channels-last": (True, False, False), "compile": (False, True, False),
           "compile + channels-last": (True, True, False), "bf16": (False, False, True),
           "bf16 + channels-last": (True, False, True)}


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, iters: int = 5) -> float:
    """GFLOP/s of a square matrix product on ``device`` (2048 on a CPU, 8192 on a GPU), median of ``iters``."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(iters):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def step_speed(name: str, width: float, size: tuple[int, int], batch: int, channels_last: bool, compiled: bool,
               iters: int, bf16: bool = False, device: torch.device = torch.device("cpu")) -> tuple[float, float, float]:
    """(images/s of the median step, seconds of the first two untimed steps, GFLOP a step)."""
    torch.manual_seed(0)
    net = create_method(name, {"width": width}).create_network(11)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device, memory_format=fmt)
    opt = make_optimizer(net, TrainConfig(optimizer="adam", lr=1e-3))  # the trainer's (fused where torch has it)
    x = torch.randn(batch, 3, *size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 11, (batch, *size), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp_context("bf16" if bf16 else "none", x.device):  # the trainer's own autocast
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    fn = torch.compile(step) if compiled else step
    t0 = time.perf_counter()
    fn(), fn()
    sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    with FlopCounterMode(display=False) as counter:  # counted after the timing: the first steps stay the first
        step()
    return batch / statistics.median(times), first, counter.get_total_flops() / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", default="fcn8s,segnet")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--input", default="180x240", help="HxW")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, of: {', '.join(OPTIONS)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = p.parse_args()
    size = tuple(int(v) for v in args.input.split("x"))
    chosen = args.options.split(",")
    if unknown := [o for o in chosen if o not in OPTIONS]:
        p.error(f"unknown option(s) {', '.join(unknown)}; choose from: {', '.join(OPTIONS)}")
    device = torch.device(args.device)
    print(f"device: {device_name(args.device)}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"input {args.input}, batch {args.batch}, width {args.width}\n")
    options = {k: v for k, v in OPTIONS.items() if k in chosen}
    peaks = {bf16: matmul_gflops(device, torch.bfloat16 if bf16 else torch.float32)
             for bf16 in sorted({o[2] for o in options.values()})}
    for bf16, peak in peaks.items():
        print(f"{'bfloat16' if bf16 else 'float32'} matrix product: {peak:.0f} GFLOP/s")
    print("\n| network | option | step img/s | first two steps (s) | GFLOP a step | GFLOP/s | of the matrix product |")
    print("|---|---|---|---|---|---|---|")
    with cudnn_mode(False, device, fixed_shapes=True):
        for name in args.networks.split(","):
            for option, (cl, comp, bf16) in options.items():
                rate, first, gflop = step_speed(name, args.width, size, args.batch, cl, comp, args.iters, bf16, device)
                achieved = gflop * rate / args.batch
                print(f"| {name} | {option} | {rate:.2f} | {first:.1f} | {gflop:.1f} | {achieved:.0f} | "
                      f"{achieved / peaks[bf16]:.0%} |", flush=True)


if __name__ == "__main__":
    main()
