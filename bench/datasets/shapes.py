"""``shapes``: a deterministic synthetic segmentation set, generated on the fly.

Each image is a smooth, randomly coloured background with 3-8 textured shapes
(ellipses, rotated rectangles and star-like polygons, from a few pixels to most of the
image) drawn over it, then blurred and given Gaussian noise. The five object classes
differ by *texture*, and their colours overlap on purpose so that colour alone does not
separate them:

=====  ============  ==========================================  =================
index  name          texture                                     colours
=====  ============  ==========================================  =================
0      background    smooth low-frequency colour field           any hue, muted
1      hstripes      stripes within 20 degrees of horizontal     warm range (A)
2      vstripes      stripes within 20 degrees of vertical       warm range (A)
3      checker       rotated checkerboard                        cool range (B)
4      dots          lattice of dots on a plain base             cool range (B)
5      gradient      smooth linear ramp between two colours      A or B
=====  ============  ==========================================  =================

Sample ``i`` of split ``s`` is generated from ``numpy.random.SeedSequence([seed, s, i])``
(train=0, val=1, test=2), so the same seed gives byte-identical data in any order of
access, and splits never share images. Nothing is cached or written to disk.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from bench.datasets.types import Dataset, DatasetError, DatasetInfo, Sample, Split, unknown_split

CLASS_NAMES = ("background", "hstripes", "vstripes", "checker", "dots", "gradient")
PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [245, 130, 48], [0, 130, 200], [60, 180, 75], [145, 30, 180]], np.uint8
)
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# hue ranges in degrees: warm (A) and cool (B)
_HUE_A = (0.0, 60.0)
_HUE_B = (150.0, 250.0)


def _hsv(rng: np.random.Generator, hue_range, sat=(0.45, 0.9), val=(0.55, 0.95)) -> np.ndarray:
    h = rng.uniform(*hue_range) % 360.0
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h / 360.0, s, v), np.float32) * 255.0


def _pair(rng: np.random.Generator, hue_range) -> tuple[np.ndarray, np.ndarray]:
    """Two colours of one hue range with clear contrast (the second darker)."""
    c1 = _hsv(rng, hue_range)
    c2 = _hsv(rng, hue_range, val=(0.2, 0.45))
    return c1, c2


def _soft(x: np.ndarray, sharpness: float = 2.5) -> np.ndarray:
    """Anti-aliased square wave in [0, 1] from a sine in [-1, 1]."""
    return np.clip(x * sharpness, -1.0, 1.0) * 0.5 + 0.5


class ShapesSplit(Split):
    """One split of :class:`ShapesDataset`; sample ``i`` is generated on ``load(i)``."""

    def __init__(self, info: DatasetInfo, name: str, n: int, seed: int, size: tuple[int, int]):
        super().__init__(info, name)
        if n <= 0:
            raise DatasetError(f"shapes: split '{name}' is empty (n={n})")
        self.n = int(n)
        self.seed = int(seed)
        self.size = size
        self._yy, self._xx = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float32)
        self._rendered: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # a few MB at most

    def __len__(self) -> int:
        return self.n

    @property
    def ids(self) -> list[str]:
        return [f"{self.name}_{i:04d}" for i in range(self.n)]

    def load(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        if index not in self._rendered:  # rendering is the cost; each sample is kept once made
            ss = np.random.SeedSequence([self.seed, _SPLIT_CODES[self.name], index])
            rng = np.random.default_rng(ss)
            self._rendered[index] = self._render(rng, forced_class=1 + index % (len(CLASS_NAMES) - 1))
        image, label = self._rendered[index]
        return Sample(image=image.copy(), label=label.copy(), id=f"{self.name}_{index:04d}")  # callers may write

    # ------------------------------------------------------------------ rendering
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.size
        gh, gw = int(rng.integers(2, 5)), int(rng.integers(2, 6))
        hue0 = rng.uniform(0, 360)
        grid = np.stack(
            [
                _hsv(rng, (hue0 - 70, hue0 + 70), sat=(0.15, 0.6), val=(0.35, 0.85))
                for _ in range(gh * gw)
            ]
        ).reshape(gh, gw, 3)
        return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)

    def _texture(self, cls: int, rng: np.random.Generator, bbox) -> np.ndarray:
        xx, yy = self._xx, self._yy
        if cls in (1, 2):
            c1, c2 = _pair(rng, _HUE_A)
            angle = np.deg2rad(rng.uniform(-20, 20) + (0.0 if cls == 1 else 90.0))
            period = rng.uniform(4.0, 10.0)
            # stripes run along `angle`: the wave varies across it
            v = -xx * np.sin(angle) + yy * np.cos(angle)
            t = _soft(np.sin(2 * np.pi * v / period + rng.uniform(0, 2 * np.pi)))
        elif cls == 3:
            c1, c2 = _pair(rng, _HUE_B)
            angle = np.deg2rad(rng.uniform(0, 90))
            cell = rng.uniform(3.0, 7.0)
            u = xx * np.cos(angle) + yy * np.sin(angle)
            v = -xx * np.sin(angle) + yy * np.cos(angle)
            t = _soft(np.sin(np.pi * u / cell) * np.sin(np.pi * v / cell), 4.0)
        elif cls == 4:
            c1, c2 = _pair(rng, _HUE_B)
            spacing = rng.uniform(5.0, 9.0)
            radius = spacing * rng.uniform(0.2, 0.32)
            ox, oy = rng.uniform(0, spacing, 2)
            dx = (xx - ox) % spacing - spacing / 2
            dy = (yy - oy) % spacing - spacing / 2
            d = np.sqrt(dx * dx + dy * dy)
            t = np.clip(radius + 0.5 - d, 0.0, 1.0)  # 1 inside a dot, anti-aliased edge
            c1, c2 = c2, c1  # dark base, bright dots... or the reverse
            if rng.random() < 0.5:
                c1, c2 = c2, c1
        else:  # gradient
            hr1 = _HUE_A if rng.random() < 0.5 else _HUE_B
            hr2 = _HUE_A if rng.random() < 0.5 else _HUE_B
            c1 = _hsv(rng, hr1)
            c2 = _hsv(rng, hr2, val=(0.25, 0.6))
            angle = rng.uniform(0, 2 * np.pi)
            x0, y0, x1, y1 = bbox
            u = (xx - (x0 + x1) / 2) * np.cos(angle) + (yy - (y0 + y1) / 2) * np.sin(angle)
            half = max(x1 - x0, y1 - y0, 4) / 2
            t = np.clip(u / (2 * half) + 0.5, 0.0, 1.0)
        return c2[None, None, :] + t[:, :, None] * (c1 - c2)[None, None, :]

    def _shape_mask(self, rng: np.random.Generator, big: bool) -> tuple[np.ndarray, tuple]:
        h, w = self.size
        m = np.zeros((h, w), np.uint8)
        short = min(h, w)
        # sizes from tiny to most of the image, log-uniform
        r = float(np.exp(rng.uniform(np.log(short * (0.12 if big else 0.05)), np.log(short * 0.55))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        kind = rng.integers(0, 3)
        angle = rng.uniform(0, 180)
        aspect = rng.uniform(0.35, 1.0)
        shift = 4  # sub-pixel precision for cv2 drawing
        f = 1 << shift
        if kind == 0:
            cv2.ellipse(m, (int(cx * f), int(cy * f)), (int(r * f), int(r * aspect * f)), angle, 0, 360, 1, -1, cv2.LINE_8, shift)
        elif kind == 1:
            box = cv2.boxPoints(((cx, cy), (2 * r, 2 * r * aspect), angle))
            cv2.fillPoly(m, [np.round(box * f).astype(np.int32)], 1, cv2.LINE_8, shift)
        else:
            n = int(rng.integers(5, 10))
            th = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = r * rng.uniform(0.45, 1.0, n)
            pts = np.stack([cx + rad * np.cos(th), cy + rad * aspect * np.sin(th)], 1)
            cv2.fillPoly(m, [np.round(pts * f).astype(np.int32)], 1, cv2.LINE_8, shift)
        ys, xs = np.nonzero(m)
        bbox = (xs.min(), ys.min(), xs.max(), ys.max()) if xs.size else (0, 0, w - 1, h - 1)
        return m.astype(bool), bbox

    def _render(self, rng: np.random.Generator, forced_class: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.size
        img = self._background(rng)
        label = np.zeros((h, w), np.uint8)
        n_shapes = int(rng.integers(3, 9))
        classes = list(rng.integers(1, len(CLASS_NAMES), n_shapes - 1)) + [forced_class]
        for j, cls in enumerate(classes):
            last = j == len(classes) - 1
            for _ in range(10):  # a shape can fall outside the frame: redraw
                mask, bbox = self._shape_mask(rng, big=last)
                if mask.sum() >= (30 if last else 6):
                    break
            tex = self._texture(int(cls), rng, bbox)
            img[mask] = tex[mask]
            label[mask] = cls
        sigma = rng.uniform(0.5, 1.1)
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        img = img + rng.normal(0.0, rng.uniform(3.0, 9.0), img.shape).astype(np.float32)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), label


class ShapesDataset(Dataset):
    """Synthetic textured shapes (built in, no files). See the module docstring.

    Options: ``seed=0``, ``n_train=48``, ``n_val=16``, ``n_test=16`` (a count of 0 drops
    that split), ``size=(96, 128)`` as (height, width).
    """

    builtin = True

    def __init__(self, seed: int = 0, n_train: int = 48, n_val: int = 16, n_test: int = 16, size=(96, 128), root=None):
        if root is not None:
            raise DatasetError(f"shapes: generated data takes no data root (got {root})")
        try:
            size = tuple(int(v) for v in size)
        except TypeError:
            raise DatasetError(f"shapes: option size={size!r} must be (height, width)") from None
        if len(size) != 2 or min(size) < 16:
            raise DatasetError(f"shapes: option size={size!r} must be (height, width), each >= 16")
        counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        if any(v < 0 for v in counts.values()) or not any(counts.values()):
            raise DatasetError(f"shapes: split sizes {counts} must be >= 0 and not all 0")
        self.seed = int(seed)
        self.size = size
        self.counts = counts
        self._info = DatasetInfo(
            name="shapes",
            class_names=CLASS_NAMES,
            palette=PALETTE,
            ignore_index=255,
            citation="Synthetic data generated by segbench (bench/datasets/shapes.py); no licence restrictions.",
        )

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def split_names(self) -> list[str]:
        return [k for k, v in self.counts.items() if v > 0]

    def split(self, name: str) -> ShapesSplit:
        if name not in self.counts:
            raise unknown_split("shapes", name, self.split_names())
        if self.counts[name] == 0:
            raise DatasetError(f"shapes: split '{name}' is empty (n_{name}=0)")
        return ShapesSplit(self._info, name, self.counts[name], self.seed, self.size)
