"""One-to-one matching of predicted to ground-truth boundary pixels within a distance (BSDS500).

The reference ``correspondPixels`` of the BSDS benchmark solves a min-cost bipartite
assignment (Goldberg's CSA) with outlier nodes: many matched pairs within the tolerance,
small summed distance. Here candidate pairs (all pred/GT pixel pairs within the radius)
come from a KD-tree; then ``matching=`` picks the one-to-one matching:

``"maximum"`` (default): a maximum-cardinality matching - greedy by distance first, then
    grown by shortest augmenting paths (numpy Hopcroft-Karp-style phases) until none is
    left. The reference's outlier cost is large, so its assignment also matches as many
    pairs as possible: the counts cntP/cntR equal the reference's whenever its assignment
    is maximum; which pixels pair up can differ (distance is used only to seed the matching).
``"greedy"``: pairs by increasing distance only (exact sequential greedy, vectorised);
    about 5.6% fewer matches than maximum on BSDS val maps, about 0.03 lower ODS.
``"mincost"``: the reference's formulation, a min-weight full assignment
    (``min_weight_full_bipartite_matching``) with outlier cost ``OUTLIER_FACTOR`` x radius;
    slow on dense maps (low thresholds) - use for checks on few images.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

#: matching tolerance, as a fraction of the image diagonal (the reference's default)
MAX_DIST = 0.0075
#: outlier (unmatched) cost of matching="mincost", in units of the matching radius
OUTLIER_FACTOR = 2.0
MATCHINGS = ("maximum", "greedy", "mincost")


def points(mask: np.ndarray) -> np.ndarray:
    """(n, 2) float coordinates of the True pixels of ``mask``."""
    return np.argwhere(mask).astype(np.float64)


def _candidate_pairs(p_pts: np.ndarray, g_tree: cKDTree | None, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pred index, gt index, distance) with distance <= radius."""
    empty = np.zeros(0, np.int64)
    if g_tree is None or len(p_pts) == 0:
        return empty, empty, np.zeros(0)
    p_tree = cKDTree(p_pts)
    # 'ndarray' output keeps zero-distance pairs (sparse matrix outputs would drop them)
    d = p_tree.sparse_distance_matrix(g_tree, radius, output_type="ndarray")
    return d["i"].astype(np.int64), d["j"].astype(np.int64), d["v"].astype(np.float64)


