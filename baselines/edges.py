"""Edge-based methods: ``sobel``, ``laplacian``, ``log`` (Laplacian of Gaussian) and ``canny``.

In the literature's words: edge-based segmentation by marker-controlled watershed
(Beucher & Meyer 1993; Meyer's priority flooding) of an edge-strength map from a classical
operator - Sobel's gradient, the Laplacian, Marr & Hildreth's (1980) Laplacian of Gaussian,
Canny's (1986) detector - followed by region labelling with the shared region classifier
(:mod:`baselines.labelling`). Deliberately left out: learned or multi-cue edges (Pb/gPb,
structured forests), contour closure and hierarchies (OWT-UCM), multi-scale edge fusion;
the operators are the textbook ones so that the leaderboard shows what they alone give.

Edge strength (the module functions; :meth:`EdgeWatershed.edge_strength` is the method's
own with its ``sigma`` setting) is an HxW float32 map in [0, 1], divided by its per-image
maximum (an image without any edge above a tiny noise floor, e.g. a flat one, gives all
zeros), so that boundary benchmarks can sweep one threshold:

* :func:`sobel_strength` - Gaussian pre-smoothing, 3x3 Sobel per Lab channel, gradient
  magnitude over the three channels;
* :func:`laplacian_strength` - Gaussian pre-smoothing, |3x3 Laplacian| over the channels;
* :func:`log_strength` - Laplacian of Gaussian per channel, its zero crossings between
  horizontal and vertical neighbours (sign changes), each weighted by the local slope
  |LoG(p) - LoG(q)|, max over channels;
* :func:`canny_strength` - OpenCV's Canny on the lightness swept over its thresholds: each
  pixel's strength is the highest threshold at which Canny still keeps it (a reference
  point for boundary benchmarks).

Partition (:meth:`EdgeWatershed.partition`): on a working copy of the image whose longer
side is at most ``work_size`` (240: a quarter of the pixels of 480x360; the smoothing
sigmas scaled along), the method's edge strength is computed and cut by
:func:`watershed_partition`; the regions are scaled back with nearest neighbour (region
boundaries to 2 pixels at 480x360; CamVid val mIoU did not drop, see docs/METHODS.md;
``canny`` computes its map on the image itself and shrinks the map instead, as its thin
edges do not survive shrinking the image).
:meth:`EdgeWatershed.edge_strength` (the boundary benchmark's map) stays at full size.
In :func:`watershed_partition` the strength is smoothed; "low-edge" pixels are
those below a global quantile or below the local mean strength (Gaussian of half a grid
cell; so that textured areas, whose strength is high everywhere, still get markers);
markers are the connected components of low-edge pixels cut by a coarse grid (no marker
spans more than one cell) with tiny ones dropped; a priority-flood watershed floods the
strength map from them (:mod:`baselines.watershed`: scikit-image's labels, pixel for pixel).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar

import cv2
import numba
import numpy as np

from baselines.labelling import RegionLabeller, RegionSettings
from baselines.preprocess import (
    gaussian_blur, grid_components, relabel_contiguous, sobel_xy, upscale_labels, working_lab,
)
from baselines.watershed import watershed
from bench.method import Capabilities


#: strengths below this (Lab units per pixel) are rounding noise, not edges
NOISE_FLOOR = 1e-3


def _normalise(strength: np.ndarray) -> np.ndarray:
    """Divide by the maximum; a map whose maximum is under the noise floor is all zeros."""
    strength = np.asarray(strength, np.float32)
    top = float(strength.max()) if strength.size else 0.0
    if not np.isfinite(top) or top < NOISE_FLOOR:
        return np.zeros_like(strength, dtype=np.float32)
    return np.clip(strength / top, 0.0, 1.0).astype(np.float32)


def _lab_laplacian(image: np.ndarray, sigma: float) -> np.ndarray:
    """3x3 Laplacian of each channel of the Gaussian-smoothed Lab image, HxWx3."""
    lab = gaussian_blur(working_lab(image), sigma)
    return cv2.Laplacian(lab, cv2.CV_32F, ksize=3, borderType=cv2.BORDER_REFLECT).reshape(lab.shape)


def sobel_strength(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Sobel gradient magnitude over the Lab channels, in [0, 1]."""
    gx, gy = sobel_xy(gaussian_blur(working_lab(image), sigma))
    return _normalise(np.sqrt((gx * gx + gy * gy).sum(axis=2)))


