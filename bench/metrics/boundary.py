"""Boundary F1 (BF) of one label map: the score of Csurka et al. (BMVC 2013) that SegNet reports."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from bench.metrics.labels import check_args, check_labels, check_shapes, to_numpy

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
#: tolerances below this use a disk dilation, larger ones a distance transform (both exact)
_DILATE_MAX_TOL = 8.5


def _inner_boundary(mask8: np.ndarray, valid8: np.ndarray | None = None) -> np.ndarray:
    """uint8 0/1 mask -> uint8 0/1 one-pixel inner boundary, ``mask & ~erode(mask)``.

    The erosion uses the 3x3 cross (4-neighbours). cv2.erode pads with the maximum, so the
    image frame is not a boundary. With ``valid8`` (0 on ignore pixels) ignore pixels are
    wildcards: they count as inside the mask for the erosion, so a pixel whose only
    foreign neighbours are ignore pixels is no boundary, and no boundary pixel lies on
    an ignore pixel.
    """
    if valid8 is None:
        return mask8 - cv2.erode(mask8, _CROSS)
    eroded = cv2.erode(mask8 | (valid8 ^ 1), _CROSS)
    return mask8 & valid8 & (eroded ^ 1)


@lru_cache(maxsize=32)
def _disk(tol: float) -> np.ndarray:
    """Structuring element of all integer offsets (dy, dx) with dy^2 + dx^2 <= tol^2."""
    r = int(math.floor(tol))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((yy * yy + xx * xx) <= tol * tol).astype(np.uint8)


def _matched(src: np.ndarray, dst: np.ndarray, tol: float) -> int:
    """How many pixels of the 0/1 map ``dst`` lie within Euclidean distance ``tol`` of a
    pixel of the 0/1 map ``src``.

    For small tolerances a dilation by the exact Euclidean disk (0.2 ms on 360x480)
    replaces the exact distance transform (4 ms); the two give identical answers, which
    the tests check.
    """
    if tol < _DILATE_MAX_TOL:
        return int(np.count_nonzero(cv2.dilate(src, _disk(tol)) & dst))
    dist = cv2.distanceTransform(src ^ 1, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int(np.count_nonzero(dist[dst.view(bool)] <= tol))


def _class_f1(gm: np.ndarray, pm: np.ndarray, valid: np.ndarray | None, tol: float) -> float:
    """F1 of the boundaries of one class: GT mask ``gm``, predicted mask ``pm`` (HxW bool)."""
    H, W = gm.shape
    both = gm | pm
    rows = np.flatnonzero(both.any(axis=1))
    cols = np.flatnonzero(both.any(axis=0))
    # crop to the two masks' bounding box plus one pixel (so that the erosion sees the
    # outside); every boundary pixel of both lies inside it, so matching is exact there
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, H)
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, W)
    g8 = np.ascontiguousarray(gm[r0:r1, c0:c1]).view(np.uint8)
    p8 = np.ascontiguousarray(pm[r0:r1, c0:c1]).view(np.uint8)
    if valid is None:
        gb, pb = _inner_boundary(g8), _inner_boundary(p8)
    else:
        v8 = np.ascontiguousarray(valid[r0:r1, c0:c1]).view(np.uint8)
        gb, pb = _inner_boundary(g8, v8), _inner_boundary(p8, v8)
    n_g = int(np.count_nonzero(gb))
    n_p = int(np.count_nonzero(pb))
    if n_g == 0 or n_p == 0:
        return 1.0 if n_g == n_p else 0.0
    precision = _matched(gb, pb, tol) / n_p
    recall = _matched(pb, gb, tol) / n_g
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def boundary_f1_unchecked(pred: np.ndarray, target: np.ndarray, num_classes: int,
                          ignore_index: int | None, tolerance: float) -> float:
    """:func:`boundary_f1` of numpy label maps whose shapes and label ranges are already checked."""
    H, W = target.shape
    if target.size == 0:
        return math.nan
    tol = tolerance * math.hypot(H, W)
    valid = (target != ignore_index) if ignore_index is not None else None
    if target.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(target.reshape(-1), minlength=256))
    else:
        present = np.unique(target)
    classes = [int(c) for c in present if 0 <= c < num_classes and c != ignore_index]
    if not classes:
        return math.nan
    return float(np.mean([_class_f1(target == c, pred == c, valid, tol) for c in classes]))


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
      default); a boundary pixel matches when the Euclidean distance (exact distance
      transform) to the nearest boundary pixel of the other set is <= tol.
    - precision = matched fraction of predicted boundary pixels, recall = matched fraction
      of GT boundary pixels, F1 = 2PR / (P + R) (0 when P + R = 0).
    - empty cases: both boundary sets empty (e.g. the class fills the whole image in both)
      -> 1.0; exactly one empty -> 0.0.

    Returns the mean F1 over those classes, or NaN when the GT has no valid class.
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
