"""bench.metrics boundary F1 and Scorer against a scipy reference and hand-computed values."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from bench.metrics import Scorer, boundary_f1, confusion_matrix, image_miou
from bench.metrics import boundary as B


# ---------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------
def ref_bf(pred, target, K, ignore=None, tolerance=0.0075):
    """BF with scipy: cross erosion (frame = inside), exact EDT, loops over classes."""
    H, W = target.shape
    tol = tolerance * math.hypot(H, W)
    valid = target != ignore if ignore is not None else np.ones_like(target, bool)
    classes = [c for c in range(K) if c != ignore and np.any((target == c) & valid)]
    if not classes:
        return math.nan
    cross = ndi.generate_binary_structure(2, 1)
    f1s = []
    for c in classes:
        gm, pm = target == c, pred == c
        gb = gm & valid & ~ndi.binary_erosion(gm | ~valid, cross, border_value=1)
        pb = pm & valid & ~ndi.binary_erosion(pm | ~valid, cross, border_value=1)
        if not gb.any() or not pb.any():
            f1s.append(1.0 if gb.any() == pb.any() else 0.0)
            continue
        d_to_g = ndi.distance_transform_edt(~gb)
        d_to_p = ndi.distance_transform_edt(~pb)
        prec = np.mean(d_to_g[pb] <= tol)
        rec = np.mean(d_to_p[gb] <= tol)
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return float(np.mean(f1s))


def nan_equal(a, b, tol=1e-12):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tol)))


def smooth_labels(K, H, W, rng, cells=(6, 8)):
    field = rng.normal(size=(K,) + cells).astype(np.float32)
    up = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_CUBIC) for f in field])
    return up, up.argmax(0).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# boundary F1
# ---------------------------------------------------------------------------------------
def _square(H, W, r0, c0, size):
    m = np.zeros((H, W), np.uint8)
    m[r0:r0 + size, c0:c0 + size] = 1
    return m


def test_bf_identical_is_one():
    rng = np.random.default_rng(0)
    _, t = smooth_labels(5, 60, 80, rng)
    assert boundary_f1(t, t, 5) == 1.0
    assert boundary_f1(torch.from_numpy(t), torch.from_numpy(t), 5) == 1.0
    full = np.zeros((10, 10), np.uint8)  # a class filling the image: no boundary on either side
    assert boundary_f1(full, full, 2) == 1.0


def test_bf_hand_made():
    """5x5 square shifted right by one pixel in a 20x20 image, tolerance 0.

    class 1: 16 boundary pixels each, 8 coincide (top and bottom rows) -> F1 = 0.5
    class 0: 20 boundary pixels each (the outer ring, 4-neighbours), 8 coincide -> 0.4
    BF = 0.45. With a tolerance of 1.5 px every boundary pixel is matched -> 1.0.
    """
    gt = _square(20, 20, 5, 5, 5)
    pr = _square(20, 20, 5, 6, 5)
    assert boundary_f1(pr, gt, 2, tolerance=0.0) == pytest.approx(0.45)
    assert boundary_f1(pr, gt, 2, tolerance=1.5 / math.hypot(20, 20)) == pytest.approx(1.0)
    # only-pred class 2 is not scored (not in GT); a missing class scores 0
    pr2 = pr.copy()
    pr2[0:3, 0:3] = 2
    assert boundary_f1(pr2, gt, 3, tolerance=1.5 / math.hypot(20, 20)) < 1.0
    assert boundary_f1(np.zeros_like(gt), gt, 2) == 0.0  # no predicted boundary for either class


def test_bf_shifts():
    H, W = 120, 160  # tol = 0.0075 * 200 = 1.5 px
    gt = _square(H, W, 40, 50, 30)
    assert boundary_f1(_square(H, W, 41, 51, 30), gt, 2) == 1.0  # diagonal shift: sqrt(2) < 1.5
    far = boundary_f1(_square(H, W, 40, 70, 30), gt, 2)
    assert far < 0.4


def test_bf_ignore_and_empty():
    gt = _square(20, 20, 5, 5, 5)
    ign = np.full_like(gt, 255)
    assert math.isnan(boundary_f1(gt, ign, 2, 255))
    # an ignored strip is a wildcard: GT edges along it and predicted edges in it do not count
    gt2 = gt.copy()
    gt2[:, 12:] = 255
    pr2 = gt.copy()
    pr2[8:, 14:18] = 1
    assert boundary_f1(pr2, gt2, 2, 255, tolerance=0.0) == 1.0
    with pytest.raises(ValueError, match="one HxW image"):
        boundary_f1(np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="outside"):
        boundary_f1(gt + 3, gt, 2)


@pytest.mark.parametrize("tolerance", [0.0, 0.0075, 0.02, 0.05])  # 0.05 -> 10 px: distance-transform path
def test_bf_against_scipy_reference(tolerance):
    rng = np.random.default_rng(int(tolerance * 1e4))
    for _ in range(3):
        f, t = smooth_labels(6, 120, 160, rng)
        p = (f + 0.4 * smooth_labels(6, 120, 160, rng)[0]).argmax(0).astype(np.uint8)
        t[rng.random(t.shape) < 0.01] = 255
        t[:, :7] = 255
        assert boundary_f1(p, t, 6, 255, tolerance) == pytest.approx(ref_bf(p, t, 6, 255, tolerance), abs=1e-12)
        assert boundary_f1(p.astype(np.int64), t.astype(np.int32), 6, 255, tolerance) == pytest.approx(
            ref_bf(p, t, 6, 255, tolerance), abs=1e-12)


def test_disk_dilation_equals_distance_transform():
    rng = np.random.default_rng(4)
    src = (rng.random((70, 90)) < 0.01).astype(np.uint8)
    dst = (rng.random((70, 90)) < 0.3).astype(np.uint8)
    dist = ndi.distance_transform_edt(src == 0)
    for tol in (0.0, 1.0, 1.5, 2.0, 4.5, 7.9, 8.4):
        assert B._matched(src, dst, tol) == np.count_nonzero(dist[dst.astype(bool)] <= tol), tol


# ---------------------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------------------
def test_scorer_result_numpy_torch_batch():
    rng = np.random.default_rng(8)
    K = 5
    imgs = []
    for _ in range(3):
        f, t = smooth_labels(K, 30, 40, rng)
        p = (f + 0.5 * smooth_labels(K, 30, 40, rng)[0]).argmax(0).astype(np.uint8)
        t[:3] = 255
        imgs.append((p, t))
    imgs.append((np.zeros((30, 40), np.uint8), np.full((30, 40), 255, np.uint8)))  # only ignore
    a = Scorer(K, 255)
    for p, t in imgs:
        a.update(p, t)
    b = Scorer(K, 255)
    for p, t in imgs:
        b.update(torch.from_numpy(p).long(), torch.from_numpy(t))
    c = Scorer(K, 255)
    c.update(np.stack([p for p, _ in imgs]), np.stack([t for _, t in imgs]))
    ra, rb, rc = a.result(), b.result(), c.result()
    keys = {"miou", "iou", "pixel_acc", "mean_acc", "acc", "fwiou", "bf", "miou_convention",
            "miou_by_convention", "n_images", "confusion_matrix"}
    assert keys <= set(ra)
    for r in (rb, rc):
        assert r["confusion_matrix"] == ra["confusion_matrix"]
        assert nan_equal(r["iou"], ra["iou"]) and r["bf"] == ra["bf"] and r["miou_by_convention"] == ra["miou_by_convention"]
    assert ra["n_images"] == 4 and math.isnan(a.image_miou[3]) and math.isnan(a.image_bf[3])
    total = sum(confusion_matrix(p, t, K, 255) for p, t in imgs)
    assert ra["confusion_matrix"] == total.tolist()
    assert ra["bf"] == pytest.approx(np.mean([ref_bf(p, t, K, 255) for p, t in imgs[:3]]))
    assert ra["miou_by_convention"]["per-image"] == pytest.approx(
        np.mean([image_miou(confusion_matrix(p, t, K, 255)) for p, t in imgs[:3]]))
    assert Scorer(K, 255, boundary=False).result()["bf"] is None
    empty = Scorer(K).result()
    assert empty["n_images"] == 0 and math.isnan(empty["miou"]) and math.isnan(empty["bf"])
    merged = Scorer(K, 255)
    merged.update(*imgs[0])
    rest = Scorer(K, 255)
    for p, t in imgs[1:]:
        rest.update(p, t)
    merged += rest
    assert merged.result()["confusion_matrix"] == ra["confusion_matrix"] and merged.image_bf == a.image_bf
    a.reset()
    assert a.n_images == 0 and a.cm.matrix.sum() == 0
    with pytest.raises(ValueError, match="convention"):
        Scorer(3, convention="keras")
    with pytest.raises(ValueError, match="HxW image or an NxHxW batch"):
        Scorer(3).update(np.zeros(5, np.uint8), np.zeros(5, np.uint8))



# ---------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.sampled_from([0.0, 0.01, 0.05]))
def test_property_bf_matches_reference(seed, K, tolerance):
    rng = np.random.default_rng(seed)
    H, W = int(rng.integers(5, 40)), int(rng.integers(5, 40))
    t = rng.integers(0, K, (H // 4 + 1, W // 4 + 1)).astype(np.uint8)
    t = cv2.resize(t, (W, H), interpolation=cv2.INTER_NEAREST)
    p = np.where(rng.random((H, W)) < 0.05, rng.integers(0, K, (H, W)), t).astype(np.uint8)
    t[rng.random((H, W)) < 0.05] = 255
    v = boundary_f1(p, t, K, 255, tolerance)
    r = ref_bf(p, t, K, 255, tolerance)
    assert nan_equal(v, r, 1e-12)
    assert math.isnan(v) or 0.0 <= v <= 1.0