def laplacian_strength(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Absolute 3x3 Laplacian over the Lab channels (root of the sum of squares), in [0, 1]."""
    lap = _lab_laplacian(image, sigma)
    return _normalise(np.sqrt((lap * lap).sum(axis=2)))


def log_strength(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Zero crossings of the Laplacian of Gaussian, weighted by the slope across them, in [0, 1].

    A crossing between horizontal (or vertical) neighbours p, q with LoG(p) * LoG(q) < 0
    marks the pixel of the pair nearer to zero with weight |LoG(p) - LoG(q)|; the strength
    is the maximum over the Lab channels and the two directions.
    """
    lap = np.ascontiguousarray(_lab_laplacian(image, sigma), np.float32)
    out = np.zeros(lap.shape[:2], np.float32)
    _zero_crossings(lap, out)
    return _normalise(out)


@numba.njit(cache=True, nogil=True)
def _zero_crossings(lap, out):
    """The maximum crossing weight of each pixel (:func:`log_strength`) into ``out``, in
    float32 as the whole-array numpy form computed it. Hand-written: that form made ten
    temporary arrays per direction (6.5 of the map's 8.5 ms)."""
    h, w, channels = lap.shape
    for y in range(h):
        for x in range(w):
            for dy, dx in ((1, 0), (0, 1)):
                y2, x2 = y + dy, x + dx
                if y2 >= h or x2 >= w:
                    continue
                for c in range(channels):
                    a, b = lap[y, x, c], lap[y2, x2, c]
                    if a * b < 0:
                        weight = abs(a - b)
                        if abs(a) <= abs(b):
                            out[y, x] = max(out[y, x], weight)
                        else:
                            out[y2, x2] = max(out[y2, x2], weight)


#: gradients are scaled so that the largest is this many int16 units (cv2.Canny takes int16 dx, dy)
_CANNY_GRADIENT_SCALE = 16000


def _canny_squared_threshold(threshold: float) -> int:
    """OpenCV's integer form of a Canny threshold with ``L2gradient``: floor(min(t, 32767)^2)."""
    threshold = min(32767.0, threshold)
    return math.floor(threshold * threshold) if threshold > 0 else math.floor(threshold)


def canny_strength(image: np.ndarray, sigma: float = 2.0, ratio: float = 0.4, levels: int = 64) -> np.ndarray:
    """Canny swept over its thresholds, as one strength map in [0, 1].

    The lightness is smoothed (Gaussian ``sigma``) and differentiated once (3x3 Sobel);
    OpenCV's Canny (non-maximum suppression and hysteresis) then runs on those gradients
    at ``levels`` high thresholds (k - 1/2)/levels of the largest gradient, k = 1..levels,
    with the low threshold ``ratio`` x the high one. With a fixed ratio the edge sets are
    nested, so a pixel's strength is k/levels for the largest k at which it is still an
    edge: thresholding the map at k/levels gives exactly Canny's output at the k-th
    threshold pair. This is the sweep of Canny's thresholds that the published BSDS
    figures for Canny are made from.

    The sweep runs in one pass (:func:`_hysteresis_levels`): one ``cv2.Canny`` call at the
    lowest threshold pair gives the non-maximum-suppressed pixels, and the hysteresis of
    every pair follows from their squared magnitudes (equal to ``levels`` Canny calls,
    tested).
    """
    light = working_lab(image)[:, :, 0]
    if min(light.shape) < 3:
        return np.zeros(light.shape, np.float32)
    gx, gy = sobel_xy(gaussian_blur(light, sigma))
    top = float(np.sqrt(gx * gx + gy * gy).max())
    if top < NOISE_FLOOR:
        return np.zeros(light.shape, np.float32)
    scale = _CANNY_GRADIENT_SCALE / top
    dx = np.rint(gx * scale).astype(np.int16)
    dy = np.rint(gy * scale).astype(np.int16)
    # the k-th pair as OpenCV takes it: (low, high) swapped if low > high, squared, floored
    pairs = [sorted((ratio * high, high)) for high in
             ((k - 0.5) / levels * _CANNY_GRADIENT_SCALE for k in range(1, levels + 1))]
    lows = np.array([_canny_squared_threshold(low) for low, _ in pairs], np.int64)
    highs = np.array([_canny_squared_threshold(high) for _, high in pairs], np.int64)
    # Canny with high = low keeps every pixel that survives its non-maximum suppression
    candidates = np.flatnonzero(cv2.Canny(dx, dy, pairs[0][0], pairs[0][0], L2gradient=True))
    strengths = (np.arange(levels + 1) / levels).astype(np.float32)  # of k = 0..levels
    return _hysteresis_levels(candidates, dx, dy, lows, highs, strengths)


#: the 8 neighbours of a pixel as offsets (dy, dx)
_NEIGHBOURS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], np.int64)


