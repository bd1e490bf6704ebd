"""``torch.compile`` for the training step, with a clean fall-back to eager execution when
the compiler cannot work on this machine (no C++ compiler, an unsupported operator)."""

from __future__ import annotations

import warnings

import torch
from torch import nn


class CompiledOrEager(nn.Module):
    """Runs ``torch.compile(net)``; if a call of the compiled net raises while the eager net
    succeeds on the same input, warns once and uses the eager net from then on (the failed
    call changed nothing: it raised before any backward or step). An input the eager net
    also fails on raises the eager net's error."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.eager = net
        self.compiled = torch.compile(net)
        self.fell_back: str | None = None  # why, once it has fallen back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fell_back is None:
            try:
                return self.compiled(x)
            except Exception as e:  # noqa: BLE001 - decided below by running the eager net
                out = self.eager(x)  # raises the model's own error when the input is at fault
                self.fell_back = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                warnings.warn(f"torch.compile failed here ({self.fell_back}); training continues without it",
                              RuntimeWarning, stacklevel=2)
                return out
        return self.eager(x)


def maybe_compile(net: nn.Module, on: bool) -> nn.Module:
    return CompiledOrEager(net) if on else net
