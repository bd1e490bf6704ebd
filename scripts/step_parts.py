#!/usr/bin/env python
"""Where a default-suite training step goes: data, forward, backward, optimiser (ms a step).

    OMP_NUM_THREADS=1 python scripts/step_parts.py fcn8s segnet
    OMP_NUM_THREADS=2 python scripts/step_parts.py fcn8s segnet

Trains each named network (1/4 width; torchvision's reference networks at their one size)
on ccp-mini-groups train with the deep suite's recipe (half-size input, batch 8, scale
0.75-1.25, flips, jitter 0.1, Adam as the trainer makes it) for 4 epochs of 4 steps, and
prints the mean milliseconds of each part over the last 3 epochs (the first is warm-up).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import get_dataset  # noqa: E402
from deep import models  # noqa: E402
from deep.engine.config import TrainConfig  # noqa: E402
from deep.engine.data import make_loaders  # noqa: E402
from deep.engine.optim import make_optimizer  # noqa: E402
from deep.engine.parallel import SingleProcess  # noqa: E402

PARTS = ("data", "forward", "backward", "optimiser")


def step_parts(name: str, epochs: int = 4) -> dict[str, float]:
    torch.manual_seed(0)
    train = get_dataset("ccp-mini-groups").split("train")
    options = {} if name.startswith(("lraspp", "deeplabv3", "fcn-")) else {"width": 0.25}
    net = models.create_model(name, num_classes=train.info.num_classes, **options)
    cfg = TrainConfig(scale=0.5, epochs=epochs, batch_size=8, lr=2e-3, scale_range=(0.75, 1.25), jitter=0.1)
    loaders = make_loaders(train, None, cfg, seed=0, process_seed=0, min_size=1, pin_memory=False,
                           parallel=SingleProcess())
    optimizer = make_optimizer(net, cfg)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=loaders.ignore)
    net.train()
    totals, steps = dict.fromkeys(PARTS, 0.0), 0
    for epoch in range(epochs):
        t = time.perf_counter()
        for images, labels in loaders.train:
            t1 = time.perf_counter()
            loss = criterion(net(images), labels)
            t2 = time.perf_counter()
            optimizer.zero_grad()
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            if epoch > 0:
                for part, seconds in zip(PARTS, (t1 - t, t2 - t1, t3 - t2, t4 - t3)):
                    totals[part] += seconds
                steps += 1
            t = time.perf_counter()
    return {part: 1000 * seconds / steps for part, seconds in totals.items()}


def main() -> None:
    names = sys.argv[1:] or ["fcn8s", "segnet"]
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| network | " + " | ".join(f"{p} ms" for p in PARTS) + " | step ms |")
    print("|---|" + "---|" * (len(PARTS) + 1))
    for name in names:
        ms = step_parts(name)
        print(f"| {name} | " + " | ".join(f"{ms[p]:.0f}" for p in PARTS) + f" | {sum(ms.values()):.0f} |", flush=True)


if __name__ == "__main__":
    main()
