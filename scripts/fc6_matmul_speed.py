#!/usr/bin/env python
"""Training-step time of the VGG-bodied networks with fc6 (and DeconvNet's 7x7 deconvolution
from fc7) as the convolution, as one matrix product, and as the default of
``deep.models.matmul_conv`` (the matrix product, tap by tap where most of fc6's products
would be with its zero padding), alternated.

    OMP_NUM_THREADS=1 python scripts/fc6_matmul_speed.py --networks fcn8s,deconvnet,dilatednet --batch 2 --input 120x80
    OMP_NUM_THREADS=2 python scripts/fc6_matmul_speed.py --networks fcn8s,dilatednet --batch 8 --input 180x240 --channels-last
    OMP_NUM_THREADS=1 python scripts/fc6_matmul_speed.py --layer-sweep

``--layer-sweep`` times one layer alone instead (forward and backward, channels-last, 1/4
width), unfolded and tap by tap, over batch sizes: where the tap-by-tap path pays.

Random images and labels (7 classes), 1/4 width (DilatedNet 1/8 at inputs over 150 rows,
as in deep-camvid), fused Adam. Each variant is built three times, alternating; each build
runs two untimed steps and six timed ones; the row gives the best build's mean step.
Where no layer runs tap by tap, the last two columns time the same code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deep.models import create_model  # noqa: E402
from deep.models.matmul_conv import MatmulConv2d, MatmulConvTranspose2d, live_fraction  # noqa: E402

LAYERS = (MatmulConv2d, MatmulConvTranspose2d)
#: the paths compared: (largest unfolded input, tap-by-tap threshold); 0 bytes: every call
#: takes the convolution, a threshold under 0: no layer runs tap by tap
VARIANTS = {"convolution": (0, -1.0), "matrix product": (256 * 2**20, -1.0),
            "default": (256 * 2**20, MatmulConv2d.TAPWISE_BELOW)}


def step_seconds(name: str, x: torch.Tensor, y: torch.Tensor, variant: str, channels_last: bool) -> float:
    unfold_bytes, tapwise_below = VARIANTS[variant]
    for layer in LAYERS:
        layer.MAX_UNFOLD_BYTES, layer.TAPWISE_BELOW = unfold_bytes, tapwise_below
    torch.manual_seed(0)
    width = 0.125 if name == "dilatednet" and x.shape[-2] > 150 else 0.25
    model = create_model(name, num_classes=7, width=width)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):  # untimed: kernel selection, allocator warm-up
        step()
    t = time.perf_counter()
    for _ in range(6):
        step()
    return (time.perf_counter() - t) / 6


def layer_sweep() -> None:
    """Forward + backward of fc6 (DilatedNet's on 15x10, VGG's on 4x3) and DeconvNet's
    deconvolution from fc7 (4x3), unfolded and tap by tap, at batch 1-16."""
    layers = [("DilatedNet fc6, 15x10", MatmulConv2d(128, 1024, 7, padding=12, dilation=4), (15, 10)),
              ("fc6, 4x3", MatmulConv2d(128, 1024, 7, padding=3), (4, 3)),
              ("DeconvNet deconvolution from fc7, 4x3", MatmulConvTranspose2d(1024, 128, 7, padding=3), (4, 3))]
    print(f"torch threads {torch.get_num_threads()}, channels-last, median of 8 after 2 untimed")
    print("| layer | batch | skipped products per weight | unfolded ms | tap by tap ms |\n|---|---:|---:|---:|---:|")
    for title, layer, size in layers:
        padding = layer.padding if isinstance(layer, MatmulConv2d) else (3, 3)
        dead = 1.0 - live_fraction(size, layer.kernel_size, layer.dilation, padding)
        for n in (1, 2, 4, 8, 16):
            x = torch.randn(n, layer.in_channels, *size).to(memory_format=torch.channels_last).requires_grad_()
            ms = []
            for below, least in ((-1.0, 0), (1.0, 0)):  # never, always tap by tap
                type(layer).TAPWISE_BELOW, type(layer).TAPWISE_MIN_SKIPPED = below, least
                runs = []
                for i in range(10):
                    t = time.perf_counter()
                    layer(x).sum().backward()
                    runs.append(time.perf_counter() - t)
                ms.append(sorted(runs[2:])[4] * 1000)
            print(f"| {title} | {n} | {dead * n * size[0] * size[1]:.0f} | {ms[0]:.1f} | {ms[1]:.1f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", default="fcn8s,deconvnet,dilatednet")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--input", default="120x80", help="HxW")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--layer-sweep", action="store_true", help="time fc6 alone, unfolded and tap by tap")
    a = p.parse_args()
    defaults = [(layer.MAX_UNFOLD_BYTES, layer.TAPWISE_BELOW, layer.TAPWISE_MIN_SKIPPED) for layer in LAYERS]
    try:
        if a.layer_sweep:
            layer_sweep()
        else:
            network_steps(a)
    finally:
        for layer, (unfold_bytes, below, least) in zip(LAYERS, defaults):
            layer.MAX_UNFOLD_BYTES, layer.TAPWISE_BELOW, layer.TAPWISE_MIN_SKIPPED = unfold_bytes, below, least


def network_steps(a: argparse.Namespace) -> None:
    """The training-step table of the three paths (see the module docstring)."""
    h, w = (int(v) for v in a.input.split("x"))
    x, y = torch.randn(a.batch, 3, h, w), torch.randint(0, 7, (a.batch, h, w))
    if a.channels_last:
        x = x.to(memory_format=torch.channels_last)
    layout = "channels-last" if a.channels_last else "contiguous"
    print(f"torch threads {torch.get_num_threads()}, batch {a.batch}, input {a.input}, {layout}")
    print("| network | convolution ms | matrix product ms | default ms | default vs convolution |\n"
          "|---|---:|---:|---:|---:|")
    for name in a.networks.split(","):
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(3):
            for variant in VARIANTS:
                times[variant].append(step_seconds(name, x, y, variant, a.channels_last))
        conv, mm, default = (min(times[v]) * 1000 for v in VARIANTS)
        print(f"| {name} | {conv:.0f} | {mm:.0f} | {default:.0f} | {conv / default:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
