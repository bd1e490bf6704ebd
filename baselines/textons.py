"""Textons: the TextonBoost filter bank, its k-means dictionary and per-region texton histograms.

In the literature's words: the 17-filter bank of Winn, Criminisi & Minka (2005) that
TextonBoost (Shotton, Winn, Rother & Criminisi 2006/2009) and ALE (Ladicky et al. 2009)
describe texture with - Gaussians at sigma 1, 2, 4 on each Lab channel (9), Laplacians of
Gaussian at sigma 1, 2, 4, 8 on L (4) and first derivatives of Gaussians in x and y at
sigma 2, 4 on L (4) - whose responses, whitened per filter (the Mahalanobis distance of
Shotton et al. with a diagonal covariance), are clustered by k-means on training pixels into
*textons*; each pixel takes its nearest texton and each region is described by the
normalised histogram of its pixels' textons.

The bank runs on a working copy whose longer side is at most ``work_size`` (240: the size of
the MSRC images TextonBoost was designed on; sigmas in working pixels); the texton map is
scaled back with nearest neighbour, so that every region of the full-size partition gets a
histogram. Differences from TextonBoost, on purpose: k = 64 textons by default instead of
400 (the histograms feed a boosted-tree region classifier, not per-pixel shape filters) and
scikit-learn's MiniBatchKMeans instead of full k-means.
"""

from __future__ import annotations

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from baselines.preprocess import gaussian_blur, rgb_to_lab, working_rgb

#: (kind, sigma, Lab channels): the 17 filters of Winn et al. 2005, in working-copy pixels
FILTER_BANK: tuple[tuple[str, float, tuple[int, ...]], ...] = (
    ("gauss", 1.0, (0, 1, 2)), ("gauss", 2.0, (0, 1, 2)), ("gauss", 4.0, (0, 1, 2)),
    ("log", 1.0, (0,)), ("log", 2.0, (0,)), ("log", 4.0, (0,)), ("log", 8.0, (0,)),
    ("dx", 2.0, (0,)), ("dy", 2.0, (0,)), ("dx", 4.0, (0,)), ("dy", 4.0, (0,)),
)
N_FILTERS = 17


def gaussian_stack(lab: np.ndarray) -> dict[float, np.ndarray]:
    """The Gaussian blurs the bank is built from: the (h, w, 3) Lab image at sigma 1, 2, 4 and
    its lightness (h, w) at sigma 8 (each blur computed once, shared by its filters)."""
    stack = {sigma: gaussian_blur(lab, sigma) for sigma in (1.0, 2.0, 4.0)}
    stack[8.0] = gaussian_blur(np.ascontiguousarray(lab[:, :, 0]), 8.0)
    return stack


def filter_responses(lab: np.ndarray, stack: dict[float, np.ndarray] | None = None) -> np.ndarray:
    """(h, w, 17) float32 responses of :data:`FILTER_BANK` on an (h, w, 3) float32 Lab image
    (``stack``: its :func:`gaussian_stack`, when already computed).

    A view of 17 contiguous planes (``np.stack`` along a new first axis copies each plane in
    one pass; interleaving them into (h, w, 17) memory took 2.5 ms a 240x180 image): its
    ``reshape(-1, 17)`` is a view too, whose rows :meth:`TextonDictionary.assign` multiplies
    with the same products (a test checks it)."""
    stack = gaussian_stack(lab) if stack is None else stack
    out = []
    for kind, sigma, channels in FILTER_BANK:
        g = stack[sigma]
        if kind == "gauss":
            out += [g[:, :, c] for c in channels]
            continue
        light = np.ascontiguousarray(g if g.ndim == 2 else g[:, :, 0])
        if kind == "log":
            out.append(cv2.Laplacian(light, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT))
        else:
            dx, dy = (1, 0) if kind == "dx" else (0, 1)
            out.append(cv2.Sobel(light, cv2.CV_32F, dx, dy, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT))
    planes = np.stack(out, axis=0).reshape(N_FILTERS, lab.shape[0] * lab.shape[1])
    return planes.T.reshape(lab.shape[0], lab.shape[1], N_FILTERS)


#: response vectors per block of :meth:`TextonDictionary.assign`
ASSIGN_BLOCK = 4096


