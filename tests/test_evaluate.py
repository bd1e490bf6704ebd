"""bench.evaluate: folders of index PNGs scored against an independent numpy computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.datasets.types import DatasetError
from bench.evaluate import EvaluateError, evaluate_folders, format_result
from bench.formatting import DASH
from bench.metrics import boundary_f1

K, IGNORE = 6, 255


def _write(path: Path, arr: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.fromarray(arr, mode="P")
        im.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    elif mode == "RGB":
        im = Image.fromarray(np.stack([arr] * 3, -1))
    elif mode == "I;16":
        im = Image.fromarray(arr.astype(np.uint16))
    else:
        im = Image.fromarray(arr)
    im.save(path)


@pytest.fixture
def folders(tmp_path):
    """Five random image pairs of two sizes; class 5 never appears; class 4 only in pred."""
    rng = np.random.default_rng(0)
    pairs = {}
    for i, (h, w) in enumerate([(17, 23), (17, 23), (30, 12), (8, 8), (30, 12)]):
        gt = rng.integers(0, 4, (h, w)).astype(np.uint8)
        pred = np.where(rng.random((h, w)) < 0.6, gt, rng.integers(0, 5, (h, w))).astype(np.uint8)
        gt[rng.random((h, w)) < 0.15] = IGNORE
        name = f"img_{i:02d}.png"
        mode = ["L", "P", "RGB", "I;16", "L"][i]
        _write(tmp_path / "gt" / name, gt, "L" if mode == "RGB" else mode)
        _write(tmp_path / "pred" / name, pred, mode)
        pairs[name] = (pred, gt)
    return tmp_path / "pred", tmp_path / "gt", pairs


def _independent(pairs):
    """Split-level scores with plain numpy per class, no confusion matrix."""
    p = np.concatenate([a.ravel() for a, _ in pairs.values()]).astype(np.int64)
    t = np.concatenate([b.ravel() for _, b in pairs.values()]).astype(np.int64)
    keep = t != IGNORE
    p, t = p[keep], t[keep]
    iou, acc, freq = [], [], []
    for c in range(K):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        iou.append(inter / union if union else math.nan)
        acc.append(inter / np.sum(t == c) if np.sum(t == c) else math.nan)
        freq.append(np.sum(t == c) / t.size)
    iou_a = np.array(iou)
    return {
        "iou": iou, "miou": np.nanmean(iou_a), "pixel_acc": np.mean(p == t), "mean_acc": np.nanmean(acc),
        "fwiou": sum(f * v for f, v in zip(freq, iou) if f > 0),
    }


def test_evaluate_matches_independent_numpy(folders):
    pred_dir, gt_dir, pairs = folders
    res = evaluate_folders(pred_dir, gt_dir, K, ignore_index=IGNORE, progress=False)
    ref = _independent(pairs)
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert res[key] == pytest.approx(ref[key], abs=1e-6), key
    got = np.array(res["iou"], float)
    assert np.allclose(got, ref["iou"], atol=1e-6, equal_nan=True)
    assert math.isnan(res["iou"][5]) and res["iou"][4] == 0.0  # absent / only predicted
    assert res["n_images"] == 5
    bf = [boundary_f1(p, g, K, IGNORE) for p, g in pairs.values()]
    assert res["bf"] == pytest.approx(float(np.nanmean(bf)))
    assert set(res["miou_by_convention"]) == {"mmseg", "smp", "per-image"}
    assert evaluate_folders(pred_dir, gt_dir, K, IGNORE, boundary=False, progress=False)["bf"] is None
    smp = evaluate_folders(pred_dir, gt_dir, K, IGNORE, convention="smp", boundary=False, progress=True)
    assert smp["miou"] == pytest.approx(res["miou_by_convention"]["smp"])


def test_format_result(folders):
    pred_dir, gt_dir, _ = folders
    res = evaluate_folders(pred_dir, gt_dir, K, ignore_index=IGNORE, progress=False)
    obj = json.loads(format_result(res, "json"))
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou", "iou", "bf"):
        assert key in obj
    assert obj["iou"][5] is None and obj["miou"] == pytest.approx(res["miou"])
    assert "\n" not in format_result(res, "json")
    md = format_result(res, "md")
    assert md.startswith("| metric | value |") and "| mIoU (mmseg) |" in md and f"| 5 | {DASH} |" in md
    text = format_result(res, "text", class_names=[f"c{i}" for i in range(K)])
    assert "mIoU (mmseg)" in text and "c4" in text and "BF" in text
    with pytest.raises(ValueError, match="unknown format"):
        format_result(res, "csv")


def test_mismatched_names(tmp_path, folders):
    pred_dir, gt_dir, _ = folders
    (pred_dir / "img_01.png").rename(pred_dir / "other.png")
    with pytest.raises(EvaluateError) as e:
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)
    msg = str(e.value)
    assert "img_01.png" in msg and "other.png" in msg and "\n" not in msg
    for i in range(7):
        _write(gt_dir / f"extra_{i}.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(EvaluateError, match="8 ground-truth file.*and 3 more"):
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)


def test_mismatched_sizes_and_bad_files(folders):
    pred_dir, gt_dir, pairs = folders
    _write(pred_dir / "img_03.png", np.zeros((9, 8), np.uint8))
    with pytest.raises(EvaluateError, match=r"img_03.png: prediction is 8x9 but ground truth is 8x8"):
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)
    _write(pred_dir / "img_03.png", pairs["img_03.png"][0])
    _write(pred_dir / "img_00.png", np.full((17, 23), 9, np.uint8))
    with pytest.raises(EvaluateError, match=r"img_00.png: pred contains class index"):
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)
    rgb = np.zeros((17, 23, 3), np.uint8)
    rgb[..., 1] = 1
    Image.fromarray(rgb).save(pred_dir / "img_00.png")
    with pytest.raises(DatasetError, match=r"img_00.png: expected a single-channel index mask"):
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)
    (pred_dir / "img_00.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="img_00.png: not a readable image"):
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)


def test_missing_and_empty_folders(tmp_path, folders):
    pred_dir, gt_dir, _ = folders
    with pytest.raises(EvaluateError, match="nope.*does not exist"):
        evaluate_folders(tmp_path / "nope", gt_dir, K, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluateError, match="empty holds no .png"):
        evaluate_folders(pred_dir, tmp_path / "empty", K, progress=False)
    with pytest.raises(EvaluateError, match="convention"):
        evaluate_folders(pred_dir, gt_dir, K, convention="keras", progress=False)
    assert issubclass(EvaluateError, ValueError)
