"""scripts/train_loader_speed.py: the trainer's training loader timed without a step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "bench" / "datasets" / "data" / "ccp_mini"


def _script():
    spec = importlib.util.spec_from_file_location("train_loader_speed", ROOT / "scripts" / "train_loader_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_epoch_is_timed_whole_with_its_first_batch_apart():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(10, 3), torch.zeros(10)),
                                         batch_size=4)
    first, seconds, images = _script().epoch_times(loader)
    assert images == 10 and 0 <= first <= seconds


def test_one_row_per_worker_count_and_epoch_over_the_whole_split(monkeypatch, capsys):
    script = _script()
    monkeypatch.setattr(sys, "argv", ["train_loader_speed.py", "--dataset", "ccp-mini", "--data-root", str(MINI),
                                      "--workers", "0,1", "--epochs", "2", "--scale", "0.25", "--crop", "32x48"])
    counted = []
    timed = script.epoch_times
    monkeypatch.setattr(script, "epoch_times", lambda loader: counted.append(timed(loader)) or counted[-1])
    script.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1:3] for row in rows] == [[" 0 ", " 1 "], [" 0 ", " 2 "], [" 1 ", " 1 "], [" 1 ", " 2 "]]
    # every epoch passes over the 32 training photos, in the main process and in a worker alike
    assert [images for _, _, images in counted] == [32] * 4
