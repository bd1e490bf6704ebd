"""``mser``: Maximally Stable Extremal Regions as a partition, then region labelling.

In the literature's words: MSER (Matas, Chum, Urban & Pajdla 2002), the extremal regions of
a grey image whose area changes least over ``delta`` threshold levels, computed per Lab
channel (an approximation of colour MSER; not Forssen's 2007 MSCR, which grows regions
over colour edges), turned into a partition and labelled by the shared region classifier.
MSER is a region *detector* (for matching), not a segmenter: the painting below is what
makes its nested, overlapping output a partition. Deliberately left out: the ellipse fits
and affine normalisation used for matching, and MSCR.

OpenCV's MSER (``cv2.MSER_create``, both polarities) runs on a lightly smoothed working
copy of the image (longer side at most ``work_size``), on the lightness and, with
``colour=True``, also on the a and b channels of Lab (each rescaled to 8 bits), so that
regions that differ only in hue are found too. The regions of all channels are nested or
overlapping; they become one partition by painting them from the largest to the smallest,
so that the finest region wins each pixel (the stable "leaves" survive, a parent keeps the
pixels none of its children cover). Pixels no region covers take the id of the nearest
painted pixel (``scipy.ndimage.distance_transform_edt`` with ``return_indices``) - except
uncovered areas of at least the minimum region area, which become regions of their own
(cut by a coarse grid of ``fallback_cells`` cells along the longer side): MSER only finds
*extremal* regions, so an area whose intensity lies between its neighbours' is never one,
and would otherwise be swallowed whole by a neighbour. Regions larger than a cell of that
grid are then cut by it (:func:`cut_large`; as the edge methods' markers are): with 8
cells the ceiling (oracle mIoU on every 4th CamVid *train* image) rises from 49.3 to 58.4
for 300 regions an image instead of 190. The method's grid has 12 cells (``grid_cells``,
about 580 regions a CamVid frame), chosen on a CamVid sequence held out of train. The
partition is scaled back with nearest neighbour.
"""

from __future__ import annotations

import dataclasses

import cv2
import numba
import numpy as np
from scipy import ndimage

from baselines.labelling import RegionLabeller, WorkingCopySettings
from baselines.preprocess import (
    gaussian_blur, grid_cells, grid_components, relabel_contiguous, upscale_labels, working_lab,
)


