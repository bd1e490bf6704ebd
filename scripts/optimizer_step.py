#!/usr/bin/env python
"""Time of one Adam step, torch's default implementation against the fused kernel the trainer
uses (``TrainConfig.fused``), for the deep suite's networks at 1/4 width, on one CPU thread.

    python scripts/optimizer_step.py

Prints one Markdown row per network: trainable parameters and the median of 15 steps
(after one untimed step) with random gradients.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deep import models  # noqa: E402

NETWORKS = ("fcn8s", "dilatednet", "deconvnet", "segnet", "unet", "segnet-basic")


def step_ms(params: list[torch.Tensor], fused: bool | None, repeats: int = 15) -> float:
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4, fused=fused)
    opt.step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    torch.set_num_threads(1)
    print("| network | parameters | Adam step ms (default) | Adam step ms (fused) | ratio |")
    print("|---|---|---|---|---|")
    for name in NETWORKS:
        torch.manual_seed(0)
        params = [p for p in models.create_model(name, num_classes=7, width=0.25).parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p)
        plain, fused = step_ms(params, None), step_ms(params, True)
        n = sum(p.numel() for p in params)
        print(f"| {name} | {n / 1e6:.2f}M | {plain:.0f} | {fused:.0f} | {plain / fused:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
