"""``region-growing``: seeded region growing on colour similarity, then region labelling.

In the literature's words: seeded region growing (Adams & Bischof 1994) from grid seeds,
followed by region merging of adjacent similar regions (split-and-merge style, Horowitz &
Pavlidis 1976) and region labelling with the shared region classifier. It differs from
Adams & Bischof on purpose: all frontier pixels join at once per iteration (a synchronous,
vectorised growth instead of their sequentially sorted list, which is one pixel at a time)
and a pixel joins only under a colour threshold, leftovers becoming regions of their own.
Deliberately left out: seed selection by the user or by histogram peaks, texture-aware
homogeneity criteria beyond the merge step, and any boundary refinement.

The partition is computed on a working copy of the image whose longer side is at most
``work_size`` pixels (Lab, lightly smoothed), then scaled back with nearest neighbour:

1. **Seeds**: one per cell of a grid with ``seed_cells`` cells along the longer side,
   placed at the cell's gradient minimum (the flattest point, away from edges).
2. **Growth**, vectorised over the whole frontier: at each iteration every unassigned
   pixel that touches a region (4-neighbourhood) looks at the regions of its neighbours
   and joins the one whose *current mean colour* is nearest, if that Lab distance is under
   ``threshold``; all such pixels join at once, then the region means are updated (one
   ``np.bincount``). It stops when no pixel can join.
3. **Leftovers**: pixels no region accepted form their own regions (connected components);
   components smaller than ``min_region_frac`` of the image are released and absorbed by
   unconstrained growth (nearest adjacent mean, no threshold).
4. **Merging**: adjacent regions whose statistics (smoothed mean colour and the standard
   deviation of the unsmoothed colour, a texture cue) differ by less than ``merge_threshold``
   are merged (connected components of the region adjacency graph restricted to similar
   pairs, ``scipy.sparse.csgraph``).

No per-pixel Python loop: the growth is one numba-compiled loop (:func:`_grow_rows`).
"""

from __future__ import annotations

import dataclasses

import cv2
import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from baselines.features import region_adjacency
from baselines.labelling import RegionLabeller, WorkingCopySettings
from baselines.preprocess import gaussian_blur, relabel_contiguous, sobel_xy, upscale_labels, working_lab

