"""Region features and region targets for the two-stage classical methods.

Stage (a) of every classical method partitions an image into regions (an HxW map of
region ids 0..n-1); stage (b) describes each region by a fixed-length vector and labels
it with a classifier. This module holds the shared, fully vectorised pieces of stage (b):

* :func:`region_features` - per-region colour (Lab mean and spread, Lab and hue
  histograms), texture (gradient and band-pass energies, gradient orientation histogram,
  LBP histograms at two scales, :func:`lbp_histograms` of the codes of :func:`uniform_lbp`,
  and with a :class:`~baselines.textons.TextonDictionary` a texton histogram), position,
  size and spread, summed per region over the flat region map (``np.bincount``, and for the
  means and spreads one compiled pass over the pixels; no per-region Python loop), on a
  working copy of at most ``work_size`` pixels a side;
* :func:`region_adjacency` / :func:`context_features` - the region graph and each region's
  neighbours' mean features;
* :func:`region_label_histogram` / :func:`region_majority_labels` - per-region class counts
  and the majority ground-truth label (training targets and the "oracle" labelling).
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from baselines.preprocess import as_rgb, gaussian_blur, rgb_to_lab, sobel_xy, working_rgb
from baselines.textons import TextonDictionary, filter_responses, gaussian_stack, region_histograms

#: LBP settings: uniform patterns with P neighbours give P + 2 codes; radius 1 at full
#: resolution and radius 1 on the image downscaled by 2 (a coarser texture scale at a
#: quarter of the cost of a larger radius)
LBP_POINTS = 8
LBP_RADIUS = 1.0
LBP_SCALES = (1, 2)
LBP_BINS = LBP_POINTS + 2
#: unsigned gradient orientation bins (0..180 degrees), weighted by gradient magnitude
ORIENTATION_BINS = 8
#: bins of each colour histogram: (Lab channel, low, high) with 8 bins each, then hue
COLOUR_RANGES = ((0, 0.0, 100.0), (1, -40.0, 40.0), (2, -40.0, 60.0))
COLOUR_BINS = 8


def feature_names(texton_k: int = 0) -> list[str]:
    """Names of the columns of :func:`region_features` (with ``texton_k`` textons), in order."""
    names = [f"lab_mean_{c}" for c in "Lab"] + [f"lab_std_{c}" for c in "Lab"]
    names += ["grad_mean", "grad_std", "grad_x", "grad_y", "bandpass_fine", "bandpass_coarse"]
    for scale in LBP_SCALES:
        names += [f"lbp_s{scale}_{k}" for k in range(LBP_BINS)]
    names += ["centroid_y", "centroid_x", "log_area", "area_fraction", "spread_y", "spread_x", "cov_xy"]
    names += [f"orientation_{k}" for k in range(ORIENTATION_BINS)]
    names += [f"hist_{c}_{k}" for c in "Lab" for k in range(COLOUR_BINS)]
    names += [f"hist_hue_{k}" for k in range(COLOUR_BINS)]
    names += [f"texton_{k}" for k in range(texton_k)]
    return names


def working_regions(image: np.ndarray, regions: np.ndarray, work_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The image (:func:`baselines.preprocess.working_rgb`) and its region map (nearest
    neighbour) shrunk so that the longer side is at most ``work_size`` (None: as they are)."""
    small = working_rgb(image, work_size)
    if small.shape[:2] == regions.shape:
        return small, regions
    return small, cv2.resize(regions.astype(np.int32), small.shape[1::-1], interpolation=cv2.INTER_NEAREST)


