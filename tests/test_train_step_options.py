"""scripts/train_step_options.py: one training step of a network under the trainer's speed options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("train_step_options", ROOT / "scripts" / "train_step_options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("option", ["eager", "bf16 + channels-last"])
def test_a_step_is_timed_and_counted(option):
    """FCN-8s at 90x120 and batch 8 runs its fc6 tap by tap, which crashed in bf16 (session 32)."""
    script = _script()
    channels_last, compiled, bf16 = script.OPTIONS[option]
    rate, first, gflop = script.step_speed("fcn8s", 0.0625, (90, 120), 8, channels_last, compiled, 1, bf16,
                                           torch.device("cpu"))
    assert rate > 0 and first > 0 and gflop > 0