@numba.njit(cache=True, nogil=True)
def _hysteresis_levels(candidates, dx, dy, lows, highs, strengths):
    """For every pixel ``strengths[k]`` of the largest k (1..levels; 0: none) at which
    Canny's hysteresis at the k-th threshold pair (lows[k-1], highs[k-1]: squared, as
    OpenCV compares them) keeps it, for all pairs in one pass (HxW float32).

    ``candidates``: flat indices of the pixels that survive non-maximum suppression at the
    lowest pair; ``dx``, ``dy``: the int16 gradients. A candidate's magnitude is dx^2 + dy^2
    (OpenCV's L2 form, in integers); its weak / strong pair is the last whose low / high
    threshold the magnitude exceeds. At pair k the edges are the candidates with weak >= k
    8-connected through such pixels to one with strong >= k. The pairs rise with k, so
    the edge sets are nested: going down from the top pair, each pair only adds pixels,
    flooded from its new strong pixels and from its new candidates that touch an edge
    already found; each pixel is flooded once. The maps carry a border of one pixel (never
    a candidate) so that neighbours need no bounds checks, as in OpenCV's Canny.
    Hand-written: neither OpenCV nor scikit-image sweeps hysteresis thresholds.
    """
    h, w = dx.shape
    levels = len(lows)
    stride = w + 2
    offsets = _NEIGHBOURS[:, 0] * stride + _NEIGHBOURS[:, 1]
    n = len(candidates)
    weak_map = np.zeros((h + 2) * stride, np.int32)  # padded; 0: not a candidate
    where = np.empty(n, np.int64)  # padded index of each candidate
    weak = np.empty(n, np.int64)
    strong = np.empty(n, np.int64)
    weak_count = np.zeros(levels + 2, np.int64)
    strong_count = np.zeros(levels + 2, np.int64)
    for i in range(n):
        y, x = candidates[i] // w, candidates[i] % w
        m = np.int64(dx[y, x]) * dx[y, x] + np.int64(dy[y, x]) * dy[y, x]
        where[i] = (y + 1) * stride + x + 1
        # the pairs whose low / high threshold m exceeds; most candidates are weak, so a
        # scan from the bottom stops sooner than a binary search
        k = 0
        while k < levels and lows[k] < m:
            k += 1
        weak[i] = k
        k = 0
        while k < levels and highs[k] < m:
            k += 1
        strong[i] = k
        weak_map[where[i]] = weak[i]
        weak_count[weak[i] + 1] += 1
        strong_count[strong[i] + 1] += 1
    # candidates grouped by their weak / strong pair (counting sort)
    weak_start = np.cumsum(weak_count)
    strong_start = np.cumsum(strong_count)
    weak_order = np.empty(n, np.int64)
    strong_order = np.empty(n, np.int64)
    weak_fill = weak_start.copy()
    strong_fill = strong_start.copy()
    for i in range(n):
        weak_order[weak_fill[weak[i]]] = where[i]
        weak_fill[weak[i]] += 1
        strong_order[strong_fill[strong[i]]] = where[i]
        strong_fill[strong[i]] += 1
    level = np.zeros((h + 2) * stride, np.int32)
    stack = np.empty(n, np.int64)
    for k in range(levels, 0, -1):
        top = 0
        for i in range(weak_start[k], weak_start[k + 1]):  # new candidates touching an edge
            p = weak_order[i]
            touches = False
            for o in offsets:
                touches |= level[p + o] > 0
            if touches:
                level[p] = k
                stack[top] = p
                top += 1
        for i in range(strong_start[k], strong_start[k + 1]):  # new strong pixels
            p = strong_order[i]
            if level[p] == 0:
                level[p] = k
                stack[top] = p
                top += 1
        while top > 0:  # flood through the candidates of pair k
            top -= 1
            p = stack[top]
            for o in offsets:
                if level[p + o] == 0 and weak_map[p + o] >= k:
                    level[p + o] = k
                    stack[top] = p + o
                    top += 1
    out = np.empty((h, w), np.float32)
    for y in range(h):
        for x in range(w):
            out[y, x] = strengths[level[(y + 1) * stride + x + 1]]
    return out