def region_features(
    image: np.ndarray,
    regions: np.ndarray,
    n_regions: int | None = None,
    textons: TextonDictionary | None = None,
    work_size: int | None = 240,
) -> np.ndarray:
    """Describe every region of ``regions`` (HxW ids 0..n-1) of an RGB image.

    Returns an ``(n_regions, d)`` float32 array, columns as in :func:`feature_names`:
    Lab mean and standard deviation; mean and spread of the Sobel gradient magnitude of L,
    mean |dL/dx| and |dL/dy|; mean absolute band-pass response of L at a fine and a coarse
    scale; normalised uniform-LBP histograms (P=8, R=1) at two scales; centroid (y, x) as a
    fraction of the image size, log area and area fraction (of the full-size map), the
    spread (standard deviation) of y and x and their covariance; the gradient orientation
    histogram; Lab and hue (weighted by saturation) histograms; with ``textons``, the
    texton histogram. Pixel statistics are taken on a copy whose longer side is at most
    ``work_size`` (the region map shrunk by nearest neighbour); a region that loses all its
    pixels there takes the features of the region that covers its place on the copy.
    Regions with no pixel (possible when ``n_regions`` is larger than the map's max + 1)
    get zeros.
    """
    image = as_rgb(image)
    regions = np.asarray(regions)
    h, w = image.shape[:2]
    if regions.shape != (h, w):
        raise ValueError(f"region map has shape {regions.shape}, image is {h}x{w}")
    n = int(regions.max()) + 1 if n_regions is None else int(n_regions)
    area = np.bincount(regions.ravel().astype(np.intp), minlength=n).astype(np.float64)
    small, small_regions = working_regions(image, regions, work_size)
    flat = small_regions.ravel().astype(np.intp)
    small_area = np.bincount(flat, minlength=n).astype(np.float64)
    lab = rgb_to_lab(small)
    stack = gaussian_stack(lab)
    cols, position = _pixel_statistics(lab, stack, flat, n, np.maximum(small_area, 1.0))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # LBP on the image itself: fine texture
    for scale in LBP_SCALES:
        cols += list(lbp_histograms(grey, regions, n, scale).T)
    cy, cx, spread_y, spread_x, cov_xy = position
    cols += [cy, cx, np.log1p(area), area / float(h * w), spread_y, spread_x, cov_xy]
    blocks = [np.stack(cols, axis=1), *_histograms(small, lab, stack, small_regions, n, textons)]
    out = np.concatenate(blocks, axis=1).astype(np.float32)
    _fill_lost(out, area, small_area, regions, small_regions)
    return out


#: the per-pixel quantities :func:`_add_pixel_values` sums per region (squares of some too)
_SUMS = ("L", "a", "b", "L2", "a2", "b2", "grad", "grad2", "abs_gx", "abs_gy", "band_fine", "band_coarse",
         "y", "x", "y2", "x2", "xy")


@numba.njit(cache=True, nogil=True)
def _add_pixel_values(flat, lab, gx, gy, blur1, blur3, sums):
    """sums[region] += each pixel's :data:`_SUMS` in raster order, in float64 from the float32
    maps with numpy's float32 arithmetic: the sums ``np.bincount(flat, weights=...)`` makes,
    bit for bit (hand-written: 17 bincounts and their temporary maps took three times as long)."""
    h, w = gx.shape
    sy, sx = max(h - 1, 1), max(w - 1, 1)
    for y in range(h):
        fy = y / sy
        for x in range(w):
            out = sums[flat[y * w + x]]
            light, a, b = lab[y, x, 0], lab[y, x, 1], lab[y, x, 2]
            out[0] += light
            out[1] += a
            out[2] += b
            out[3] += np.float64(light) ** 2
            out[4] += np.float64(a) ** 2
            out[5] += np.float64(b) ** 2
            dx, dy = gx[y, x], gy[y, x]
            grad = np.sqrt(dx * dx + dy * dy)
            out[6] += grad
            out[7] += np.float64(grad) ** 2
            out[8] += abs(dx)
            out[9] += abs(dy)
            fine = blur1[y, x]
            out[10] += abs(light - fine)
            out[11] += abs(fine - blur3[y, x])
            fx = x / sx
            out[12] += fy
            out[13] += fx
            out[14] += fy**2
            out[15] += fx**2
            out[16] += fy * fx


