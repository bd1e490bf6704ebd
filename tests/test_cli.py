"""The command line end to end: one-line errors, evaluate against an independent computation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def bench(*args, cwd=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    env.pop("SEGBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("segbench: error:"), proc.stderr
    for f in fragments:
        assert f in lines[-1], lines[-1]


def test_list_shows_methods_datasets_and_suites():
    proc = bench("list")
    assert proc.returncode == 0, proc.stderr
    for name in ("majority", "shapes", "ccp-mini", "camvid", "landcover", "folder", "smoke", "all"):
        assert name in proc.stdout
    (default_line,) = [l for l in proc.stdout.splitlines() if "(default)" in l]
    assert default_line.split()[0] == "ccp-mini-groups"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("run", "--suite", "nope"), ("unknown suite 'nope'",)),
        (("run", "--suite", "smoke", "--dataset", "nope"), ("unknown dataset 'nope'",)),
        (("run", "--suite", "smoke", "--dataset", "camvid"), ("needs --data-root",)),
        (("run", "--suite", "smoke", "--dataset", "camvid", "--data-root", "/no/such/dir"), ("/no/such/dir",)),
        (("run", "--suite", "smoke", "--device", "cuda"), ("no CUDA device",)),
        (("run", "--suite", "smoke", "--miou-convention", "x"), ("--miou-convention",)),
        (("report", "--out", "/no/such/dir"), ("no records",)),
        (("run", "--method", "majority", "--eval-split", "nosuch"), ("no 'nosuch' split", "it has: train")),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, fragments):
    if args[-1] == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    assert_one_line_error(bench(*args, cwd=tmp_path), *fragments)


def test_run_writes_records_leaderboard_and_plots(tmp_path):
    proc = bench("run", "--suite", "smoke", "--dataset", "shapes", "--out", str(tmp_path / "out"), "--no-progress",
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    for name in ("records.jsonl", "leaderboard.md", "leaderboard.csv", "miou_vs_speed.png"):
        assert (out / name).is_file(), name
    assert "majority" in proc.stdout
    proc = bench("report", "--out", str(out))
    assert proc.returncode == 0, proc.stderr


def _write_index_pngs(folder, maps):
    folder.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(maps):
        Image.fromarray(m.astype(np.uint8)).save(folder / f"img_{i:02d}.png")


def _independent_scores(preds, gts, k, ignore):
    """Per-class counts by boolean masks, one class at a time (no confusion matrix)."""
    p = np.concatenate([x.ravel() for x in preds]).astype(np.int64)
    g = np.concatenate([x.ravel() for x in gts]).astype(np.int64)
    keep = g != ignore
    p, g = p[keep], g[keep]
    ious, accs, freq = [], [], []
    for c in range(k):
        tp = np.sum((p == c) & (g == c))
        fp = np.sum((p == c) & (g != c))
        fn = np.sum((p != c) & (g == c))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
        accs.append(tp / (tp + fn) if tp + fn else np.nan)
        freq.append((tp + fn) / len(g))
    ious, accs, freq = map(np.array, (ious, accs, freq))
    defined = ~np.isnan(ious)
    return {
        "miou": np.nanmean(ious), "iou": ious, "pixel_acc": np.mean(p == g), "mean_acc": np.nanmean(accs),
        "fwiou": np.sum(freq[defined] * ious[defined]),
    }


def test_evaluate_agrees_with_an_independent_computation(tmp_path):
    rng = np.random.default_rng(7)
    k, ignore = 6, 255
    gts, preds = [], []
    for i in range(5):
        h, w = rng.integers(20, 60, size=2)
        gt = rng.choice([0, 1, 2, 4, ignore], size=(h, w), p=[0.3, 0.3, 0.2, 0.1, 0.1])  # class 3 and 5 absent in GT
        pred = np.where(rng.random((h, w)) < 0.6, np.where(gt == ignore, 0, gt), rng.integers(0, 4, size=(h, w)))
        gts.append(gt)
        preds.append(pred)
    _write_index_pngs(tmp_path / "gt", gts)
    _write_index_pngs(tmp_path / "pred", preds)
    proc = bench("evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", str(k),
                 "--ignore-index", str(ignore), "--format", "json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = _independent_scores(preds, gts, k, ignore)
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert len(got["iou"]) == k
    for g, w in zip(got["iou"], want["iou"]):
        assert (g is None and np.isnan(w)) or g == pytest.approx(w, abs=1e-6)
    assert got["iou"][5] is None  # never predicted, never in GT


def test_evaluate_mismatched_names_and_sizes_are_clear_errors(tmp_path):
    a = np.zeros((8, 9), np.uint8)
    _write_index_pngs(tmp_path / "gt", [a, a])
    _write_index_pngs(tmp_path / "pred", [a])
    proc = bench("evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3")
    assert_one_line_error(proc, "img_01.png")
    _write_index_pngs(tmp_path / "pred", [a, np.zeros((8, 10), np.uint8)])
    proc = bench("evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3")
    assert_one_line_error(proc, "img_01.png")


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED / "camvid" / "train").is_dir(), reason="../shared/datasets/camvid not present")
def test_eval_split_can_be_any_split_of_the_dataset(tmp_path):
    # camvid-holdout's held-out sequence is a split of its own, named after the sequence
    proc = bench("run", "--method", "majority", "--dataset", "camvid-holdout", "--data-root", str(SHARED / "camvid"),
                 "--eval-split", "0006R0", "--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (rec,) = [json.loads(l) for l in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok" and rec["eval_split"] == "0006R0"
    assert rec["n_eval"] == 101 and rec["n_train"] == 266
    assert "--eval-split 0006R0" in rec["command"]


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED / "camvid" / "train").is_dir(), reason="../shared/datasets/camvid not present")
def test_smoke_suite_runs_on_real_camvid(tmp_path):
    proc = bench("run", "--suite", "smoke", "--dataset", "camvid", "--data-root", str(SHARED / "camvid"),
                 "--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(l) for l in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert recs and all(r["status"] == "ok" for r in recs)
    assert all(r["n_eval"] == 101 and len(r["class_names"]) == 11 for r in recs)
