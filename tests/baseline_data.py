"""Synthetic data of the classical-method tests: textured classes, odd inputs that must work,
bad inputs that must raise."""

from __future__ import annotations

import numpy as np

from bench.datasets.types import DatasetInfo, InMemorySplit, Sample

INFO = DatasetInfo(
    "textured", ("sky", "grass", "brick", "moss"),
    np.array([[80, 120, 220], [40, 160, 40], [180, 70, 50], [40, 160, 40]], np.uint8), 255,
)


def textured_image(rng: np.random.Generator, h: int = 72, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of 4 classes: smooth blue ramp, noisy green, red stripes, smooth green.

    Grass and moss share their mean colour (texture alone separates them); a small square
    of every label map is the ignore index.
    """
    n = int(rng.integers(4, 8))
    pts = rng.random((n, 2)) * [h, w]
    cls = rng.integers(0, 4, n)
    yy, xx = np.mgrid[0:h, 0:w]
    label = cls[np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=2)]
    img = INFO.palette[label].astype(np.float32)
    noise = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
    ramp = ((yy - h / 2) * 0.3)[..., None]
    stripes = (np.sin((xx + yy) * 2 * np.pi / 6) * 40)[..., None]
    img += np.where((label == 0)[..., None], ramp + 3 * noise, 0)
    img += np.where((label == 1)[..., None], 35 * noise, 0)
    img += np.where((label == 2)[..., None], stripes + 5 * noise, 0)
    img += np.where((label == 3)[..., None], 4 * noise, 0)
    lab = label.astype(np.uint8)
    y0, x0 = rng.integers(0, h - 6), rng.integers(0, w - 6)
    lab[y0 : y0 + 5, x0 : x0 + 5] = 255
    return np.clip(img, 0, 255).astype(np.uint8), lab


def textured_split(n: int, seed: int, name: str = "train", h: int = 72, w: int = 96) -> InMemorySplit:
    rng = np.random.default_rng(seed)
    return InMemorySplit(INFO, name, [Sample(*textured_image(rng, h, w), id=f"{name}{i}") for i in range(n)])



BAD_OK_INPUTS = {
    "grey": lambda rng: rng.integers(0, 256, (40, 56), dtype=np.uint8),
    "grey_hw1": lambda rng: rng.integers(0, 256, (40, 56, 1), dtype=np.uint8),
    "rgba": lambda rng: rng.integers(0, 256, (40, 56, 4), dtype=np.uint8),
    "1x1": lambda rng: np.full((1, 1, 3), 200, np.uint8),
    "2x2": lambda rng: rng.integers(0, 256, (2, 2, 3), dtype=np.uint8),
    "1xN": lambda rng: rng.integers(0, 256, (1, 33, 3), dtype=np.uint8),
    "Nx1": lambda rng: rng.integers(0, 256, (33, 1, 3), dtype=np.uint8),
    "constant": lambda rng: np.full((48, 64, 3), 128, np.uint8),
    "black": lambda rng: np.zeros((48, 64, 3), np.uint8),
    "noise": lambda rng: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
}

BAD_INPUTS = {
    "float": np.zeros((10, 12, 3), np.float32),
    "int64": np.zeros((10, 12, 3), np.int64),
    "5 channels": np.zeros((10, 12, 5), np.uint8),
    "2 channels": np.zeros((10, 12, 2), np.uint8),
    "1-d": np.zeros(10, np.uint8),
    "empty": np.zeros((0, 12, 3), np.uint8),
    "4-d": np.zeros((2, 10, 12, 3), np.uint8),
}