def _pixel_statistics(lab: np.ndarray, stack: dict, flat: np.ndarray, n: int, safe_area: np.ndarray):
    """Per region: Lab mean and spread, gradient magnitude (Sobel of L) mean and spread, mean
    |dL/dx| and |dL/dy|, band-pass energies (L minus L at sigma 1, sigma 1 minus sigma 3);
    and, apart, the position columns: centroid (y, x) as fractions, spread of y and x, their
    covariance. A spread is sqrt(max(E[v^2] - E[v]^2, 0))."""
    light = np.ascontiguousarray(lab[:, :, 0])
    gx, gy = sobel_xy(light)
    sums = np.zeros((n, len(_SUMS)))
    _add_pixel_values(flat, lab, gx, gy, np.ascontiguousarray(stack[1.0][:, :, 0]), gaussian_blur(light, 3.0), sums)
    mean = sums / safe_area[:, None]

    def spread(k: int, k2: int) -> np.ndarray:
        return np.sqrt(np.maximum(mean[:, k2] - mean[:, k] ** 2, 0.0))

    cols = [mean[:, 0], mean[:, 1], mean[:, 2], spread(0, 3), spread(1, 4), spread(2, 5),
            mean[:, 6], spread(6, 7), mean[:, 8], mean[:, 9], mean[:, 10], mean[:, 11]]
    position = [mean[:, 12], mean[:, 13], spread(12, 14), spread(13, 15), mean[:, 16] - mean[:, 12] * mean[:, 13]]
    return cols, position


