"""BSDS500 boundary precision/recall of an edge-strength map: per-image counts, ODS, OIS, AP.

Follows the protocol of the BSDS benchmark (Martin, Fowlkes, Malik 2004; Arbelaez et al.,
TPAMI 2011), with the documented differences listed below:

* For each threshold ``t`` the edge-strength map gives ``pred = thin(strength >= t)``
  (:func:`skimage.morphology.thin`, to one-pixel-wide curves, like MATLAB's
  ``bwmorph(..., 'thin', inf)`` in the reference).
* ``pred`` is matched one-to-one to every annotator's boundary map separately, with a
  tolerance of ``max_dist`` x the image diagonal (0.0075 by default, as the reference);
  see :mod:`bench.metrics.boundary_matching` for the matchings and how they relate to the
  reference's assignment.
* A predicted pixel is correct when it is matched to ANY annotator (union of the matched
  predicted pixels); recall counts the matched GT pixels summed over the annotators over
  all GT pixels summed over the annotators. Per image and threshold this gives the
  reference's four counts ``cntR, sumR, cntP, sumP``.
* ODS: the best F over thresholds of the counts summed over the dataset. OIS: per image
  the threshold with the best F of that image, counts summed over images. AP: area under
  the PR curve sampled at recall 0, 0.01, ..., 1 by linear interpolation of precision over
  recall (0 outside the observed recall range), as ``collect_eval_bdry.m`` does.

Differences from the reference (see also ``docs/BOUNDARIES.md``):

* Matching: see :mod:`bench.metrics.boundary_matching`.
* ODS/OIS use the F at the sampled thresholds only; the reference also interpolates F
  linearly between adjacent thresholds (100 steps), which can raise ODS/OIS slightly.
* Thresholds: ``thresholds=n`` uses ``linspace(1/(n+1), 1-1/(n+1), n)`` like the
  reference's ``nthresh`` (99 there).
* Where nothing is predicted P = 0 (the reference divides by ``max(eps, sumP)`` too).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree
from skimage.morphology import thin

from bench.metrics.boundary_matching import MAX_DIST, match_with_tree, points


def threshold_values(thresholds: int | Sequence[float]) -> np.ndarray:
    """``n`` -> the reference's ``linspace(1/(n+1), 1-1/(n+1), n)``; a sequence is used as given."""
    if np.isscalar(thresholds):
        n = int(thresholds)
        if n < 1:
            raise ValueError("need at least one threshold")
        return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)
    t = np.asarray(thresholds, np.float64).ravel()
    if t.size == 0:
        raise ValueError("need at least one threshold")
    return t


def image_counts(
    strength: np.ndarray,
    gts: Sequence[np.ndarray],
    thresholds: int | Sequence[float] = 99,
    max_dist: float = MAX_DIST,
    matching: str = "maximum",
) -> np.ndarray:
    """Counts of one image: array (n_thresholds, 4) of ``cntR, sumR, cntP, sumP``."""
    strength = np.asarray(strength, np.float64)
    ts = threshold_values(thresholds)
    gts = [np.asarray(g, bool) for g in gts]
    for g in gts:
        if g.shape != strength.shape:
            raise ValueError(f"ground truth {g.shape} does not match strength {strength.shape}")
    radius = max_dist * float(np.hypot(*strength.shape))
    trees = []
    for g in gts:
        pts = points(g)
        trees.append((g, pts, cKDTree(pts) if len(pts) else None))
    sum_r = float(sum(int(g.sum()) for g in gts))
    out = np.zeros((len(ts), 4), np.float64)
    prev_pred, prev_row = None, None
    for k, t in enumerate(ts):
        pred = strength >= t
        if pred.any():
            pred = thin(pred)
        if prev_pred is not None and np.array_equal(pred, prev_pred):
            out[k] = prev_row  # same map (e.g. a binary detector): same counts
            continue
        acc_p = np.zeros(pred.shape, bool)
        cnt_r = 0
        for g, pts, tree in trees:
            mp, mg = match_with_tree(pred, g, pts, tree, radius, matching)
            acc_p |= mp
            cnt_r += int(mg.sum())
        out[k] = (cnt_r, sum_r, int(acc_p.sum()), int(pred.sum()))
        prev_pred, prev_row = pred, out[k].copy()
    return out


def _prf(cnt_r, sum_r, cnt_p, sum_p):
    r = np.asarray(cnt_r, np.float64) / np.maximum(np.asarray(sum_r, np.float64), np.finfo(float).eps)
    p = np.asarray(cnt_p, np.float64) / np.maximum(np.asarray(sum_p, np.float64), np.finfo(float).eps)
    f = 2 * p * r / np.maximum(p + r, np.finfo(float).eps)
    return p, r, f


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under PR: precision linearly interpolated over recall at 0, 0.01, ..., 1 (0 outside)."""
    r_u, idx = np.unique(np.asarray(recall, np.float64), return_index=True)
    if len(r_u) < 2:
        return 0.0
    p_u = np.asarray(precision, np.float64)[idx]
    grid = np.linspace(0.0, 1.0, 101)
    p_i = np.interp(grid, r_u, p_u, left=0.0, right=0.0)
    return float(p_i.sum() * 0.01)


def summarise(counts: np.ndarray, thresholds: np.ndarray) -> dict:
    """ODS/OIS/AP and the PR curve from per-image counts (n_images, n_thresholds, 4)."""
    counts = np.asarray(counts, np.float64)
    tot = counts.sum(axis=0)
    p, r, f = _prf(*tot.T)
    k = int(np.argmax(f))
    # OIS: per image best threshold
    _, _, f_img = _prf(*np.moveaxis(counts, 2, 0))  # (n_images, n_thresholds)
    best = np.argmax(f_img, axis=1)
    sel = counts[np.arange(len(counts)), best].sum(axis=0)
    p_o, r_o, f_o = _prf(*sel)
    return {
        "ods": float(f[k]),
        "ods_p": float(p[k]),
        "ods_r": float(r[k]),
        "ods_threshold": float(thresholds[k]),
        "ois": float(f_o),
        "ois_p": float(p_o),
        "ois_r": float(r_o),
        "ap": average_precision(r, p),
        "thresholds": np.asarray(thresholds),
        "precision": p,
        "recall": r,
        "f": f,
        "counts": counts,
        "n_images": int(len(counts)),
    }