class TextonDictionary:
    """k textons: centres in whitened filter-response space, and the whitening (mean, scale)."""

    def __init__(self, centres: np.ndarray, mean: np.ndarray, scale: np.ndarray):
        centres, mean, scale = (np.asarray(a, np.float32) for a in (centres, mean, scale))
        if centres.ndim != 2 or centres.shape[1] != N_FILTERS or mean.shape != (N_FILTERS,) or scale.shape != (N_FILTERS,):
            raise ValueError(f"texton centres must be (k, {N_FILTERS}) with mean and scale ({N_FILTERS},), "
                             f"got {centres.shape}, {mean.shape}, {scale.shape}")
        if len(centres) < 1 or not (scale > 0).all():
            raise ValueError("a texton dictionary needs at least one centre and positive scales")
        self.centres, self.mean, self.scale = centres, mean, scale
        # ||(r - m)/s - c||^2 = ||(r - m)/s||^2 + r.w + b with w = -2 c/s, b = ||c||^2 + 2 (m/s).c:
        # the whitening folded into one (17, k) product and a bias
        c64 = centres.astype(np.float64) / scale
        self._w = (-2.0 * c64.T).astype(np.float32)
        self._b = ((centres.astype(np.float64) ** 2).sum(axis=1) + 2.0 * c64 @ mean).astype(np.float32)

    @property
    def k(self) -> int:
        return len(self.centres)

    @classmethod
    def fit(cls, responses: np.ndarray, k: int = 64, seed: int = 0) -> "TextonDictionary":
        """k-means (MiniBatchKMeans) of (n, 17) training responses, whitened per filter."""
        from sklearn.cluster import MiniBatchKMeans

        responses = np.asarray(responses, np.float32).reshape(-1, N_FILTERS)
        if len(responses) < k:
            raise ValueError(f"{len(responses)} training pixels for {k} textons")
        mean = responses.mean(axis=0)
        scale = np.maximum(responses.std(axis=0), 1e-6)
        km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, random_state=seed)
        with threadpool_limits(limits=1):  # OpenMP threads spin badly on a shared machine
            km.fit((responses - mean) / scale)
        return cls(km.cluster_centers_, mean, scale)

    def assign(self, responses: np.ndarray) -> np.ndarray:
        """Nearest texton (0..k-1) of every response vector, ``responses.shape[:-1]``.

        In blocks of :data:`ASSIGN_BLOCK` vectors so that the (block, k) distances stay in
        cache (the whole (n, k) matrix of a 240x180 image is 11 MB): each distance is the same
        product, so the answer is that of one whole-image product (a test checks it)."""
        r = np.asarray(responses, np.float32).reshape(-1, N_FILTERS)
        out = np.empty(len(r), np.intp)
        d = np.empty((min(ASSIGN_BLOCK, len(r)), self.k), np.float32)
        for start in range(0, len(r), ASSIGN_BLOCK):
            block = d[: min(ASSIGN_BLOCK, len(r) - start)]
            np.matmul(r[start : start + len(block)], self._w, out=block)
            block += self._b
            out[start : start + len(block)] = block.argmin(axis=1)
        return out.reshape(responses.shape[:-1])


def sample_responses(images, work_size: int | None = 240, per_image: int = 2000, seed: int = 0) -> np.ndarray:
    """(n, 17) filter responses of ``per_image`` random pixels of each image (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        r = filter_responses(rgb_to_lab(working_rgb(image, work_size))).reshape(-1, N_FILTERS)
        out.append(r[rng.choice(len(r), min(per_image, len(r)), replace=False)])
    if not out:
        raise ValueError("no image to learn textons from")
    return np.concatenate(out)


def region_histograms(ids: np.ndarray, regions: np.ndarray, n: int, bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(n, bins) normalised histogram of the values ``ids`` (0..bins-1) over each region of
    ``regions`` (same shape, ids 0..n-1), optionally weighted; an empty region gets a flat one."""
    code = regions.ravel().astype(np.intp) * bins + ids.ravel().astype(np.intp)
    w = None if weights is None else weights.ravel()
    hist = np.bincount(code, weights=w, minlength=n * bins).reshape(n, bins)
    total = hist.sum(axis=1, keepdims=True)
    return np.where(total > 0, hist / np.maximum(total, 1e-12), 1.0 / bins)