def _histograms(rgb: np.ndarray, lab: np.ndarray, stack: dict, regions: np.ndarray, n: int, textons) -> list[np.ndarray]:
    """Per-region histograms: gradient orientation (by magnitude, L smoothed at sigma 1), Lab
    channels, hue (by saturation), and textons when a dictionary is given (``stack``: the
    :func:`~baselines.textons.gaussian_stack` of ``lab``)."""
    gx, gy = sobel_xy(np.ascontiguousarray(stack[1.0][:, :, 0]))
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    orientation = np.minimum((angle * (ORIENTATION_BINS / np.pi)).astype(np.intp), ORIENTATION_BINS - 1)
    out = [region_histograms(orientation, regions, n, ORIENTATION_BINS, np.sqrt(gx * gx + gy * gy))]
    for c, lo, hi in COLOUR_RANGES:
        b = np.clip(((lab[:, :, c] - lo) * (COLOUR_BINS / (hi - lo))).astype(np.intp), 0, COLOUR_BINS - 1)
        out.append(region_histograms(b, regions, n, COLOUR_BINS))
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # OpenCV's uint8 hue is 0..179
    hue = np.minimum(hsv[:, :, 0].astype(np.intp) * COLOUR_BINS // 180, COLOUR_BINS - 1)
    out.append(region_histograms(hue, regions, n, COLOUR_BINS, hsv[:, :, 1] + 1.0))
    if textons is not None:
        out.append(region_histograms(textons.assign(filter_responses(lab, stack)), regions, n, textons.k))
    return out


def _fill_lost(out: np.ndarray, area: np.ndarray, small_area: np.ndarray, regions: np.ndarray, small: np.ndarray) -> None:
    """Rows of regions that have pixels but none on the working copy take the row of the
    working-copy region at their first pixel (keeping their own area columns); empty regions get zeros."""
    lost = np.flatnonzero((area > 0) & (small_area == 0))
    if len(lost):
        flat = regions.ravel()
        first = np.full(len(area), flat.size, np.intp)
        np.minimum.at(first, flat, np.arange(flat.size))
        ys, xs = np.divmod(first[lost], regions.shape[1])
        sy, sx = (ys * small.shape[0]) // regions.shape[0], (xs * small.shape[1]) // regions.shape[1]
        keep = out[lost][:, _AREA_COLUMNS].copy()
        out[lost] = out[small[sy, sx]]
        out[np.ix_(lost, _AREA_COLUMNS)] = keep
    out[area == 0] = 0.0


#: the columns of :func:`region_features` computed on the full-size map (log area, area fraction)
_AREA_COLUMNS = [feature_names().index("log_area"), feature_names().index("area_fraction")]


def _uniform_codes() -> np.ndarray:
    """(256,) uint8: the uniform-LBP code of each 8-bit pattern of "on" neighbours (bit i:
    neighbour i): the number of ones when the circle changes at most twice, else P + 1."""
    bits = (np.arange(1 << LBP_POINTS)[:, None] >> np.arange(LBP_POINTS)) & 1
    changes = (bits != np.roll(bits, -1, axis=1)).sum(axis=1)
    return np.where(changes > 2, LBP_POINTS + 1, bits.sum(axis=1)).astype(np.uint8)


_UNIFORM_CODES = _uniform_codes()


def _lbp_offsets() -> np.ndarray:
    """(P, 2) neighbour offsets (row, column) at radius LBP_RADIUS, rounded to 5 decimals as
    scikit-image rounds them."""
    angle = 2 * np.pi * np.arange(LBP_POINTS) / LBP_POINTS
    return np.array([(round(-LBP_RADIUS * np.sin(a), 5), round(LBP_RADIUS * np.cos(a), 5)) for a in angle])


_LBP_OFFSETS = _lbp_offsets()


@numba.njit(cache=True, nogil=True)
def _uniform_lbp_rows(pad, offsets, table, out):
    """Codes of the (h, w) image inside ``pad`` (a zero border of 1) into ``out``, row by row:
    each neighbour bilinearly interpolated at r + dr, c + dc exactly as scikit-image does."""
    h, w = pad.shape[0] - 2, pad.shape[1] - 2
    points = offsets.shape[0]
    r0 = np.floor(offsets[:, 0]).astype(np.int64)
    r1 = np.ceil(offsets[:, 0]).astype(np.int64)
    c0 = np.floor(offsets[:, 1]).astype(np.int64)
    c1 = np.ceil(offsets[:, 1]).astype(np.int64)
    dc = np.empty((points, w))  # the column fractions, per column as scikit-image computes them
    for i in range(points):
        for c in range(w):
            x = c + offsets[i, 1]
            dc[i, c] = x - np.floor(x)
    pattern = np.empty(w, np.uint8)
    for r in range(h):
        centre = pad[r + 1, 1 : w + 1]
        pattern[:] = 0
        for i in range(points):
            bit = np.uint8(1 << i)
            a = pad[r + 1 + r0[i], 1 + c0[i] : 1 + c0[i] + w]
            if r0[i] == r1[i] and c0[i] == c1[i]:  # on the pixel grid: no interpolation
                for c in range(w):
                    pattern[c] |= bit if a[c] - centre[c] >= 0 else np.uint8(0)
                continue
            y = r + offsets[i, 0]
            dr = y - np.floor(y)
            b = pad[r + 1 + r0[i], 1 + c1[i] : 1 + c1[i] + w]
            lower_a = pad[r + 1 + r1[i], 1 + c0[i] : 1 + c0[i] + w]
            lower_b = pad[r + 1 + r1[i], 1 + c1[i] : 1 + c1[i] + w]
            for c in range(w):
                top = (1 - dc[i, c]) * a[c] + dc[i, c] * b[c]
                bottom = (1 - dc[i, c]) * lower_a[c] + dc[i, c] * lower_b[c]
                value = (1 - dr) * top + dr * bottom
                pattern[c] |= bit if value - centre[c] >= 0 else np.uint8(0)
        for c in range(w):
            out[r, c] = table[pattern[c]]


def uniform_lbp(grey: np.ndarray) -> np.ndarray:
    """HxW uint8 uniform LBP codes 0..P+1 (P = LBP_POINTS neighbours at radius LBP_RADIUS),
    equal to ``skimage.feature.local_binary_pattern(grey, P, R, method="uniform")``.

    Hand-written because scikit-image computes it with a general per-pixel interpolation
    call (about 35 ms per 480x360 image; whole-image numpy comparisons took 8 ms); this
    numba-compiled loop takes about 1.5 ms. It follows scikit-image's arithmetic exactly
    (neighbour offsets rounded to 5 decimals, bilinear interpolation at the per-pixel
    coordinates r + dr, c + dc, in the same order of operations, zeros outside the image,
    "on" when neighbour - centre >= 0), packs the P bits into one byte and maps it to the
    uniform code by a 256-entry table (at most 2 changes around the circle: the number of
    ones, else P + 1).
    """
    g = np.asarray(grey, np.float64)
    if g.ndim != 2:
        raise ValueError(f"uniform_lbp needs a 2-D grey image, got shape {g.shape}")
    pad = np.zeros((g.shape[0] + 2, g.shape[1] + 2))
    pad[1:-1, 1:-1] = g
    out = np.empty(g.shape, np.uint8)
    _uniform_lbp_rows(pad, _LBP_OFFSETS, _UNIFORM_CODES, out)
    return out


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