def grid_seeds(gradient: np.ndarray, cells: int) -> np.ndarray:
    """Flat indices of one seed per grid cell: the cell's gradient minimum."""
    h, w = gradient.shape
    step = max(int(round(max(h, w) / max(cells, 1))), 1)
    ny, nx = -(-h // step), -(-w // step)
    padded = np.full((ny * step, nx * step), np.inf, np.float32)
    padded[:h, :w] = gradient
    blocks = padded.reshape(ny, step, nx, step).transpose(0, 2, 1, 3).reshape(ny, nx, step * step)
    best = blocks.argmin(axis=2)
    ys = np.arange(ny)[:, None] * step + best // step
    xs = np.arange(nx)[None, :] * step + best % step
    ok = (ys < h) & (xs < w)
    return (ys[ok] * w + xs[ok]).astype(np.intp)


def grow(colour: np.ndarray, labels: np.ndarray, threshold: float, max_iter: int = 10_000) -> np.ndarray:
    """Grow the regions of ``labels`` (-1 = unassigned) into unassigned pixels, in place.

    ``colour`` is HxWxC float. At each iteration every unassigned pixel with an assigned
    4-neighbour looks at its neighbours' regions (above, below, left, right: the first of
    equal distances wins) and joins the one with the nearest *current* mean colour when the
    squared Lab distance is under ``threshold``² (``np.inf``: always); all such pixels join
    at once, then the means are updated. Stops when no pixel can join.
    """
    h, w, c = colour.shape
    if labels.shape != (h, w) or not labels.flags.c_contiguous:
        raise ValueError(f"labels must be a C-contiguous {h}x{w} array (grow writes into it), got {labels.shape}")
    flat_lab = labels.reshape(-1)
    n = int(flat_lab.max()) + 1 if flat_lab.size else 0
    if n <= 0:
        return labels
    flat_col = np.ascontiguousarray(colour.reshape(-1, c), np.float64)
    _grow_rows(flat_col, flat_lab, n, h, w, float(threshold) ** 2, int(max_iter))
    return labels


@numba.njit(cache=True, nogil=True)
def _grow_rows(col, lab, n, h, w, thr2, max_iter):
    """The loop of :func:`grow` on flat arrays (``lab``, ids < ``n``, changed in place). Hand-written: the
    whole-image numpy form re-read every pixel four times an iteration (27 ms of 31 of the
    partition); this one keeps its arithmetic (region sums added pixel by pixel in raster
    order, per iteration, as ``np.bincount`` adds them; distances summed channel by channel)."""
    c = col.shape[1]
    counts = np.zeros(n)
    sums = np.zeros((n, c))
    for p in range(lab.shape[0]):
        if lab[p] >= 0:
            counts[lab[p]] += 1.0
            for k in range(c):
                sums[lab[p], k] += col[p, k]
    means = np.empty((n, c))
    join_pixel = np.empty(lab.shape[0], np.int64)
    join_label = np.empty(lab.shape[0], np.int64)
    delta = np.zeros((n, c))
    delta_count = np.zeros(n)
    for _ in range(max_iter):
        for r in range(n):
            for k in range(c):
                means[r, k] = sums[r, k] / max(counts[r], 1.0)
        joins = 0
        for y in range(h):
            for x in range(w):
                p = y * w + x
                if lab[p] >= 0:
                    continue
                best_d = np.inf
                best_l = -1
                for s in range(4):  # above, below, left, right
                    if s == 0:
                        q = p - w if y > 0 else -1
                    elif s == 1:
                        q = p + w if y < h - 1 else -1
                    elif s == 2:
                        q = p - 1 if x > 0 else -1
                    else:
                        q = p + 1 if x < w - 1 else -1
                    if q < 0 or lab[q] < 0:
                        continue
                    r = lab[q]
                    d = 0.0
                    for k in range(c):
                        diff = col[p, k] - means[r, k]
                        d += diff * diff
                    if d < best_d:
                        best_d = d
                        best_l = r
                if best_l >= 0 and best_d < thr2:
                    join_pixel[joins] = p
                    join_label[joins] = best_l
                    joins += 1
        if joins == 0:
            break
        delta[:] = 0.0
        delta_count[:] = 0.0
        for j in range(joins):  # raster order, as np.bincount over the joining pixels
            p, r = join_pixel[j], join_label[j]
            lab[p] = r
            delta_count[r] += 1.0
            for k in range(c):
                delta[r, k] += col[p, k]
        for r in range(n):
            counts[r] += delta_count[r]
            for k in range(c):
                sums[r, k] += delta[r, k]


def region_stats(colour: np.ndarray, raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, 2C) per-region mean of ``colour`` and standard deviation of ``raw`` (texture)."""
    n = int(labels.max()) + 1
    flat = labels.ravel()
    cnt = np.maximum(np.bincount(flat, minlength=n), 1).astype(np.float64)
    cols = []
    for k in range(colour.shape[2]):
        cols.append(np.bincount(flat, weights=colour[:, :, k].ravel(), minlength=n) / cnt)
    for k in range(raw.shape[2]):
        v = raw[:, :, k].ravel().astype(np.float64)
        m = np.bincount(flat, weights=v, minlength=n) / cnt
        cols.append(np.sqrt(np.maximum(np.bincount(flat, weights=v * v, minlength=n) / cnt - m * m, 0.0)))
    return np.stack(cols, axis=1)


def merge_similar(stats: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Merge adjacent regions whose statistics (rows of ``stats``) are closer than ``threshold``."""
    n = int(labels.max()) + 1
    pairs, _ = region_adjacency(labels)
    if n < 2 or threshold <= 0 or len(pairs) == 0:
        return labels
    d = np.sqrt(((stats[pairs[:, 0]] - stats[pairs[:, 1]]) ** 2).sum(axis=1))
    sel = pairs[d < threshold]
    graph = coo_matrix((np.ones(len(sel)), (sel[:, 0], sel[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return comp[labels].astype(np.int32)


def region_growing_partition(
    image: np.ndarray,
    work_size: int = 160,
    smooth_sigma: float = 1.0,
    seed_cells: int = 16,
    threshold: float = 12.0,
    merge_threshold: float = 2.5,
    min_region_frac: float = 0.002,
) -> np.ndarray:
    """Seeded region growing partition of an RGB uint8 image -> HxW int32 regions 0..n-1."""
    raw = working_lab(image, work_size)
    lab = gaussian_blur(raw, smooth_sigma)
    wh, ww = lab.shape[:2]
    gx, gy = sobel_xy(lab)
    gradient = (gx * gx + gy * gy).sum(axis=2)

    labels = np.full((wh, ww), -1, np.int64)
    seeds = grid_seeds(gradient, seed_cells)
    labels.ravel()[seeds] = np.arange(len(seeds))
    grow(lab, labels, threshold)

    # leftovers: their own regions when large enough, else absorbed by unconstrained growth
    free = labels < 0
    if free.any():
        n_cc, cc = cv2.connectedComponents(free.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        sizes = np.bincount(cc[free], minlength=n_cc)
        big = sizes >= max(min_region_frac * wh * ww, 1)
        big[0] = False
        keep = free & big[cc]
        labels[keep] = int(labels.max()) + cc[keep]  # labels.max() >= 0: there is at least one seed
        grow(lab, labels, np.inf)
    labels = relabel_contiguous(labels)
    labels = relabel_contiguous(merge_similar(region_stats(lab, raw, labels), labels, merge_threshold))
    return upscale_labels(labels, image.shape[:2])


@dataclasses.dataclass
class RegionGrowingSettings(WorkingCopySettings):
    #: seeds: one per cell, this many cells along the longer side
    seed_cells: int = 16
    #: a pixel joins a region when its Lab distance to the region mean is below this
    threshold: float = 12.0
    #: adjacent regions whose (Lab mean, Lab std) differ by less than this merge (0: never)
    merge_threshold: float = 2.5
    #: leftover components smaller than this fraction of the image are absorbed
    min_region_frac: float = 0.002

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed_cells < 1:
            raise ValueError(f"seed_cells must be >= 1, not {self.seed_cells}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be > 0, not {self.threshold}")
        if self.merge_threshold < 0:
            raise ValueError(f"merge_threshold must be >= 0, not {self.merge_threshold}")
        if not 0.0 <= self.min_region_frac < 0.5:
            raise ValueError(f"min_region_frac must be in [0, 0.5), not {self.min_region_frac}")


class RegionGrowing(RegionLabeller):
    Settings = RegionGrowingSettings
    #: 2: TextonBoost-style features (textons, colour and orientation histograms) with context;
    #: 3: every training region reaches the classifier (max_train_regions 150,000); 4: the
    #: working copy shrunk in RGB before its Lab (``working_lab``), as the features' copy
    version = 4

    def partition(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        return region_growing_partition(
            image, s.work_size, s.smooth_sigma, s.seed_cells, s.threshold, s.merge_threshold, s.min_region_frac
        )
