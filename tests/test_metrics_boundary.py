"""bench.metrics boundary F1 (against the old algorithm, brute force, hand-computed values) and the Scorer."""

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
# reference
# ---------------------------------------------------------------------------------------
def ref_bf(pred, target, K, ignore=None, tolerance=0.0075):
    """BF as segbench computed it before the all-classes-at-once version, written plainly.

    For each GT class: full-image masks, boundaries by a cross erosion (frame = inside, ignore
    pixels = wildcards), and matching by a dilation with the float64 disk d2 <= tol * tol
    below 8.5 px, by OpenCV's float32 exact distance transform (dist <= tol) from 8.5 px.
    The new code gives the very same floats (but see :func:`assert_as_old`).
    """
    H, W = target.shape
    tol = float(tolerance) * math.hypot(H, W)  # a Python float: numpy compares float32 distances in float32
    valid = target != ignore if ignore is not None else np.ones(target.shape, bool)
    classes = [c for c in range(K) if c != ignore and np.any(target == c)]
    if not classes:
        return math.nan
    cross = ndi.generate_binary_structure(2, 1)

    def boundary(mask):
        return mask & valid & ~ndi.binary_erosion(mask | ~valid, cross, border_value=1)

    def n_matched(src, dst):
        if tol < 8.5:
            r = int(tol)
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            near = ndi.binary_dilation(src, structure=(yy * yy + xx * xx) <= tol * tol)
        else:
            near = cv2.distanceTransform((~src).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= tol
        return int(np.count_nonzero(near & dst))

    f1s = []
    for c in classes:
        gb, pb = boundary(target == c), boundary(pred == c)
        n_g, n_p = int(gb.sum()), int(pb.sum())
        if n_g == 0 or n_p == 0:
            f1s.append(1.0 if n_g == n_p else 0.0)
            continue
        precision = n_matched(gb, pb) / n_p
        recall = n_matched(pb, gb) / n_g
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return float(np.mean(f1s))


def same(a, b):
    """Identical floats (NaN equals NaN)."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def ulps32(a, b):
    """How many float32 steps lie between a and b (both positive)."""
    return abs(int(np.float32(a).view(np.int32)) - int(np.float32(b).view(np.int32)))


def float32_edge(tol_px):
    """The integer n whose sqrt lies within 2 float32 ulps of tol (>= 8.5 px), else None: there
    the old float32 distance transform (within 1 ulp of the true distance) decided pixel pairs at
    distance sqrt(n) either way."""
    n = round(tol_px * tol_px)
    return n if tol_px >= 8.5 and ulps32(math.sqrt(n), tol_px) <= 2 else None


def assert_as_old(p, t, K, ignore, tolerance):
    """BF identical to the old algorithm; at a float32 edge (n) it is the BF with d2 <= n - 1 or
    with d2 <= n, and the old value lies between those two (F1 grows with matched pixels)."""
    new, old = boundary_f1(p, t, K, ignore, tolerance), ref_bf(p, t, K, ignore, tolerance)
    diag = math.hypot(*t.shape)
    n = float32_edge(float(tolerance) * diag)
    if n is None or math.isnan(old):
        assert same(new, old), (new, old)
        return n is not None
    lo = boundary_f1(p, t, K, ignore, (math.sqrt(n) - 1e-6) / diag)
    hi = boundary_f1(p, t, K, ignore, (math.sqrt(n) + 1e-6) / diag)
    assert new in (lo, hi) and lo <= old <= hi, (lo, new, old, hi)
    return True


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


# 60x80: the diagonal is exactly 100 px, so tolerance * 100 is the tolerance in pixels. 0.0849 and 0.086
# straddle 8.5 px (where the old code went from a float64 disk to a float32 distance transform),
# 0.123 is the largest one-kernel radius, 0.207 needs the row decomposition, 2.0345 is larger than the image.
TOLERANCES = [0.0, 0.01, 0.015, 0.05, 0.0849, 0.086, 0.123, 0.207, 2.0345]


def _smooth_pair(rng, K, H, W, noise=0.4):
    f, t = smooth_labels(K, H, W, rng)
    p = (f + noise * smooth_labels(K, H, W, rng)[0]).argmax(0).astype(np.uint8)
    return p, t


@pytest.mark.parametrize("tolerance", TOLERANCES)
def test_bf_identical_to_old_algorithm(tolerance):
    rng = np.random.default_rng(int(tolerance * 1e4))
    for i in range(3):
        p, t = _smooth_pair(rng, 6, 60, 80)
        t[rng.random(t.shape) < 0.01] = 255
        t[:, :7] = 255
        p[rng.random(t.shape) < 0.01] = 5  # one-pixel islands, some of a class absent from the GT
        assert not assert_as_old(p, t, 6, 255, tolerance)
        assert boundary_f1(p.astype(np.int64), t.astype(np.int32), 6, 255, tolerance) == boundary_f1(
            p, t, 6, 255, tolerance)
        assert not assert_as_old(p, np.where(t == 255, 0, t), 6, None, tolerance)


@pytest.mark.parametrize("n", [2, 50, 72, 73, 100, 200])
def test_bf_at_rounding_edges(n):
    """Tolerances within one ulp of sqrt(n) px: identical below 8.5 px (float64 disk of the old
    code); from 8.5 px the bound of :func:`assert_as_old` where the old float32 rule wobbles."""
    rng = np.random.default_rng(n)
    p, t = _smooth_pair(rng, 4, 60, 80, noise=1.0)
    r, r32 = math.sqrt(n), np.float32(math.sqrt(n))
    near = (r, np.nextafter(r, 0), np.nextafter(r, 99),
            np.nextafter(r32, np.float32(0)), np.nextafter(r32, np.float32(99)))
    edges = [assert_as_old(p, t, 4, None, float(tol_px) / 100) for tol_px in near]
    assert all(edges) if r >= 8.5 else not any(edges)


def test_distance_transform_within_one_float32_ulp():
    """The basis of that bound: OpenCV's 'precise' distance transform is within 1 float32 ulp of sqrt(d2)."""
    rng = np.random.default_rng(5)
    for shape in ((60, 80), (170, 130)):  # 170 x 130 > 2^14 px: OpenCV's own code, not IPP, when threaded
        src = rng.random(shape) < 0.01
        dist = cv2.distanceTransform((~src).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        d2 = np.round(ndi.distance_transform_edt(~src) ** 2)
        steps = dist.view(np.int32) - np.sqrt(d2.astype(np.float32)).view(np.int32)
        assert np.abs(steps).max() <= 1


EDGE_CASES = {
    "1xN": (np.array([[0, 0, 1, 1, 1, 2, 0]]), np.array([[0, 1, 1, 1, 2, 2, 2]])),
    "Nx1": (np.array([[0, 0, 1, 1, 1, 2, 0]]).T, np.array([[0, 1, 1, 1, 2, 2, 2]]).T),
    "1x1": (np.array([[1]]), np.array([[1]])),
    "one-pixel regions": (np.eye(7, dtype=np.uint8)[::-1], np.eye(7, dtype=np.uint8)),
    "border classes": (np.pad(np.ones((3, 5)), ((0, 4), (0, 2))), np.pad(np.ones((3, 5)), ((4, 0), (2, 0)))),
    "only ignore and one class": (np.zeros((6, 6)), np.pad(np.full((2, 2), 255), 2, constant_values=1)),
    "class only in pred": (np.full((5, 5), 2), np.zeros((5, 5))),
    "pred empty where GT has it": (np.zeros((5, 6)), np.pad(np.ones((1, 2)), 2)),
    "all ignore": (np.zeros((4, 4)), np.full((4, 4), 255)),
}


@pytest.mark.parametrize("name", EDGE_CASES)
@pytest.mark.parametrize("tolerance", [0.0, 0.3, 1.0, 5.0])
def test_bf_edge_cases_identical(name, tolerance):
    p, t = (a.astype(np.uint8) for a in EDGE_CASES[name])
    assert_as_old(p, t, 3, 255, tolerance)


@pytest.mark.parametrize("tolerance", [1e12, math.inf])
def test_bf_huge_tolerance(tolerance):
    """Every boundary pixel matches when a class has boundaries on both sides."""
    p, t = _smooth_pair(np.random.default_rng(9), 5, 30, 50)
    assert boundary_f1(p, t, 5, None, tolerance) == ref_bf(p, t, 5, None, tolerance) == 1.0


def test_bf_ignores_pred_values_at_ignored_pixels():
    """The Scorer hands BF the raw prediction, which may hold any value where the GT is ignored."""
    p, t = _smooth_pair(np.random.default_rng(10), 5, 40, 60)
    t[10:20, 10:30] = 255
    wild = p.astype(np.int64)
    wild[10:20, 10:30] = np.random.default_rng(0).integers(-3, 300, (10, 20))
    expected = ref_bf(p, t, 5, 255, 0.02)
    assert B.boundary_f1_unchecked(wild, t, 5, 255, 0.02) == boundary_f1(p, t, 5, 255, 0.02) == expected


def test_bf_many_classes_uint16():
    """300+ classes present: class ranks go to uint16 images; a 16-bit target with a 16-bit ignore value."""
    rng = np.random.default_rng(3)
    K = 400
    grid = rng.permutation(K)[:330].reshape(15, 22).astype(np.uint16)
    t = cv2.resize(grid, (88, 60), interpolation=cv2.INTER_NEAREST)
    p = np.roll(t, (1, 2), axis=(0, 1))
    p[rng.random(p.shape) < 0.02] = 7
    t[:5] = 65535
    for tolerance in (0.0, 0.02, 0.1):
        assert not assert_as_old(p, t, K, 65535, tolerance)


def _brute_matched(src, src_cls, dst, dst_cls, W, max_sq):
    sy, sx = np.divmod(src, W)
    dy, dx = np.divmod(dst, W)
    d2 = (dy[:, None] - sy[None]) ** 2 + (dx[:, None] - sx[None]) ** 2
    return ((d2 <= max_sq) & (dst_cls[:, None] == src_cls[None])).any(1)


@pytest.mark.parametrize("n_classes", [3, 300, 70000])  # uint8, uint16 and float64 rank images
@pytest.mark.parametrize("max_sq", [0, 2, 72, 200, 5000])  # 5000: a disk larger than the image
def test_matched_against_brute_force(n_classes, max_sq):
    rng = np.random.default_rng(max_sq)
    H, W = 30, 41
    ranks = np.array([0, 1, n_classes // 2, n_classes - 1])
    src = rng.choice(H * W, 80, replace=False)
    dst = rng.choice(H * W, 300, replace=False)
    src_cls, dst_cls = rng.choice(ranks, src.size), rng.choice(ranks, dst.size)
    expected = _brute_matched(src, src_cls, dst, dst_cls, W, max_sq)
    assert 0 < expected.sum() < dst.size or max_sq not in (2, 72)
    np.testing.assert_array_equal(B._matched(src, src_cls, dst, dst_cls, n_classes, (H, W), max_sq), expected)
    np.testing.assert_array_equal(B._row_search(src, src_cls, dst, dst_cls, (H, W), max_sq), expected)


def _disk(max_sq):
    r = math.isqrt(max_sq)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((yy * yy + xx * xx) <= max_sq).astype(np.uint8)


@pytest.mark.parametrize("shape", [(40, 57), (6, 70), (1, 30), (30, 1), (1, 1)])
@pytest.mark.parametrize("max_sq", [0, 1, 2, 8, 73, 168, 170, 400, 2000])  # rectangles up to radius 12, then rows
def test_disk_max_equals_dilation_by_the_disk(shape, max_sq):
    rng = np.random.default_rng(max_sq)
    img = np.where(rng.random(shape) < 0.05, rng.integers(1, 250, shape), 0).astype(np.uint8)
    expected = cv2.dilate(img, _disk(max_sq))
    for dtype in (np.uint8, np.uint16, np.float64):
        np.testing.assert_array_equal(B._disk_max(img.astype(dtype), max_sq), expected)


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
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0]))
def test_property_bf_identical_to_old_algorithm(seed, K, tolerance):
    rng = np.random.default_rng(seed)
    H, W = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    t = rng.integers(0, K, (H // 4 + 1, W // 4 + 1)).astype(np.uint8)
    t = cv2.resize(t, (W, H), interpolation=cv2.INTER_NEAREST)
    p = np.where(rng.random((H, W)) < 0.05, rng.integers(0, K, (H, W)), t).astype(np.uint8)
    t[rng.random((H, W)) < 0.05] = 255
    assert_as_old(p, t, K, 255, tolerance)
    v = boundary_f1(p, t, K, 255, tolerance)
    assert math.isnan(v) or 0.0 <= v <= 1.0