def _to_uint8(channel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((channel - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


@numba.njit(cache=True, nogil=True)
def _paint_in_rank_order(points, starts, order, keep, h, w, out):
    """out[pixel] = rank for every point of every kept region, ranks ascending (so the
    highest rank covering a pixel is written last); points clipped into the image."""
    for rank in range(order.shape[0]):
        if keep[rank]:
            region = order[rank]
            for j in range(starts[region], starts[region + 1]):
                x = min(max(points[j, 0], 0), w - 1)
                y = min(max(points[j, 1], 0), h - 1)
                out[y * w + x] = rank


def paint_regions(regions: list[np.ndarray], shape: tuple[int, int], min_visible_frac: float = 0.0) -> np.ndarray:
    """Paint point sets ((k, 2) x, y each) finest-wins -> HxW ids, -1 where none.

    The region of smallest area covering a pixel wins it; the id of a region is its rank
    by decreasing area. Painted by rank, largest first, in one compiled pass over all
    points (hand-written: numpy's unbuffered ``np.maximum.at`` over the 300,000-odd points
    of a CamVid frame took three times as long; a test checks the two agree). With
    ``min_visible_frac`` > 0, regions that win less than that fraction of their own pixels
    (near-duplicates of a nested child: MSER returns the same blob at several levels, whose
    outer rings would otherwise become thin regions) are dropped and the rest painted
    again, so that their pixels go to the next enclosing region.
    """
    h, w = shape
    out = np.full(h * w, -1, np.int64)
    if not regions:
        return out.reshape(h, w)
    sizes = np.array([len(r) for r in regions])
    order = np.argsort(-sizes, kind="stable")  # largest first -> rank 0
    points = np.concatenate(regions)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    keep = np.ones(len(regions), bool)
    _paint_in_rank_order(points, starts, order, keep, h, w, out)
    if min_visible_frac > 0:
        visible = np.bincount(out[out >= 0], minlength=len(regions))
        keep = visible >= min_visible_frac * sizes[order]
        if not keep.all():
            out[:] = -1
            _paint_in_rank_order(points, starts, order, keep, h, w, out)
    return out.reshape(h, w)


def fill_nearest(ids: np.ndarray) -> np.ndarray:
    """Give every pixel with id < 0 the id of the nearest pixel with an id >= 0."""
    missing = ids < 0
    if not missing.any():
        return ids
    _, (iy, ix) = ndimage.distance_transform_edt(missing, return_indices=True)
    return ids[iy, ix]


#: cells of the coarse grid (along the longer side) of :func:`mser_partition`; the method's
#: default (``MserSettings.grid_cells``)
GRID_CELLS = 12


def mser_partition(
    image: np.ndarray,
    work_size: int = 240,
    smooth_sigma: float = 1.0,
    delta: int = 4,
    min_area_frac: float = 2e-3,
    max_area_frac: float = 0.5,
    max_variation: float = 0.5,
    colour: bool = True,
    fallback_cells: int = GRID_CELLS,
    min_visible_frac: float = 0.0,
    min_diversity: float = 0.0,
) -> np.ndarray:
    """MSER partition of an RGB uint8 image -> HxW int32 region ids 0..n-1."""
    lab = gaussian_blur(working_lab(image, work_size), smooth_sigma)
    wh, ww = lab.shape[:2]
    channels = [_to_uint8(lab[:, :, 0], 0.0, 100.0)]
    if colour:
        channels += [_to_uint8(lab[:, :, 1], -100.0, 100.0), _to_uint8(lab[:, :, 2], -100.0, 100.0)]
    area = wh * ww
    ids = np.full((wh, ww), -1, np.int64)
    if min(wh, ww) >= 3:
        mser = cv2.MSER_create(
            delta=int(delta),
            min_area=max(int(min_area_frac * area), 1),
            max_area=max(int(max_area_frac * area), 2),
            max_variation=float(max_variation),
            min_diversity=float(min_diversity),
        )
        found: list[np.ndarray] = []
        for ch in channels:
            regions, _ = mser.detectRegions(ch)
            found.extend(regions)
        ids = paint_regions(found, (wh, ww), min_visible_frac)
    # uncovered areas of at least min_area become regions of their own (cut by a coarse
    # grid so that one leftover cannot span the image); smaller ones go to the nearest region
    free = ids < 0
    if free.any():
        key = grid_components(free, fallback_cells)
        sizes = np.bincount(key.ravel())
        big = sizes >= max(min_area_frac * area, 1)
        big[0] = False
        if not (ids >= 0).any() and not big.any():  # nothing at all: keep the largest piece
            big[1 + np.argmax(sizes[1:])] = True
        keep = big[key]
        ids[keep] = int(ids.max()) + 1 + key[keep]
    return upscale_labels(cut_large(fill_nearest(ids), fallback_cells), image.shape[:2])


def cut_large(ids: np.ndarray, cells: int) -> np.ndarray:
    """Regions larger than a cell of a ``cells``-cell grid (along the longer side) cut by
    that grid; smaller ones kept whole. MSER keeps blobs up to ``max_area_frac`` of the
    image (road and pavement under one dark region), which one class label cannot describe."""
    h, w = ids.shape
    cell = grid_cells(h, w, cells)
    n_cells = int(cell.max()) + 1
    large = np.bincount(ids.ravel()) > (h * w) / n_cells
    key = ids.astype(np.int64) * n_cells + np.where(large[ids], cell, 0)
    return relabel_contiguous(key)


@dataclasses.dataclass
class MserSettings(WorkingCopySettings):
    work_size: int = 240
    #: MSER threshold step (grey levels)
    delta: int = 4
    #: smallest and largest region, as fractions of the image area
    min_area_frac: float = 2e-3
    max_area_frac: float = 0.5
    #: MSER max relative area variation across delta levels (higher: more, less stable regions)
    max_variation: float = 0.5
    #: also run on the a and b channels of Lab (finds regions that differ only in hue)
    colour: bool = True
    #: a region must win this fraction of its pixels from its nested children, else it is
    #: dropped as a near-duplicate (its pixels go to the enclosing region)
    min_visible_frac: float = 0.0
    #: OpenCV's own near-duplicate pruning (0: off; it drops whole blobs on flat images)
    min_diversity: float = 0.0
    #: cells of the grid (along the longer side) that cuts the uncovered leftovers and the
    #: regions larger than a cell: 12, chosen on a CamVid sequence held out of train (8: 34.3,
    #: 12: 35.7 mIoU with every training region; docs/RESULTS.md, "Session 11")
    grid_cells: int = GRID_CELLS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delta < 1:
            raise ValueError(f"delta must be >= 1, not {self.delta}")
        if not 0.0 < self.min_area_frac < self.max_area_frac <= 1.0:
            raise ValueError(
                f"need 0 < min_area_frac < max_area_frac <= 1, got {self.min_area_frac}, {self.max_area_frac}"
            )
        if self.max_variation <= 0:
            raise ValueError(f"max_variation must be > 0, not {self.max_variation}")
        if not 0.0 <= self.min_visible_frac <= 1.0:
            raise ValueError(f"min_visible_frac must be in [0, 1], not {self.min_visible_frac}")
        if not 0.0 <= self.min_diversity < 1.0:
            raise ValueError(f"min_diversity must be in [0, 1), not {self.min_diversity}")
        if self.grid_cells < 1:
            raise ValueError(f"grid_cells must be >= 1, not {self.grid_cells}")


class Mser(RegionLabeller):
    Settings = MserSettings
    #: 2: TextonBoost-style features (textons, colour and orientation histograms) with context;
    #: 3: regions larger than a grid cell cut by the grid; 4: every training region reaches
    #: the classifier (max_train_regions 150,000); 5: a 12-cell grid instead of 8; 6: the
    #: working copy shrunk in RGB before its Lab (``working_lab``), as the features' copy
    version = 6

    def partition(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        return mser_partition(
            image, s.work_size, s.smooth_sigma, s.delta, s.min_area_frac, s.max_area_frac, s.max_variation, s.colour,
            min_visible_frac=s.min_visible_frac, min_diversity=s.min_diversity, fallback_cells=s.grid_cells,
        )
