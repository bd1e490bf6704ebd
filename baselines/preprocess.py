"""Image preprocessing and label-map plumbing shared by the classical partitions.

One implementation of what every partition does around its own algorithm:

* :func:`as_rgb` - the one input check/conversion (grey, RGBA -> RGB uint8; else ValueError);
* :func:`rgb_to_lab` - uint8 RGB -> float32 Lab;
* :func:`working_rgb` / :func:`working_lab` - an image shrunk so that its longer side is at
  most ``work_size`` (area interpolation), and its Lab: the working copy MSER, region
  growing and the region features run on;
* :func:`gaussian_blur` and :func:`sobel_xy` - OpenCV's Gaussian and 3x3 Sobel with
  reflected borders, the filters of every edge map and feature;
* :func:`upscale_labels` - a working-size label map back to the image size (nearest
  neighbour), ids made contiguous;
* :func:`relabel_contiguous` - any integer map -> ids 0..n-1 with every id used;
* :func:`grid_cells` / :func:`grid_components` - a coarse grid over the image and the
  connected components of a mask cut by it (no piece spans more than one cell).
"""

from __future__ import annotations

import cv2
import numpy as np


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an input image and return it as a contiguous HxWx3 uint8 RGB array.

    Accepts HxWx3 RGB, HxW or HxWx1 grey (replicated) and HxWx4 RGBA (alpha dropped).
    Anything else (wrong dtype, wrong number of channels, an empty image) is a ValueError
    that says what was received.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 Lab (L in 0..100, a and b roughly in -127..127)."""
    return cv2.cvtColor(image.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)


def working_rgb(image: np.ndarray, work_size: int | None = 240) -> np.ndarray:
    """An RGB image shrunk (area interpolation) so that its longer side is at most
    ``work_size`` pixels (None, or an image already that small: as it is)."""
    h, w = image.shape[:2]
    scale = 1.0 if work_size is None else min(1.0, work_size / max(h, w))
    if scale >= 1.0:
        return image
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def working_lab(image: np.ndarray, work_size: int | None = None) -> np.ndarray:
    """Lab copy of an image (see :func:`as_rgb`) shrunk so that its longer side is at most
    ``work_size`` pixels (None: full size): the Lab of :func:`working_rgb`, the working copy
    the region features describe (shrinking first converts a quarter of the pixels)."""
    return rgb_to_lab(working_rgb(as_rgb(image), work_size))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an HxW or HxWxC image, float or uint8 (rounded), reflected borders; ``sigma`` <= 0: as is."""
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).reshape(image.shape)


def sobel_xy(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel derivatives d/dx and d/dy (float32, reflected borders), each of the image's shape."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    return gx.reshape(image.shape), gy.reshape(image.shape)


def relabel_contiguous(regions: np.ndarray) -> np.ndarray:
    """Map the ids of an integer region map (ids >= 0) onto 0..n-1, keeping their order."""
    regions = np.asarray(regions)
    if regions.size == 0:
        return regions.astype(np.int32)
    if regions.min() < 0:
        raise ValueError("region ids must be non-negative")
    present = np.bincount(regions.ravel()) > 0
    if present.all():  # already 0..n-1: a cast, not a gather (most partitions arrive so)
        return regions.astype(np.int32)
    lut = (np.cumsum(present) - 1).astype(np.int32)
    return lut[regions]


def upscale_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (working-size) label map resized to ``shape`` by nearest neighbour, ids 0..n-1.

    The ids are made contiguous on the small map (4x fewer pixels at half size); growing a
    map by nearest neighbour keeps every id, so the result equals relabelling after resizing."""
    h, w = shape
    labels = relabel_contiguous(labels)
    sh, sw = labels.shape
    if (sh, sw) != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        if h < sh or w < sw:  # a map shrunk along some side may lose ids
            labels = relabel_contiguous(labels)
    return labels


def grid_cells(h: int, w: int, cells: int) -> np.ndarray:
    """HxW id of the coarse grid cell of every pixel, ``cells`` cells along the longer side."""
    step = max(max(h, w) / max(cells, 1), 1.0)
    ys = (np.arange(h) / step).astype(np.int64)
    xs = (np.arange(w) / step).astype(np.int64)
    return ys[:, None] * (int(xs.max()) + 1) + xs[None, :]


def grid_components(mask: np.ndarray, cells: int) -> np.ndarray:
    """HxW int32: 0 outside ``mask``, 1..n its 4-connected components cut by :func:`grid_cells`."""
    h, w = mask.shape
    _, cc = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    cell = grid_cells(h, w, cells)
    pieces = np.zeros((h, w), np.int32)
    pieces[mask] = relabel_contiguous(cc[mask].astype(np.int64) * (int(cell.max()) + 1) + cell[mask]) + 1
    return pieces