def watershed_partition(
    strength: np.ndarray,
    smooth_sigma: float = 1.0,
    low_quantile: float = 0.3,
    local_ratio: float = 1.0,
    local_sigma: float = 8.0,
    grid_cells: int = 10,
    min_marker_frac: float = 2e-4,
) -> np.ndarray:
    """Marker-based watershed of an edge-strength map -> HxW int32 regions 0..n-1."""
    s = gaussian_blur(np.asarray(strength, np.float32), smooth_sigma)
    h, w = s.shape
    low = s <= np.quantile(s, low_quantile)
    if local_ratio > 0:
        low |= s <= local_ratio * gaussian_blur(s, local_sigma)
    markers = grid_components(low, grid_cells)  # 0 = not a marker pixel, 1.. = markers
    sizes = np.bincount(markers.ravel())
    small = sizes < max(min_marker_frac * h * w, 1)
    small[0] = False
    if len(sizes) > 1 and small[1:].all():  # keep at least the largest marker
        small[1 + np.argmax(sizes[1:])] = False
    markers = np.where(small[markers], 0, markers)
    if markers.max() == 0:  # no marker at all: one region
        return np.zeros((h, w), np.int32)
    regions = watershed(s, markers)
    return relabel_contiguous(regions - 1)


@dataclasses.dataclass
class EdgeSettings(RegionSettings):
    #: Gaussian pre-smoothing of the image before the edge operator (pixels)
    sigma: float = 1.0
    #: smoothing of the strength map before picking markers (pixels)
    smooth_sigma: float = 1.0
    #: pixels below this quantile of the strength are marker pixels
    low_quantile: float = 0.3
    #: ... and so are pixels below local_ratio x the local mean strength (0 disables)
    local_ratio: float = 1.0
    #: markers are cut by a grid of this many cells along the longer side (bounds region size)
    grid_cells: int = 10
    #: markers smaller than this fraction of the image are dropped
    min_marker_frac: float = 2e-4
    #: the partition (edge map, markers, watershed) runs on a copy whose longer side is at
    #: most this (pixels; sigma and smooth_sigma scaled along), its regions scaled back;
    #: None: on the image itself
    work_size: int | None = 240

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma < 0 or self.smooth_sigma < 0:
            raise ValueError("sigma and smooth_sigma must be >= 0")
        if not 0.0 < self.low_quantile <= 1.0:
            raise ValueError(f"low_quantile must be in (0, 1], not {self.low_quantile}")
        if not 0.0 <= self.local_ratio <= 2.0:
            raise ValueError(f"local_ratio must be in [0, 2], not {self.local_ratio}")
        if self.grid_cells < 1:
            raise ValueError(f"grid_cells must be >= 1, not {self.grid_cells}")
        if not 0.0 <= self.min_marker_frac < 0.5:
            raise ValueError(f"min_marker_frac must be in [0, 0.5), not {self.min_marker_frac}")
        if self.work_size is not None and self.work_size < 8:
            raise ValueError(f"work_size must be None or >= 8, not {self.work_size}")


