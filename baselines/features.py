"""Region features and region targets for the two-stage classical methods.

Stage (a) of every classical method partitions an image into regions (an HxW map of
region ids 0..n-1); stage (b) describes each region by a fixed-length vector and labels
it with a classifier. This module holds the shared, fully vectorised pieces of stage (b):

* :func:`region_features` - per-region colour (Lab), texture (LBP histograms at two scales,
  :func:`lbp_histograms` of the codes of :func:`uniform_lbp`; gradient and band-pass
  energies), position and size, all via ``np.bincount`` over the flat region map (no
  per-region or per-pixel Python loop);
* :func:`region_adjacency` / :func:`context_features` - the region graph and each region's
  neighbours' mean features;
* :func:`region_label_histogram` / :func:`region_majority_labels` - per-region class counts
  and the majority ground-truth label (training targets and the "oracle" labelling).
"""

from __future__ import annotations

import cv2
import numpy as np

from baselines.preprocess import as_rgb, gaussian_blur, rgb_to_lab, sobel_xy

#: LBP settings: uniform patterns with P neighbours give P + 2 codes; radius 1 at full
#: resolution and radius 1 on the image downscaled by 2 (a coarser texture scale at a
#: quarter of the cost of a larger radius)
LBP_POINTS = 8
LBP_RADIUS = 1.0
LBP_SCALES = (1, 2)
LBP_BINS = LBP_POINTS + 2


def feature_names() -> list[str]:
    """Names of the columns of :func:`region_features`, in order."""
    names = [f"lab_mean_{c}" for c in "Lab"] + [f"lab_std_{c}" for c in "Lab"]
    names += ["grad_mean", "grad_std", "grad_x", "grad_y", "bandpass_fine", "bandpass_coarse"]
    for scale in LBP_SCALES:
        names += [f"lbp_s{scale}_{k}" for k in range(LBP_BINS)]
    names += ["centroid_y", "centroid_x", "log_area", "area_fraction"]
    return names


def region_features(image: np.ndarray, regions: np.ndarray, n_regions: int | None = None) -> np.ndarray:
    """Describe every region of ``regions`` (HxW ids 0..n-1) of an RGB image.

    Returns an ``(n_regions, d)`` float32 array, columns as in :func:`feature_names`:
    Lab mean and standard deviation; mean and spread of the Sobel gradient magnitude of L,
    mean |dL/dx| and |dL/dy| (orientation); mean absolute band-pass response of L at a
    fine and a coarse scale; normalised uniform-LBP histograms (P=8, R=1) at full and half resolution;
    centroid (y, x) as a fraction of the image size; log area and area fraction.
    Regions with no pixel (possible when ``n_regions`` is larger than the map's max + 1)
    get zeros.
    """
    image = as_rgb(image)
    regions = np.asarray(regions)
    h, w = image.shape[:2]
    if regions.shape != (h, w):
        raise ValueError(f"region map has shape {regions.shape}, image is {h}x{w}")
    flat = regions.ravel().astype(np.intp)
    n = int(flat.max()) + 1 if n_regions is None else int(n_regions)
    area = np.bincount(flat, minlength=n).astype(np.float64)
    safe_area = np.maximum(area, 1.0)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=values.ravel(), minlength=n) / safe_area

    lab = rgb_to_lab(image)
    L = np.ascontiguousarray(lab[:, :, 0])
    cols: list[np.ndarray] = []
    lab_means = [mean(lab[:, :, c]) for c in range(3)]
    cols += lab_means
    for c in range(3):
        sq = mean(lab[:, :, c].astype(np.float64) ** 2)
        cols.append(np.sqrt(np.maximum(sq - lab_means[c] ** 2, 0.0)))

    gx, gy = sobel_xy(L)
    mag = np.sqrt(gx * gx + gy * gy)
    g_mean = mean(mag)
    g_sq = mean(mag.astype(np.float64) ** 2)
    cols += [g_mean, np.sqrt(np.maximum(g_sq - g_mean**2, 0.0)), mean(np.abs(gx)), mean(np.abs(gy))]
    blur1, blur3 = gaussian_blur(L, 1.0), gaussian_blur(L, 3.0)
    cols += [mean(np.abs(L - blur1)), mean(np.abs(blur1 - blur3))]

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    for scale in LBP_SCALES:
        cols += list(lbp_histograms(grey, regions, n, scale).T)

    yy, xx = np.indices((h, w), dtype=np.float64)
    cols += [mean(yy) / max(h - 1, 1), mean(xx) / max(w - 1, 1)]
    cols += [np.log1p(area), area / float(h * w)]
    out = np.stack(cols, axis=1).astype(np.float32)
    out[area == 0] = 0.0
    return out


