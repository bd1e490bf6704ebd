"""Colour palettes: the default class palette and the one ``colorize`` (label map -> RGB).

``label_palette`` serves datasets without colours of their own; ``colorize`` draws every
label map segbench shows (reports, grids, predict overlays, ``DatasetInfo.colorize``).
"""

from __future__ import annotations

import numpy as np


def label_palette(n: int) -> np.ndarray:
    """The PASCAL VOC bit-interleaved palette: ``n`` distinct RGB colours, class 0 black."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def colorize(label: np.ndarray, palette: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """Label map -> RGB uint8 image with ``palette`` (one row a class); the ignore index,
    negative and out-of-palette values are drawn black. An HxWx3 input is returned as RGB."""
    label = np.asarray(label)
    if label.ndim == 3:  # already colour
        return label[..., :3].astype(np.uint8)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    lut = np.zeros((len(pal) + 1, 3), np.uint8)  # the last row: black for everything else
    lut[: len(pal)] = pal
    index = np.where((label >= 0) & (label < len(pal)), label, len(pal)).astype(np.intp)
    out = lut[index]
    if ignore_index is not None and 0 <= ignore_index < len(pal):
        out[label == ignore_index] = 0
    return out
