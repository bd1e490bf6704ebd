"""bench.evaluate: folders of index PNGs scored against an independent numpy computation."""

from __future__ import annotations

import json
import math
import re
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


# -- input strictness: what MMSegmentation, torchmetrics and smp accept or refuse ----------------
def _cli_evaluate(capsys, pred_dir, gt_dir, *extra):
    from bench.cli import main

    code = main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--num-classes", str(K),
                 "--no-progress", "--format", "json", *extra])
    return code, capsys.readouterr()


def test_a_jpeg_named_png_is_refused_naming_the_file(folders, capsys):
    """A JPEG's lossy pixels are no class indices (one trial scored one at mIoU 0.072 instead
    of 0.892): the reader goes by the file's bytes, not by its suffix."""
    pred_dir, gt_dir, pairs = folders
    Image.fromarray(pairs["img_04.png"][0]).save(pred_dir / "img_04.png", format="JPEG", quality=95)
    code, out = _cli_evaluate(capsys, pred_dir, gt_dir, "--ignore-index", str(IGNORE))
    assert code == 2 and out.out == ""
    (line,) = out.err.strip().splitlines()
    assert line.startswith("segbench: error: ") and "img_04.png: the file is JPEG, not PNG" in line
    assert str(pred_dir) in line


def test_ignore_value_in_predictions_where_gt_is_ignored_is_accepted(folders, capsys):
    """MMSegmentation, torchmetrics and smp drop those pixels before reading the prediction;
    so does segbench: the scores equal those of the same predictions with classes there."""
    pred_dir, gt_dir, pairs = folders
    before = evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)
    for name, (pred, gt) in pairs.items():
        _write(pred_dir / name, np.where(gt == IGNORE, IGNORE, pred).astype(np.uint8))
    code, out = _cli_evaluate(capsys, pred_dir, gt_dir, "--ignore-index", str(IGNORE))
    assert code == 0, out.err
    after = json.loads(out.out)
    assert after["confusion_matrix"] == before["confusion_matrix"]
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou", "bf"):
        assert after[key] == pytest.approx(before[key]), key
    assert after["miou"] == pytest.approx(_independent(pairs)["miou"])


def test_ignore_value_in_predictions_where_gt_is_a_class_is_refused(folders):
    pred_dir, gt_dir, pairs = folders
    pred, gt = pairs["img_02.png"]
    y, x = np.argwhere(gt != IGNORE)[0]
    pred = pred.copy()
    pred[y, x] = IGNORE
    _write(pred_dir / "img_02.png", pred)
    with pytest.raises(EvaluateError, match=r"img_02.png: pred contains class index\(es\) \[255\] outside \[0, 6\) "
                                            r"at pixels whose target is a class"):
        evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False)


def test_smp_convention_with_an_ignore_index_that_is_a_class_is_refused(folders, capsys):
    pred_dir, gt_dir, _ = folders
    code, out = _cli_evaluate(capsys, pred_dir, gt_dir, "--ignore-index", "0", "--miou-convention", "smp")
    assert code == 2
    (line,) = out.err.strip().splitlines()
    assert "smp mIoU convention is undefined with the ignore index 0 inside the class range [0, 6)" in line
    with pytest.raises(EvaluateError, match="smp mIoU convention is undefined"):
        evaluate_folders(pred_dir, gt_dir, K, 0, convention="smp", progress=False)


# -- --ci: intervals by an image bootstrap (issue 15) ---------------------------------------------
@pytest.fixture
def many(tmp_path):
    """40 image pairs whose predictions are right on 30-95% of the pixels (it varies by image)."""
    rng = np.random.default_rng(7)
    pairs = {}
    for i in range(40):
        gt = rng.integers(0, 4, (12, 16)).astype(np.uint8)
        gt[0, :3] = IGNORE
        pred = np.where(rng.random(gt.shape) < rng.uniform(0.3, 0.95), gt % IGNORE, rng.integers(0, 5, gt.shape))
        name = f"im{i:02d}.png"
        _write(tmp_path / "gt" / name, gt)
        _write(tmp_path / "pred" / name, pred.astype(np.uint8))
        pairs[name] = (pred, gt)
    return tmp_path / "pred", tmp_path / "gt", pairs