class EdgeWatershed(RegionLabeller):
    """Edge strength -> marker watershed -> region classifier; subclasses name the operator."""

    Settings = EdgeSettings
    capabilities = Capabilities(partition_oracle=True, edge_map=True, stages=True, save=True)
    #: 2: the partition runs on a working copy (``work_size``); 3: TextonBoost-style
    #: features (textons, colour and orientation histograms) with context; 4: every training
    #: region reaches the classifier (max_train_regions 150,000)
    version = 4
    #: the edge operator: (image, sigma=) -> HxW float32 strength in [0, 1]
    operator: ClassVar[Callable[..., np.ndarray]]
    #: compute the edge map on the image itself and shrink the map (area interpolation) to
    #: the working copy, instead of computing it on the shrunk image
    edge_map_full_size: ClassVar[bool] = False

    def edge_strength(self, image: np.ndarray) -> np.ndarray:
        """HxW float32 edge strength in [0, 1] of this method's operator with its ``sigma``."""
        return self.operator(image, sigma=self.settings.sigma)

    def partition(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        h, w = image.shape[:2]
        scale = 1.0 if s.work_size is None else min(1.0, s.work_size / max(h, w))
        small = image
        if scale < 1.0:
            size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        with self.stage("edge map"):
            if self.edge_map_full_size and small is not image:
                strength = cv2.resize(self.edge_strength(image), small.shape[1::-1], interpolation=cv2.INTER_AREA)
            else:
                strength = self.operator(small, sigma=s.sigma * scale)
        regions = watershed_partition(
            strength,
            smooth_sigma=s.smooth_sigma * scale,
            low_quantile=s.low_quantile,
            local_ratio=s.local_ratio,
            local_sigma=max(small.shape[:2]) / (2.0 * s.grid_cells),
            grid_cells=s.grid_cells,
            min_marker_frac=s.min_marker_frac,
        )
        return upscale_labels(regions, (h, w))


class SobelWatershed(EdgeWatershed):
    operator = staticmethod(sobel_strength)


class LaplacianWatershed(EdgeWatershed):
    operator = staticmethod(laplacian_strength)


@dataclasses.dataclass
class WideEdgeSettings(EdgeSettings):
    """The wider pre-smoothing (sigma 2) of the second-derivative and Canny operators."""

    sigma: float = 2.0


class LogWatershed(EdgeWatershed):
    Settings = WideEdgeSettings
    operator = staticmethod(log_strength)


class CannyWatershed(EdgeWatershed):
    """Watershed of the swept Canny map (:func:`canny_strength`, its ratio and levels fixed).

    The map is computed on the image itself and then shrunk to the working copy: Canny on
    the shrunk image loses weak boundaries (CamVid val mIoU 38.4 against 39.8 at full size),
    the shrunk full-size map keeps them (41.2)."""

    Settings = WideEdgeSettings
    operator = staticmethod(canny_strength)
    edge_map_full_size = True
    #: 3: the map at full size, shrunk (2 computed it on the shrunk image); 4: TextonBoost-style
    #: features with context; 5: every training region reaches the classifier
    version = 5
