"""Boundary F1 (BF) of one label map: the score of Csurka et al. (BMVC 2013) that SegNet reports."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from bench.metrics.labels import check_args, check_labels, check_shapes, to_numpy

#: disks up to this radius are dilated as a union of rectangles, larger ones by rows (linear in the radius)
_RECTS_MAX_RADIUS = 12


def _present(target: np.ndarray) -> np.ndarray:
    """Sorted label values of ``target``: a histogram for 8- and 16-bit maps, np.unique otherwise."""
    if target.dtype in (np.uint8, np.uint16):
        bins = 256 if target.dtype == np.uint8 else 65536
        hist = cv2.calcHist([np.ascontiguousarray(target)], [0], None, [bins], [0, bins])
        return np.flatnonzero(hist.reshape(-1))
    return np.unique(target)


def _valid_pairs(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical neighbour pairs of two valid pixels."""
    return valid[:, 1:] & valid[:, :-1], valid[1:] & valid[:-1]


def _boundary_pixels(labels: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Flat indices (ascending) of the boundary pixels of every class at once.

    A pixel is a boundary pixel of its class when one of its 4 neighbours has another label,
    which is the inner boundary ``mask & ~erode(mask)`` of each class mask with the 3x3 cross,
    the frame counting as inside. With ``pairs`` (:func:`_valid_pairs`) both pixels must be
    valid: ignore pixels are no boundary pixels, and wildcards for their neighbours.
    """
    edge = np.zeros(labels.shape, bool)
    horiz = labels[:, 1:] != labels[:, :-1]
    vert = labels[1:] != labels[:-1]
    if pairs is not None:
        horiz &= pairs[0]
        vert &= pairs[1]
    edge[:, 1:] = horiz
    edge[:, :-1] |= horiz
    edge[1:] |= vert
    edge[:-1] |= vert
    return np.flatnonzero(edge)


@lru_cache(maxsize=32)
def _disk_rectangles(max_sq: int) -> tuple[np.ndarray, ...]:
    """The disk dy^2 + dx^2 <= max_sq as a union of centred rectangles: for each half-width w,
    the tallest rows that are at least that wide."""
    r = math.isqrt(max_sq)
    height = {math.isqrt(max_sq - dy * dy): dy for dy in range(r + 1)}  # the last dy per width wins
    return tuple(cv2.getStructuringElement(cv2.MORPH_RECT, (2 * w + 1, 2 * h + 1)) for w, h in height.items())


def _disk_max(img: np.ndarray, max_sq: int) -> np.ndarray:
    """Max of ``img`` over the disk dy^2 + dx^2 <= max_sq around each pixel (outside the image: none).

    A small disk is the union of its rectangles, each one OpenCV dilation (separable, so cheaper
    than the disk as one kernel). A large one goes by rows: a horizontal max over half-width
    w(dy) = isqrt(max_sq - dy^2), widened one pixel at a time as |dy| falls, shifted up and down
    by dy (about 4 R array maxima in all).
    """
    R = math.isqrt(max_sq)
    if R <= _RECTS_MAX_RADIUS:
        rects = _disk_rectangles(max_sq)
        out = cv2.dilate(img, rects[0])
        for rect in rects[1:]:
            np.maximum(out, cv2.dilate(img, rect), out=out)
        return out
    H, W = img.shape
    rows = img.copy()  # max over the horizontal segment of half-width w
    out = img.copy()
    w = 0
    for dy in range(min(R, H - 1), -1, -1):
        for w in range(w + 1, min(math.isqrt(max_sq - dy * dy), W - 1) + 1):
            np.maximum(rows[:, w:], img[:, :-w], out=rows[:, w:])
            np.maximum(rows[:, :-w], img[:, w:], out=rows[:, :-w])
        if dy:
            np.maximum(out[dy:], rows[:-dy], out=out[dy:])
            np.maximum(out[:-dy], rows[dy:], out=out[:-dy])
        else:
            np.maximum(out, rows, out=out)
    return out


def _row_search(src: np.ndarray, src_cls: np.ndarray, dst: np.ndarray, dst_cls: np.ndarray,
                shape: tuple[int, int], max_sq: int) -> np.ndarray:
    """Exact test for each dst point: is a src point of its class within squared distance max_sq?

    Points are sorted keys (class, row, column) with R + 1 empty columns after each row and R
    empty rows around each class (R = isqrt(max_sq)), so that one key interval is one row
    segment of one class; a dst point matches when, for some row offset dy, the first src key at
    or after (class, row + dy, column - w(dy)) lies at or before (class, row + dy, column + w(dy)).
    Rows are tried nearest first and matched points leave. Hand-written: scipy's cKDTree on
    class-shifted points answers the same but took 70-140 ms on a 512x1024 map with 19 classes.
    """
    H, W = shape
    R = math.isqrt(max_sq)
    Wp, Hp = W + R + 1, H + 2 * R

    def keys(idx: np.ndarray, cls: np.ndarray) -> np.ndarray:
        y, x = np.divmod(idx, W)
        return (cls.astype(np.int64) * Hp + (y + R)) * Wp + x

    src_keys = np.append(np.sort(keys(src, src_cls)), np.iinfo(np.int64).max)  # a last key after all
    dst_keys = keys(dst, dst_cls)
    order = np.argsort(dst_keys)
    queries = dst_keys[order]  # sorted queries make searchsorted faster
    hit = np.zeros(dst.size, bool)
    todo = np.arange(dst.size)
    for dy in sorted(range(-min(R, H - 1), min(R, H - 1) + 1), key=abs):
        if not todo.size:
            break
        w = math.isqrt(max_sq - dy * dy)
        first = queries[todo] + (dy * Wp - w)
        found = src_keys[np.searchsorted(src_keys, first)] <= first + 2 * w
        hit[todo[found]] = True
        todo = todo[~found]
    out = np.empty(dst.size, bool)
    out[order] = hit
    return out


def _matched(src: np.ndarray, src_cls: np.ndarray, dst: np.ndarray, dst_cls: np.ndarray, n_classes: int,
             shape: tuple[int, int], max_sq: int) -> np.ndarray:
    """For each dst point (flat index, class rank < n_classes): is a src point of its class within
    squared distance max_sq?

    All classes at once: the max and the min class rank of the src points over each disk (two
    dilations: of rank + 1 and of n_classes - rank, 0 off the src points) settle every dst point
    whose class is the max or the min (matched) or lies outside [min, max] (unmatched); the few
    others (three or more classes nearby) go to :func:`_row_search`.
    """
    H, W = shape
    if not dst.size:
        return np.zeros(0, bool)
    dtype = np.uint8 if n_classes <= 255 else np.uint16 if n_classes <= 65535 else np.float64
    up = np.zeros(H * W, dtype)
    up[src] = src_cls + 1
    down = np.zeros(H * W, dtype)
    down[src] = n_classes - src_cls
    up = _disk_max(up.reshape(H, W), max_sq).reshape(-1)[dst]  # 1 + max rank, 0 if no src point
    down = _disk_max(down.reshape(H, W), max_sq).reshape(-1)[dst]  # n_classes - min rank
    rank_up, rank_down = dst_cls + 1, n_classes - dst_cls
    hit = (up == rank_up) | (down == rank_down)
    unsure = np.flatnonzero(~hit & (up > rank_up) & (down > rank_down))
    if unsure.size:
        hit[unsure] = _row_search(src, src_cls, dst[unsure], dst_cls[unsure], shape, max_sq)
    return hit


def _class_f1(n_g: np.ndarray, n_p: np.ndarray, m_g: np.ndarray, m_p: np.ndarray) -> np.ndarray:
    """Per-class F1 from boundary pixel counts (GT, pred) and matched counts, as the per-class
    Python arithmetic of earlier versions (same float64 operations in the same order)."""
    f1 = ((n_g == 0) & (n_p == 0)).astype(np.float64)
    s = np.flatnonzero((n_g > 0) & (n_p > 0))
    precision = m_p[s] / n_p[s]
    recall = m_g[s] / n_g[s]
    den = precision + recall
    f1[s] = np.divide(2 * precision * recall, den, out=np.zeros_like(den), where=den > 0)
    return f1


def boundary_f1_unchecked(pred: np.ndarray, target: np.ndarray, num_classes: int,
                          ignore_index: int | None, tolerance: float) -> float:
    """:func:`boundary_f1` of numpy label maps whose shapes and label ranges are already checked."""
    H, W = target.shape
    if target.size == 0:
        return math.nan
    present = _present(target)
    classes = present[(present >= 0) & (present < num_classes)]
    if ignore_index is not None:
        classes = classes[classes != ignore_index]
    n = classes.size
    if not n:
        return math.nan
    pairs = _valid_pairs(target != ignore_index) if ignore_index is not None else None
    g = _boundary_pixels(target, pairs)
    g_cls = np.searchsorted(classes, target.reshape(-1)[g])
    p = _boundary_pixels(pred, pairs)
    p_val = pred.reshape(-1)[p]
    p_cls = np.searchsorted(classes, p_val)
    scored = classes[np.minimum(p_cls, n - 1)] == p_val  # predicted classes absent from the GT are not scored
    p, p_cls = p[scored], p_cls[scored]
    n_g = np.bincount(g_cls, minlength=n)
    n_p = np.bincount(p_cls, minlength=n)
    both = (n_g > 0) & (n_p > 0)
    g, g_cls = g[both[g_cls]], g_cls[both[g_cls]]
    p, p_cls = p[both[p_cls]], p_cls[both[p_cls]]
    tol = tolerance * math.hypot(H, W)
    far = (H - 1) ** 2 + (W - 1) ** 2  # no two pixels are farther apart
    max_sq = far if tol * tol >= far else math.floor(tol * tol)  # integer d2 <= tol * tol iff d2 <= max_sq
    m_p = np.bincount(p_cls[_matched(g, g_cls, p, p_cls, n, (H, W), max_sq)], minlength=n)
    m_g = np.bincount(g_cls[_matched(p, p_cls, g, g_cls, n, (H, W), max_sq)], minlength=n)
    return float(np.mean(_class_f1(n_g, n_p, m_g, m_p)))


def boundary_f1(pred: Any, target: Any, num_classes: int, ignore_index: int | None = None,
                tolerance: float = 0.0075) -> float:
    """Boundary F1 (BF) score of one HxW image (Csurka et al. 2013, as used by SegNet).

    For each class present in the image's ground truth (ignore pixels aside):

    - boundaries: the one-pixel inner boundary ``mask & ~erode(mask)`` of the class mask
      in the prediction and in the ground truth, eroding with the 3x3 cross (a pixel is a
      boundary pixel when one of its 4 neighbours is not of the class). The image frame is
      not a boundary (outside the image counts as inside the mask).
    - ignore pixels (GT == ``ignore_index``) are excluded from both boundary sets, and
      they are wildcards for the erosion (counted as inside every class mask): an edge
      between a class and an ignored region is not a boundary in either map, since the
      true edge could be anywhere inside the ignored region. So a predicted edge that
      runs through or along an ignored region neither helps nor hurts.
    - matching: ``tol = tolerance * sqrt(H^2 + W^2)`` pixels (0.75 % of the diagonal by
      default); a boundary pixel matches when the squared Euclidean distance ``d2`` to the
      nearest boundary pixel of the same class in the other set is ``<= tol * tol``
      (float64; d2 is an exact integer). Versions before the all-classes-at-once code
      compared OpenCV's float32 distance transform with tol from 8.5 px on, whose values
      are within one float32 ulp of the true distance: they agree except for pixel pairs
      whose distance lies within that ulp (6e-8 relative) of tol.
    - precision = matched fraction of predicted boundary pixels, recall = matched fraction
      of GT boundary pixels, F1 = 2PR / (P + R) (0 when P + R = 0).
    - empty cases: both boundary sets empty (e.g. the class fills the whole image in both)
      -> 1.0; exactly one empty -> 0.0.

    Returns the mean F1 over those classes, or NaN when the GT has no valid class. All
    classes are matched at once: the work is a few passes over the image plus work on the
    boundary pixels, whatever the number of classes.
    """
    num_classes, ignore_index = check_args(num_classes, ignore_index)
    p = to_numpy(pred, "pred")
    t = to_numpy(target, "target")
    check_shapes(p.shape, t.shape)
    if t.ndim != 2:
        raise ValueError(f"boundary_f1 scores one HxW image, got shape {t.shape}")
    check_tolerance(tolerance)
    check_labels(p, t, num_classes, ignore_index)
    return boundary_f1_unchecked(p, t, num_classes, ignore_index, float(tolerance))


def check_tolerance(tolerance: float) -> None:
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, not {tolerance!r}")
