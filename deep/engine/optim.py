"""The optimiser (Adam or SGD with momentum) and the per-iteration learning-rate schedule of a run."""

from __future__ import annotations

import math

import torch
from torch import nn

from deep.engine.config import TrainConfig


#: devices with torch's fused optimiser kernels (one pass over every tensor)
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD over the trainable parameters, fused (``cfg.fused``) where torch has the
    kernel: the same update to rounding, 9x faster for Adam on this CPU (260 -> 29 ms a step for
    FCN-8s at 1/4 width; docs/BENCHMARKS.md)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = cfg.fused and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params) or None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_iters: int, warmup_iters: int = 0):
    """Per-iteration learning-rate schedule over ``total_iters`` steps, after a linear warm-up
    from lr/warmup_iters to lr over the first ``warmup_iters`` steps (0: none)."""
    total = max(1, total_iters)
    if schedule == "poly":
        base = lambda it: (1 - min(it, total) / total) ** 0.9  # noqa: E731
    elif schedule == "cosine":
        base = lambda it: 0.5 * (1 + math.cos(math.pi * min(it, total) / total))  # noqa: E731
    else:
        base = lambda it: 1.0  # noqa: E731
    if warmup_iters > 0:
        factor = lambda it: min(1.0, (it + 1) / warmup_iters) * base(it)  # noqa: E731
    else:
        factor = base
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