def _independent_bootstrap(pairs, resamples: int, seed: int) -> np.ndarray:
    """Basic bootstrap interval of the mIoU from per-class pixel counts of each image (masks, no
    confusion matrix), summed over images drawn with replacement, in a plain loop."""
    names = sorted(pairs)
    inter, union = np.zeros((len(names), K)), np.zeros((len(names), K))
    for j, name in enumerate(names):
        p, t = pairs[name]
        p, t = p[t != IGNORE], t[t != IGNORE]
        for c in range(K):
            inter[j, c] = np.sum((p == c) & (t == c))
            union[j, c] = np.sum((p == c) | (t == c))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(names), len(names))
        i, u = inter[idx].sum(0), union[idx].sum(0)
        values.append(np.mean(i[u > 0] / u[u > 0]))
    i, u = inter.sum(0), union.sum(0)
    estimate = np.mean(i[u > 0] / u[u > 0])
    q_lo, q_hi = np.percentile(values, [2.5, 97.5])
    return np.array([2 * estimate - q_hi, 2 * estimate - q_lo])


def test_ci_holds_the_estimate_and_matches_an_independent_bootstrap(many):
    pred_dir, gt_dir, pairs = many
    res = evaluate_folders(pred_dir, gt_dir, K, IGNORE, boundary=False, progress=False, ci=True, resamples=4000)
    lo, hi = res["miou_ci"]
    assert lo < res["miou"] < hi and res["ci"]["miou"] == [lo, hi]
    ref_lo, ref_hi = _independent_bootstrap(pairs, 4000, seed=99)  # other draws: Monte Carlo error only
    assert lo == pytest.approx(ref_lo, abs=0.08 * (ref_hi - ref_lo))
    assert hi == pytest.approx(ref_hi, abs=0.08 * (ref_hi - ref_lo))
    for c, (clo, chi) in enumerate(res["iou_ci"]):
        assert (clo <= res["iou"][c] <= chi) if c < 5 else math.isnan(clo)  # class 5: never present
    assert res["bootstrap"] == {"method": "basic bootstrap over images", "level": 0.95, "resamples": 4000,
                                "seed": 0, "n_images": 40}


def test_ci_on_the_command_line_is_seeded_and_recorded(many, capsys):
    pred_dir, gt_dir, _ = many
    args = ("--ignore-index", str(IGNORE), "--ci", "--resamples", "500", "--seed", "3")
    first, second = (_cli_evaluate(capsys, pred_dir, gt_dir, *args) for _ in range(2))
    assert first[0] == 0 and first[1].out == second[1].out
    obj = json.loads(first[1].out)
    assert obj["miou_ci"][0] <= obj["miou"] <= obj["miou_ci"][1] and len(obj["iou_ci"]) == K
    assert obj["bootstrap"]["resamples"] == 500 and obj["bootstrap"]["seed"] == 3
    other = json.loads(_cli_evaluate(capsys, pred_dir, gt_dir, *args[:-1], "4")[1].out)
    assert other["miou_ci"] != obj["miou_ci"] and other["miou"] == obj["miou"]
    text = format_result(evaluate_folders(pred_dir, gt_dir, K, IGNORE, progress=False, ci=True, resamples=200))
    assert re.search(r"mIoU \(mmseg\) +0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]", text)
    assert "95% interval, basic bootstrap over the 40 images, 200 resamples, seed 0" in text


def test_ci_needs_two_images(tmp_path):
    _write(tmp_path / "gt" / "a.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path / "pred" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(EvaluateError, match="--ci: a bootstrap over images needs at least 2 images"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", K, progress=False, ci=True)