def uniform_lbp(grey: np.ndarray) -> np.ndarray:
    """HxW uniform LBP codes 0..P+1 (P = LBP_POINTS neighbours at radius LBP_RADIUS), equal
    to ``skimage.feature.local_binary_pattern(grey, P, R, method="uniform")``.

    Hand-written because scikit-image computes it with a per-pixel interpolation loop (about
    35 ms per 480x360 image); here it is P whole-image comparisons (a few ms). It follows
    scikit-image's arithmetic exactly (neighbour offsets rounded to 5 decimals, bilinear
    interpolation at the per-pixel coordinates r + dr, c + dc, zeros outside the image,
    "on" when neighbour - centre >= 0; uniform: at most 2 changes around the circle, else P + 1).
    """
    g = np.asarray(grey, np.float64)
    h, w = g.shape
    pad = np.zeros((h + 2, w + 2))
    pad[1:-1, 1:-1] = g
    rows, cols = np.arange(h, dtype=np.float64)[:, None], np.arange(w, dtype=np.float64)[None, :]

    def shifted(dy: int, dx: int) -> np.ndarray:
        return pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    bits = []
    for i in range(LBP_POINTS):
        rp = round(-LBP_RADIUS * np.sin(2 * np.pi * i / LBP_POINTS), 5)
        cp = round(LBP_RADIUS * np.cos(2 * np.pi * i / LBP_POINTS), 5)
        r0, r1, c0, c1 = int(np.floor(rp)), int(np.ceil(rp)), int(np.floor(cp)), int(np.ceil(cp))
        if r0 == r1 and c0 == c1:  # on the pixel grid: no interpolation
            bits.append(shifted(r0, c0) >= g)
            continue
        rr, cc = rows + rp, cols + cp
        dr, dc = rr - np.floor(rr), cc - np.floor(cc)
        top = (1 - dc) * shifted(r0, c0)
        top += dc * shifted(r0, c1)
        bottom = (1 - dc) * shifted(r1, c0)
        bottom += dc * shifted(r1, c1)
        top *= 1 - dr
        bottom *= dr
        top += bottom
        top -= g
        bits.append(top >= 0)
    ones = np.zeros((h, w), np.uint8)
    changes = np.zeros((h, w), np.uint8)
    for i in range(LBP_POINTS):
        ones += bits[i]
        changes += bits[i] != bits[(i + 1) % LBP_POINTS]
    ones[changes > 2] = LBP_POINTS + 1
    return ones.astype(np.intp)


def lbp_histograms(grey: np.ndarray, regions: np.ndarray, n: int, scale: int = 1) -> np.ndarray:
    """(n, LBP_BINS) normalised uniform-LBP histogram of each region, on the grey image
    downscaled by ``scale``; a region too small to survive the downscaling (or an image
    under 3 pixels) gets a flat histogram."""
    g, r = grey, regions
    if scale > 1:
        h, w = grey.shape
        g = cv2.resize(grey, (max(w // scale, 1), max(h // scale, 1)), interpolation=cv2.INTER_AREA)
        r = cv2.resize(regions.astype(np.int32), (g.shape[1], g.shape[0]), interpolation=cv2.INTER_NEAREST)
    sub = r.ravel().astype(np.intp)
    hist = np.zeros((n, LBP_BINS))
    if min(g.shape) >= 3:
        codes = uniform_lbp(g)
        hist = np.bincount(sub * LBP_BINS + codes.ravel(), minlength=n * LBP_BINS).reshape(n, LBP_BINS)
    sub_area = hist.sum(axis=1)
    return np.where(sub_area[:, None] > 0, hist / np.maximum(sub_area, 1)[:, None], 1.0 / LBP_BINS)


def region_adjacency(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent region pairs (m, 2) with i < j and their shared boundary length.

    Two regions are adjacent when some pixel of one is the horizontal or vertical neighbour
    of a pixel of the other; the length is the number of such pixel pairs.
    """
    regions = np.asarray(regions)
    n = int(regions.max()) + 1 if regions.size else 0
    first, second = [], []
    for a, b in ((regions[:, :-1], regions[:, 1:]), (regions[:-1, :], regions[1:, :])):
        cut = a != b  # only the few pairs across a boundary go on (the whole-map pairs cost 20x more)
        first.append(a[cut])
        second.append(b[cut])
    a, b = np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    codes, length = np.unique(lo * n + hi, return_counts=True)
    return np.stack([codes // max(n, 1), codes % max(n, 1)], axis=1), length.astype(np.float64)


def context_features(features: np.ndarray, edges: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Mean features of each region's neighbours, weighted by shared boundary length.

    A region without neighbours gets its own features. Vectorised with a sparse matrix.
    """
    from scipy.sparse import coo_matrix

    n = len(features)
    if len(edges) == 0:
        return features.copy()
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adj = coo_matrix((np.concatenate([length, length]), (rows, cols)), shape=(n, n)).tocsr()
    total = np.asarray(adj.sum(axis=1)).ravel()
    ctx = np.asarray(adj @ features.astype(np.float64)) / np.maximum(total, 1e-12)[:, None]
    ctx[total == 0] = features[total == 0]
    return ctx.astype(np.float32)


def region_label_histogram(regions: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """(n_regions, num_classes) int64 pixel counts; labels outside 0..K-1 (ignore) are left out."""
    regions = np.asarray(regions)
    label = np.asarray(label)
    if regions.shape != label.shape:
        raise ValueError(f"region map {regions.shape} and label map {label.shape} differ in shape")
    flat = regions.ravel().astype(np.intp)
    lab = label.ravel().astype(np.intp)
    n = int(flat.max()) + 1 if flat.size else 0
    valid = (lab >= 0) & (lab < num_classes)
    counts = np.bincount(flat[valid] * num_classes + lab[valid], minlength=n * num_classes)
    return counts.reshape(n, num_classes)


def region_majority_labels(regions: np.ndarray, label: np.ndarray, num_classes: int, empty: int = -1) -> np.ndarray:
    """Majority ground-truth class of each region; ``empty`` for regions without a valid pixel.

    Pixels outside 0..num_classes-1 (such as an ignore index of 255) do not vote. Ties go to
    the smaller class index.
    """
    counts = region_label_histogram(regions, label, num_classes)
    majority = counts.argmax(axis=1).astype(np.int64)
    majority[counts.sum(axis=1) == 0] = empty
    return majority