def _match_mincost(n_p: int, n_g: int, i: np.ndarray, j: np.ndarray, dist: np.ndarray,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference's min-cost assignment with outlier nodes -> (pred matched, gt matched).

    Square assignment with outlier nodes: pred i may go to its own dummy column and gt j to
    its own dummy row at cost ``outlier``; dummy row j - dummy column i exists for every
    candidate (i, j) (cost ~0) so that a full matching always exists. The min-cost full
    matching then matches as many pairs as the outlier cost makes worthwhile and, among
    those, minimises the summed distance (the reference's objective).
    """
    outlier = OUTLIER_FACTOR * max(radius, 1.0)
    eps = 1e-6
    rows = np.concatenate([i, np.arange(n_p), n_p + j, n_p + np.arange(n_g)])
    cols = np.concatenate([j, n_g + np.arange(n_p), n_g + i, np.arange(n_g)])
    w = np.concatenate([dist + eps, np.full(n_p, outlier), np.full(len(i), eps), np.full(n_g, outlier)])
    graph = csr_matrix((w, (rows, cols)), shape=(n_p + n_g, n_p + n_g))
    r_ind, c_ind = min_weight_full_bipartite_matching(graph)
    real = (r_ind < n_p) & (c_ind < n_g)
    mp = np.zeros(n_p, bool)
    mg = np.zeros(n_g, bool)
    mp[r_ind[real]] = True
    mg[c_ind[real]] = True
    return mp, mg


def _greedy(n_p: int, n_g: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Sequential greedy matching of edges sorted by distance -> ``mate_g`` (gt -> pred, -1).

    Done in vectorised rounds: an edge that is the first remaining edge of both its pred and
    its gt pixel ("locally dominant") is picked by sequential greedy too, so picking all of
    them at once and dropping used nodes gives exactly the sequential greedy matching.
    """
    mp = np.zeros(n_p, bool)
    mg = np.zeros(n_g, bool)
    mate_g = np.full(n_g, -1, np.int64)
    alive = np.ones(len(i), bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        _, first_p = np.unique(i[idx], return_index=True)
        _, first_g = np.unique(j[idx], return_index=True)
        win = idx[np.intersect1d(first_p, first_g, assume_unique=True)]
        mp[i[win]] = True
        mg[j[win]] = True
        mate_g[j[win]] = i[win]
        alive &= ~(mp[i] | mg[j])
    return mate_g


def _match_indices(n_p: int, n_g: int, i: np.ndarray, j: np.ndarray, dist: np.ndarray, matching: str,
                   radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Return bool arrays (pred matched, gt matched) for a one-to-one matching of the candidate pairs."""
    if matching not in MATCHINGS:
        raise ValueError(f"unknown matching {matching!r}; known: {', '.join(MATCHINGS)}")
    if len(i) == 0:
        return np.zeros(n_p, bool), np.zeros(n_g, bool)
    if matching == "mincost":
        return _match_mincost(n_p, n_g, i, j, dist, radius)
    order = np.lexsort((j, i, dist))  # ties broken by (dist, i, j)
    i, j = i[order], j[order]
    mate_g = _greedy(n_p, n_g, i, j)
    if matching == "maximum":
        _augment_to_maximum(i, j, n_p, n_g, mate_g)
    mg = mate_g >= 0
    mp = np.zeros(n_p, bool)
    mp[mate_g[mg]] = True
    return mp, mg


def _shortest_augmenting_ends(i, j, mate_p, mate_g, n_p: int, n_g: int) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first search from all free preds at once -> (free gts reached, parent of every gt).

    Layers go pred -> unvisited gt by a candidate edge, then a matched gt -> its pred; every
    reached gt records the pred that reached it first; the search stops at the first layer
    that reaches free gts (none reached: the matching is maximum).
    """
    parent = np.full(n_g, -1, np.int64)  # gt -> the pred that reached it
    layer = mate_p < 0  # free preds
    seen_p = layer.copy()
    while layer.any():
        e = np.flatnonzero(layer[i] & (parent[j] < 0))
        if len(e) == 0:
            break
        gts, first = np.unique(j[e], return_index=True)
        parent[gts] = i[e[first]]
        free = mate_g[gts] < 0
        if free.any():
            return gts[free], parent
        nxt = mate_g[gts]
        nxt = nxt[~seen_p[nxt]]
        layer = np.zeros(n_p, bool)
        layer[nxt] = True
        seen_p[nxt] = True
    return np.zeros(0, np.int64), parent


def _augment_to_maximum(i: np.ndarray, j: np.ndarray, n_p: int, n_g: int, mate_g: np.ndarray) -> None:
    """Grow a matching (``mate_g``: gt -> pred or -1, changed in place) to maximum cardinality.

    Hopcroft-Karp-style phases with numpy: a search for shortest augmenting paths from all
    free preds at once (:func:`_shortest_augmenting_ends`), then tracing back from the free
    gts reached along the recorded parents; where two paths meet at a pred only one is kept,
    so the kept paths are vertex-disjoint, and each is flipped. When a search reaches no
    free gt, no augmenting path exists and the matching is maximum (Berge). Written by hand
    because scipy's ``maximum_bipartite_matching`` takes minutes on some real boundary maps.
    """
    mate_p = np.full(n_p, -1, np.int64)
    matched = np.flatnonzero(mate_g >= 0)
    mate_p[mate_g[matched]] = matched
    while True:
        ends, parent = _shortest_augmenting_ends(i, j, mate_p, mate_g, n_p, n_g)
        if len(ends) == 0:
            return
        # trace the paths back in lockstep (all have the same length), dropping merged ones
        path_g = ends
        alive = np.arange(len(ends))
        steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (path id, pred, gt)
        finished = []
        while len(alive):
            preds = parent[path_g]
            _, first = np.unique(preds, return_index=True)
            alive, preds, path_g = alive[first], preds[first], path_g[first]
            steps.append((alive, preds, path_g))
            done = mate_p[preds] < 0
            finished.append(alive[done])
            alive, path_g = alive[~done], mate_p[preds[~done]]
        keep = np.zeros(len(ends), bool)
        keep[np.concatenate(finished)] = True
        for ids, preds, gts in steps:
            ok = keep[ids]
            mate_p[preds[ok]] = gts[ok]
            mate_g[gts[ok]] = preds[ok]


def match_with_tree(pred_bool: np.ndarray, gt_bool: np.ndarray, g_pts: np.ndarray, g_tree: cKDTree | None,
                    radius: float, matching: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`match_boundaries` with the GT points and their KD-tree made once (reused over thresholds)."""
    p_pts = points(pred_bool)
    i, j, d = _candidate_pairs(p_pts, g_tree, radius)
    mp, mg = _match_indices(len(p_pts), len(g_pts), i, j, d, matching, radius)
    out_p = np.zeros(pred_bool.shape, bool)
    out_g = np.zeros(gt_bool.shape, bool)
    if len(p_pts):
        pi = p_pts[mp].astype(np.int64)
        out_p[pi[:, 0], pi[:, 1]] = True
    if len(g_pts):
        gi = g_pts[mg].astype(np.int64)
        out_g[gi[:, 0], gi[:, 1]] = True
    return out_p, out_g


def match_boundaries(pred_bool: np.ndarray, gt_bool: np.ndarray, max_dist: float = MAX_DIST,
                     matching: str = "maximum") -> tuple[np.ndarray, np.ndarray]:
    """One-to-one match of boundary pixels within ``max_dist`` x image diagonal.

    Returns ``(matched_pred, matched_gt)``, HxW bool maps of the pixels of ``pred_bool``
    and ``gt_bool`` that have a partner. See the module docstring for how ``matching``
    ("maximum", "greedy" or "mincost") relates to the reference's CSA assignment.
    """
    pred_bool = np.asarray(pred_bool, bool)
    gt_bool = np.asarray(gt_bool, bool)
    if pred_bool.shape != gt_bool.shape or pred_bool.ndim != 2:
        raise ValueError(f"pred {pred_bool.shape} and gt {gt_bool.shape} must be equal 2-D shapes")
    radius = max_dist * float(np.hypot(*pred_bool.shape))
    g_pts = points(gt_bool)
    g_tree = cKDTree(g_pts) if len(g_pts) else None
    return match_with_tree(pred_bool, gt_bool, g_pts, g_tree, radius, matching)
