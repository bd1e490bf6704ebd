"""Data-parallel training (deep/ddp.py, deep/engine/parallel.py): two CPU processes with gloo
under torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.datasets import get_dataset
from bench.method import FitContext
from deep.ddp import build_parser, main
from deep.engine import transforms as T
from deep.engine.checkpoint import load_checkpoint
from deep.engine.config import TrainConfig
from deep.engine.data import SplitDataset
from deep.engine.loop import evaluate, train
from deep.engine.parallel import Distributed
from deep.method import DeepSettings
from deep.models import create_model

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# a network with BatchNorm (running statistics must agree between processes)
MODEL = "segnet-basic"
# tiny shapes: 8 training images (4 per process), 5 validation images (shards of 3 and 2)
DATA_OPTIONS = {"n_train": 8, "n_val": 5, "n_test": 0, "size": [32, 48]}


def cli_args(epochs: int = 2) -> list[str]:
    """deep.ddp's command line for a tiny network on the tiny shapes data (--out added by the caller)."""
    return ["--model", MODEL, "--width", "0.0625", "--dataset", "shapes", "--device", "cpu",
            "--epochs", str(epochs), "--batch-size", "2", "--lr", "0.01", "--no-progress",
            *[a for k, v in DATA_OPTIONS.items() for a in ("--dataset-option", f"{k}={json.dumps(v)}")]]


# run by torchrun in each process: deep.ddp's command line, then this process's result saved
WORKER = textwrap.dedent("""
    import os, sys, torch
    from deep.ddp import main
    result = main(sys.argv[2:])
    torch.save({"val_confusion": torch.from_numpy(result.val_confusion), "final_state": result.final_state,
                "history": result.history}, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shapes():
    return get_dataset("shapes", **DATA_OPTIONS)


def one_process_confusion(state: dict[str, torch.Tensor]) -> np.ndarray:
    """The validation split scored by one process with the plain (never distributed) network."""
    data = shapes()
    model = create_model(MODEL, num_classes=data.info.num_classes, width=0.0625)
    model.load_state_dict(state)  # strict: no "module." prefixes, no missing BatchNorm buffers
    model.eval()
    loader = torch.utils.data.DataLoader(SplitDataset(data.split("val"), T.eval_transform(1.0), keep_label=True),
                                         batch_size=1)
    cm, _ = evaluate(model, loader, data.info.num_classes, data.info.ignore_index,
                     device=torch.device("cpu"), min_size=model.min_input_size)
    return cm


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """One torchrun launch of two gloo processes; returns the run folder and their stdout."""
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(script), str(tmp), *cli_args(2), "--out", str(tmp / "run")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc.stdout


# ---------------------------------------------------------------------------------------
def test_reduced_confusion_matrix_equals_one_process_on_the_final_weights(two_process_run):
    tmp, _ = two_process_run
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    last = load_checkpoint(tmp / "run" / "last.pt", model_name=MODEL, num_classes=6)

    # DDP kept the processes in step: same weights and BatchNorm statistics everywhere, and
    # the checkpoint holds them
    for key, value in last["model"].items():
        assert torch.equal(ranks[0]["final_state"][key], value), key
        assert torch.equal(ranks[1]["final_state"][key], value), key

    # every process has the whole split's matrix, and it is exactly what one process counts
    expected = one_process_confusion(last["model"])
    for r in ranks:
        np.testing.assert_array_equal(r["val_confusion"].numpy(), expected)
    labelled = sum(int((np.asarray(s.label) != 255).sum()) for s in shapes().split("val"))
    assert expected.sum() == labelled  # 5 images in shards of 3 and 2: none counted twice

    # the same loss (averaged over both processes) and val mIoU in every process; timings differ
    figures = [[(row["epoch"], row["train_loss"], row["val_miou"], row["lr"]) for row in r["history"]]
               for r in ranks]
    assert figures[0] == figures[1]
    assert [row["epoch"] for row in last["history"]] == [1, 2]
    assert np.isfinite([row["val_miou"] for row in last["history"]]).all()


def test_only_rank_0_writes_and_the_checkpoint_loads_in_one_process(two_process_run):
    tmp, stdout = two_process_run
    run = tmp / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "curves.png", "history.csv", "last.pt",
                                                     "progress.png"]
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and lines[0]["world_size"] == 2 and lines[0]["epochs_trained"] == 2

    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(run / name, model_name=MODEL, num_classes=6)
        model = create_model(MODEL, num_classes=6, width=0.0625)
        model.load_state_dict(ckpt["model"])  # strict
        with torch.inference_mode():
            assert model.eval()(torch.zeros(1, 3, 32, 48)).shape == (1, 6, 32, 48)


def test_one_process_without_torchrun_trains_exactly_like_train(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    result = main([*cli_args(epochs=1), "--out", str(tmp_path / "ddp")])
    assert not torch.distributed.is_initialized()

    data = shapes()
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=6, width=0.0625)
    cfg = TrainConfig(epochs=1, batch_size=2, lr=0.01)
    plain = train(model, data.split("train"), data.split("val"), cfg,
                  FitContext(run_dir=tmp_path / "plain", device="cpu", progress=False), model_name=MODEL)
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in plain.history]
    for key, value in plain.final_state.items():
        assert torch.equal(result.final_state[key], value), key
    np.testing.assert_array_equal(result.val_confusion, plain.val_confusion)
    assert (tmp_path / "ddp" / "last.pt").exists()


def test_validation_shards_hold_each_image_once_and_training_shards_are_equal():
    shards = [list(Distributed(r, 2, "cpu").val_shard(5)) for r in (0, 1)]
    assert shards == [[0, 2, 4], [1, 3]]
    samplers = [Distributed(r, 2, "cpu").train_sampler(range(5), seed=0) for r in (0, 1)]
    assert len(samplers[0]) == len(samplers[1]) == 3  # padded, so both processes step together
    assert set(samplers[0]) | set(samplers[1]) == set(range(5))


def test_sync_bn_on_cpu_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit, match="--sync-bn needs CUDA"):
        main([*cli_args(), "--sync-bn", "--out", str(tmp_path)])


def test_command_line_is_built_from_the_settings_with_their_defaults():
    """Every setting of the deep methods (but what only the method's fit keeps) is an option,
    with DeepSettings' defaults: one set of defaults for the runner and for deep.ddp."""
    args = build_parser().parse_args(["--model", MODEL, "--dataset", "shapes", "--out", "x"])
    defaults = DeepSettings()
    for field in dataclasses.fields(DeepSettings):
        if field.name in ("keep", "keep_checkpoints"):
            assert not hasattr(args, field.name)
        else:
            assert getattr(args, field.name) == getattr(defaults, field.name), field.name
    args = build_parser().parse_args(["--model", MODEL, "--dataset", "shapes", "--out", "x", "--crop", "24x32",
                                      "--scale-range", "0.5,1.5", "--no-hflip", "--amp", "bf16", "--seed", "3"])
    assert (args.crop, args.scale_range, args.hflip, args.amp, args.seed) == ((24, 32), (0.5, 1.5), False, "bf16", 3)


def test_bad_settings_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit, match="deep.ddp: .*epochs must be >= 1"):
        main([*cli_args(), "--epochs", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="deep.ddp: .*unknown method 'nope'"):
        main([*cli_args(), "--model", "nope", "--out", str(tmp_path)])
