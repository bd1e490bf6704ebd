"""The building blocks of the classical methods: preprocessing, region features, edge maps
and the partitions (region growing, MSER, superpixels), on small synthetic images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import baselines.edges as edges
import baselines.mser as mser
import baselines.region_growing as rg
import baselines.superpixel_crf as spc
from baseline_data import BAD_INPUTS, textured_image
from baselines.features import (
    context_features,
    feature_names,
    region_adjacency,
    region_features,
    region_label_histogram,
    region_majority_labels,
    uniform_lbp,
)
from baselines.preprocess import (
    as_rgb,
    grid_cells,
    grid_components,
    relabel_contiguous,
    rgb_to_lab,
    upscale_labels,
    working_lab,
)


# ------------------------------------------------------------------------- features
def test_as_rgb():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb(g).shape == (3, 4, 3) and (as_rgb(g)[:, :, 2] == g).all()
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_rgb(rgba).shape == (3, 4, 3) and as_rgb(rgba).max() == 0
    for bad in BAD_INPUTS.values():
        with pytest.raises(ValueError):
            as_rgb(bad)


def test_relabel_contiguous():
    r = np.array([[5, 5, 9], [2, 9, 9]])
    out = relabel_contiguous(r)
    assert out.tolist() == [[1, 1, 2], [0, 2, 2]] and out.dtype == np.int32
    done = np.array([[1, 0], [2, 2]], np.int32)  # already 0..n-1: the same ids, in a new array
    again = relabel_contiguous(done)
    assert again.tolist() == done.tolist() and again.dtype == np.int32 and not np.shares_memory(again, done)
    with pytest.raises(ValueError):
        relabel_contiguous(np.array([[-1, 0]]))


def test_region_features_values():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    regions = np.zeros((30, 40), np.int32)
    regions[:, 20:] = 1
    regions[10:20, 5:15] = 2
    f = region_features(image, regions)
    assert f.shape == (3, len(feature_names())) and f.dtype == np.float32
    names = feature_names()
    lab = rgb_to_lab(image)
    for r in range(3):
        m = regions == r
        np.testing.assert_allclose(f[r, names.index("lab_mean_L")], lab[..., 0][m].mean(), rtol=1e-4)
        np.testing.assert_allclose(f[r, names.index("lab_std_b")], lab[..., 2][m].std(), rtol=1e-3)
        ys, xs = np.nonzero(m)
        np.testing.assert_allclose(f[r, names.index("centroid_y")], ys.mean() / 29, rtol=1e-5)
        np.testing.assert_allclose(f[r, names.index("centroid_x")], xs.mean() / 39, rtol=1e-5)
        np.testing.assert_allclose(f[r, names.index("log_area")], np.log1p(m.sum()), rtol=1e-5)
    lbp = [i for i, n in enumerate(names) if n.startswith("lbp_s1_")]
    np.testing.assert_allclose(f[:, lbp].sum(axis=1), 1.0, rtol=1e-5)
    # an id with no pixel gets zeros
    assert (region_features(image, regions, n_regions=5)[3:] == 0).all()
    with pytest.raises(ValueError):
        region_features(image, regions[:10])


def test_uniform_lbp_matches_scikit_image():
    from skimage.feature import local_binary_pattern

    rng = np.random.default_rng(3)
    images = [
        textured_image(rng, 40, 56)[0][..., 0],
        rng.integers(0, 256, (23, 31), dtype=np.uint8),
        rng.integers(100, 103, (17, 12), dtype=np.uint8),  # many ties with the centre
        rng.integers(100, 103, (75, 9), dtype=np.uint8),  # several strips of rows, the last one short
        np.full((6, 7), 9, np.uint8),
        np.arange(35, dtype=np.uint8).reshape(5, 7) * 7,
    ]
    for g in images:
        expected = local_binary_pattern(g, 8, 1.0, method="uniform").astype(np.intp)
        np.testing.assert_array_equal(uniform_lbp(g), expected)


def test_region_features_tiny_and_flat_images():
    for shape in [(1, 1, 3), (2, 5, 3), (5, 2, 3)]:
        f = region_features(np.full(shape, 90, np.uint8), np.zeros(shape[:2], np.int32))
        assert f.shape == (1, len(feature_names())) and np.isfinite(f).all()


def test_region_majority_labels():
    regions = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    label = np.array([[3, 3, 255, 255], [1, 0, 7, 255]])
    maj = region_majority_labels(regions, label, num_classes=4)
    # region 2 has one valid vote (0; 7 is out of range), region 1 is all ignore
    assert maj.tolist() == [3, -1, 0]
    assert region_majority_labels(regions, label, num_classes=4, empty=255).tolist() == [3, 255, 0]
    hist = region_label_histogram(regions, label, 4)
    assert hist.tolist() == [[0, 1, 0, 2], [0, 0, 0, 0], [1, 0, 0, 0]]


def test_region_adjacency_and_context():
    regions = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
    pairs, length = region_adjacency(regions)
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert length.tolist() == [2, 2, 1]
    feats = np.array([[1.0], [3.0], [5.0]], np.float32)
    ctx = context_features(feats, pairs, length)
    np.testing.assert_allclose(ctx[:, 0], [(2 * 3 + 2 * 5) / 4, (2 * 1 + 5) / 3, (2 * 1 + 3) / 3], rtol=1e-6)
    one, _ = region_adjacency(np.zeros((4, 4), np.int32))
    assert one.shape == (0, 2)


# ------------------------------------------------------------------------- preprocess
def test_working_lab_downscales_the_longer_side():
    image = textured_image(np.random.default_rng(2), 90, 300)[0]
    np.testing.assert_array_equal(working_lab(image), rgb_to_lab(image))
    np.testing.assert_array_equal(working_lab(image, 300), rgb_to_lab(image))  # no larger than the image
    small = working_lab(image, 100)
    assert small.shape == (30, 100, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small.mean(axis=(0, 1)), rgb_to_lab(image).mean(axis=(0, 1)), atol=0.5)
    assert working_lab(np.zeros((1, 500, 3), np.uint8), 50).shape == (1, 50, 3)
    assert working_lab(image[:, :, 0], 100).shape == (30, 100, 3)  # grey goes through as_rgb


def test_upscale_labels_nearest_and_contiguous():
    labels = np.array([[4, 9], [9, 4]])
    up = upscale_labels(labels, (4, 6))
    assert up.shape == (4, 6) and up.dtype == np.int32
    assert up.tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[1, 1, 1, 0, 0, 0]] * 2
    np.testing.assert_array_equal(upscale_labels(np.array([[3, 5]]), (1, 2)), [[0, 1]])
    # ids made contiguous before growing: the same map as relabelling after, at odd factors too
    rng = np.random.default_rng(0)
    small = rng.integers(0, 500, (45, 60)) * 3
    for shape in ((45, 60), (91, 121), (180, 240), (100, 60)):
        grown = cv2.resize(small.astype(np.int32), shape[::-1], interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(upscale_labels(small, shape), relabel_contiguous(grown))
    # a map shrunk along a side loses ids but stays contiguous
    shrunk = upscale_labels(small, (20, 90))
    assert shrunk.shape == (20, 90) and shrunk.max() + 1 == len(np.unique(shrunk))


def test_grid_components_cut_by_cells():
    assert grid_cells(4, 6, 3).tolist() == [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    mask = np.zeros((4, 6), bool)
    mask[:, :3] = True  # one component across two columns of cells
    mask[0, 5] = True
    pieces = grid_components(mask, 3)
    assert pieces.dtype == np.int32 and (pieces[~mask] == 0).all()
    # numbered by (component, cell): the big component's four cells first, then the corner
    assert pieces.tolist() == [[1, 1, 2, 0, 0, 5], [1, 1, 2, 0, 0, 0], [3, 3, 4, 0, 0, 0], [3, 3, 4, 0, 0, 0]]


# ------------------------------------------------------------------------- edges
STRENGTHS = [edges.sobel_strength, edges.laplacian_strength, edges.log_strength, edges.canny_strength]


@pytest.mark.parametrize("fn", STRENGTHS, ids=lambda f: f.__name__)
def test_edge_strength_range_and_location(fn):
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = [200, 180, 40]
    s = fn(image)
    assert s.shape == (40, 40) and s.dtype == np.float32
    assert s.min() >= 0 and s.max() == pytest.approx(1.0)
    cols = s.max(axis=0)
    assert cols[16:24].max() == pytest.approx(1.0)
    assert cols[:10].max() < 0.05 and cols[30:].max() < 0.05
    assert (fn(np.full((20, 30, 3), 77, np.uint8)) == 0).all()
    assert fn(np.zeros((1, 1, 3), np.uint8)).shape == (1, 1)


def _canny_sweep(image, sigma, ratio, levels):
    """The sweep as Canny calls, one per threshold pair (the form canny_strength replaces)."""
    light = cv2.GaussianBlur(rgb_to_lab(image)[:, :, 0], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    k = 16000 / float(np.hypot(gx, gy).max())
    dx, dy = np.rint(gx * k).astype(np.int16), np.rint(gy * k).astype(np.int16)
    for level in range(1, levels + 1):
        high = (level - 0.5) / levels * 16000
        yield level, cv2.Canny(dx, dy, ratio * high, high, L2gradient=True) > 0


def test_canny_strength_thresholded_is_canny_at_that_threshold():
    """The swept map holds every Canny output: strength >= k/levels is exactly Canny at the k-th pair."""
    rng = np.random.default_rng(3)
    photo = cv2.imread(str(Path(__file__).parents[1] / "bench/datasets/data/ccp_mini/images/0034.jpg"))[:, :, ::-1]
    images = [textured_image(rng)[0], rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), photo]
    for image in images:
        for sigma, ratio, levels in [(1.0, 0.4, 16), (2.0, 0.4, 64), (0.5, 0.8, 24), (1.0, 1.5, 8)]:
            s = edges.canny_strength(image, sigma=sigma, ratio=ratio, levels=levels)
            assert len(np.unique(s)) > 3  # graded, not one binary map
            for level, reference in _canny_sweep(image, sigma, ratio, levels):
                np.testing.assert_array_equal(s >= level / levels - 1e-6, reference, err_msg=f"{level=} {ratio=}")


def test_log_zero_crossings_are_thin():
    image = np.zeros((30, 30, 3), np.uint8)
    image[:, 15:] = 255
    s = edges.log_strength(image, sigma=2.0)
    row = s[15]
    assert (row > 0.5).sum() <= 2 and 13 <= int(np.argmax(row)) <= 16


def test_log_zero_crossings_equal_the_numpy_formulation():
    rng = np.random.default_rng(4)
    for shape in [(41, 57, 3), (1, 12, 3), (9, 1, 3), (16, 16, 1)]:
        lap = rng.normal(size=shape).astype(np.float32)
        lap[rng.random(shape) < 0.1] = 0.0  # zeros: no crossing
        flat = lap.reshape(-1)
        flat[1:12:2] = -flat[0:11:2]  # |a| = |b| across a crossing: the first of the pair takes it
        expected = np.zeros(shape, np.float32)  # the whole-array form (the first version)
        for axis in (0, 1):
            a, b = (lap[:-1], lap[1:]) if axis == 0 else (lap[:, :-1], lap[:, 1:])
            weight = np.where(a * b < 0, np.abs(a - b), 0.0).astype(np.float32)
            nearer = np.abs(a) <= np.abs(b)
            first, second = (expected[:-1], expected[1:]) if axis == 0 else (expected[:, :-1], expected[:, 1:])
            np.maximum(first, np.where(nearer, weight, 0.0), out=first)
            np.maximum(second, np.where(nearer, 0.0, weight), out=second)
        out = np.zeros(shape[:2], np.float32)
        edges._zero_crossings(lap, out)
        np.testing.assert_array_equal(out, expected.max(axis=2))


def test_watershed_partition_follows_edges():
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, 40:] = [255, 255, 255]
    regions = edges.watershed_partition(edges.sobel_strength(image), grid_cells=2)
    # no region straddles the step
    left, right = set(np.unique(regions[:, :38])), set(np.unique(regions[:, 42:]))
    assert not left & right
    # a flat map: every pixel is a marker pixel, so the markers (and regions) are the grid cells
    flat = edges.watershed_partition(np.zeros((10, 12), np.float32), grid_cells=2)
    np.testing.assert_array_equal(flat, grid_cells(10, 12, 2))


def test_edge_partition_on_working_copy():
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, 81:] = [255, 255, 255]
    method = edges.SobelWatershed(edges.EdgeSettings(work_size=80, grid_cells=4))
    regions = method.partition(image)
    assert regions.shape == (120, 160) and regions.max() + 1 == len(np.unique(regions))
    # the step survives the half-size copy within its 2-pixel resolution
    assert not set(np.unique(regions[:, :78])) & set(np.unique(regions[:, 84:]))
    # at full size (work_size None, or >= the image) it is the watershed of the full-size map
    expected = edges.watershed_partition(
        edges.sobel_strength(image), local_sigma=160 / 8, grid_cells=4, smooth_sigma=1.0
    )
    for work_size in (None, 160):
        full = edges.SobelWatershed(edges.EdgeSettings(work_size=work_size, grid_cells=4)).partition(image)
        np.testing.assert_array_equal(full, expected)
    # canny shrinks its full-size map instead: the same as the watershed of that map shrunk
    canny = edges.CannyWatershed(edges.WideEdgeSettings(work_size=80, grid_cells=4))
    shrunk = cv2.resize(canny.edge_strength(image), (80, 60), interpolation=cv2.INTER_AREA)
    expected = edges.watershed_partition(shrunk, smooth_sigma=0.5, local_sigma=80 / 8, grid_cells=4)
    np.testing.assert_array_equal(canny.partition(image), upscale_labels(expected, (120, 160)))


# ------------------------------------------------------------------------- region growing
def test_grid_seeds_and_grow():
    image = np.zeros((40, 60, 3), np.float32)
    image[:, 30:] = 50.0
    labels = np.full((40, 60), -1, np.int64)
    labels[20, 5] = 0
    labels[20, 55] = 1
    rg.grow(image, labels, threshold=10.0)
    assert (labels[:, :30] == 0).all() and (labels[:, 30:] == 1).all()
    seeds = rg.grid_seeds(np.random.default_rng(0).random((40, 60)).astype(np.float32), 6)
    assert len(seeds) == len(np.unique(seeds)) and seeds.max() < 40 * 60
    assert len(seeds) == 4 * 6


def _grow_numpy(colour, labels, threshold):
    """The whole-image numpy formulation of ``grow`` (its first version): the specification."""
    h, w, c = colour.shape
    flat_col, flat_lab = colour.reshape(-1, c).astype(np.float64), labels.ravel()
    n = int(flat_lab.max()) + 1
    assigned = flat_lab >= 0
    counts = np.bincount(flat_lab[assigned], minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(flat_lab[assigned], weights=flat_col[assigned, k], minlength=n) for k in range(c)], 1)
    while True:
        means = sums / np.maximum(counts, 1.0)[:, None]
        best_d, best_l = np.full(h * w, np.inf), np.full(h * w, -1, np.int64)
        padded = np.pad(labels, 1, constant_values=-1)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nl = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w].ravel()
            idx = np.flatnonzero((flat_lab < 0) & (nl >= 0))
            d = ((flat_col[idx] - means[nl[idx]]) ** 2).sum(axis=1)
            better = d < best_d[idx]
            best_d[idx[better]], best_l[idx[better]] = d[better], nl[idx[better]]
        join = np.flatnonzero((best_l >= 0) & (best_d < threshold * threshold))
        if join.size == 0:
            return labels
        new = best_l[join]
        flat_lab[join] = new
        counts += np.bincount(new, minlength=n)
        sums += np.stack([np.bincount(new, weights=flat_col[join, k], minlength=n) for k in range(c)], 1)


@pytest.mark.parametrize("threshold", [6.0, np.inf])
def test_grow_equals_the_numpy_formulation(threshold):
    rng = np.random.default_rng(5)
    for shape in [(37, 53), (1, 9), (12, 1)]:
        colour = (rng.normal(size=(*shape, 3)).cumsum(axis=0).cumsum(axis=1) * 3).astype(np.float32)
        labels = np.full(shape, -1, np.int64)
        seeds = rng.choice(labels.size, min(7, labels.size), replace=False)
        labels.ravel()[seeds] = np.arange(len(seeds)) % 5  # some regions start from two seeds
        expected = _grow_numpy(colour, labels.copy(), threshold)
        np.testing.assert_array_equal(rg.grow(colour, labels, threshold), expected)
        assert (labels == expected).all()  # in place
    colour = np.zeros((6, 8, 3), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):  # a transposed view: grow could not write into it
        rg.grow(colour, np.full((8, 6), -1, np.int64).T, threshold)


def test_region_growing_partition_two_colours_and_leftovers():
    image = np.zeros((50, 70, 3), np.uint8)
    image[:, 35:] = [250, 250, 250]
    image[20:30, 10:20] = [255, 0, 0]  # a blob no grid seed may fall into
    r = rg.region_growing_partition(image, seed_cells=4, threshold=8.0)
    assert set(np.unique(r[:, :9])).isdisjoint(np.unique(r[:, 36:]))
    assert np.unique(r[21:29, 11:19]).size == 1
    assert r[25, 15] != r[5, 5]


# ------------------------------------------------------------------------- mser
def test_paint_regions_finest_wins_and_fill():
    big = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2)  # (x, y) all pixels
    small = np.stack(np.meshgrid(np.arange(2, 5), np.arange(2, 5)), -1).reshape(-1, 2)
    ids = mser.paint_regions([small, big], (10, 12))
    assert (ids[2:5, 2:5] == 1).all()  # the smaller region has the higher rank
    assert ids[0, 0] == 0 and (ids[:, 10:] == -1).all()
    filled = mser.fill_nearest(ids)
    assert (filled >= 0).all() and filled[0, 11] == 0
    assert (mser.paint_regions([], (3, 4)) == -1).all()


def test_paint_regions_drops_near_duplicates():
    yy, xx = np.mgrid[0:20, 0:20]
    pts = lambda m: np.stack([xx[m], yy[m]], 1)  # noqa: E731
    core = pts((abs(yy - 10) <= 3) & (abs(xx - 10) <= 3))  # 49 px
    ring = pts((abs(yy - 10) <= 4) & (abs(xx - 10) <= 4))  # 81 px, the same blob one level up
    ids = mser.paint_regions([core, ring], (20, 20))
    assert len(np.unique(ids[ids >= 0])) == 2
    ids = mser.paint_regions([core, ring], (20, 20), min_visible_frac=0.5)
    assert len(np.unique(ids[ids >= 0])) == 1 and (ids >= 0).sum() == 49


@pytest.mark.parametrize("min_visible_frac", [0.0, 0.4])
def test_paint_regions_equals_the_maximum_at_form(min_visible_frac):
    """The compiled painter gives what np.maximum.at over every point gives: the highest rank
    (smallest region, first of equal sizes) wins each pixel; points off the image are clipped."""
    rng = np.random.default_rng(3)
    h, w = 30, 40
    regions = []
    for _ in range(60):  # nested and overlapping rectangles, equal sizes among them, some past the border
        y0, x0 = rng.integers(-3, h), rng.integers(-3, w)
        hh, ww = rng.integers(1, 12, size=2)
        yy, xx = np.mgrid[y0 : y0 + hh, x0 : x0 + ww]
        regions.append(np.stack([xx.ravel(), yy.ravel()], 1).astype(np.int32))
    regions += regions[:5]  # duplicates: the later copy ranks after its twin
    sizes = np.array([len(r) for r in regions])
    order = np.argsort(-sizes, kind="stable")
    rank_of = np.empty(len(regions), np.int64)
    rank_of[order] = np.arange(len(regions))
    pts = np.concatenate(regions).astype(np.int64)
    ranks = np.repeat(rank_of, sizes)
    flat = np.clip(pts[:, 1], 0, h - 1) * w + np.clip(pts[:, 0], 0, w - 1)
    expected = np.full(h * w, -1, np.int64)
    np.maximum.at(expected, flat, ranks)
    if min_visible_frac:
        keep = (np.bincount(expected[expected >= 0], minlength=len(regions)) >= min_visible_frac * sizes[order])[ranks]
        assert not keep.all()
        expected[:] = -1
        np.maximum.at(expected, flat[keep], ranks[keep])
    np.testing.assert_array_equal(mser.paint_regions(regions, (h, w), min_visible_frac), expected.reshape(h, w))


def test_mser_partition_finds_blobs():
    rng = np.random.default_rng(0)
    image = np.full((60, 80, 3), 128, np.float32)
    image[10:25, 10:30] = 20
    image[35:55, 45:75] = 240
    image = cv2.GaussianBlur(image, (0, 0), 1.5) + rng.normal(0, 2, image.shape)
    r = mser.mser_partition(np.clip(image, 0, 255).astype(np.uint8))
    dark, bright = np.unique(r[14:21, 15:25]), np.unique(r[40:50, 50:70])
    # each blob is found: its regions stay inside it (a blob larger than a grid cell is cut
    # by the grid, so it may be several regions), apart from the background
    for ids, (y0, y1, x0, x1) in ((dark, (10, 25, 10, 30)), (bright, (35, 55, 45, 75))):
        ys, xs = np.nonzero(np.isin(r, ids))
        assert ys.min() >= y0 - 2 and ys.max() < y1 + 2 and xs.min() >= x0 - 2 and xs.max() < x1 + 2
    assert r[2, 2] not in set(dark) | set(bright)
    # a flat image has no stable region: a grid, not an error
    flat = mser.mser_partition(np.full((40, 40, 3), 9, np.uint8))
    assert flat.max() >= 1 and flat.min() == 0


def test_mser_grid_cells_setting_reaches_the_partition():
    flat = np.full((40, 40, 3), 9, np.uint8)  # no stable region: the partition is the grid
    coarse = mser.Mser(mser.MserSettings(grid_cells=2)).partition(flat)
    fine = mser.Mser(mser.MserSettings(grid_cells=8)).partition(flat)
    assert coarse.max() + 1 < fine.max() + 1
    with pytest.raises(ValueError, match="grid_cells"):
        mser.MserSettings(grid_cells=0)


def test_mser_cut_large_cuts_only_regions_larger_than_a_cell():
    ids = np.zeros((40, 40), np.int64)
    ids[:4, :4] = 1  # 16 px, smaller than a cell of a 4-cell grid (100 px): kept whole
    cut = mser.cut_large(ids, 4)
    assert cut.max() + 1 == 16 + 1 and len(np.unique(cut[:4, :4])) == 1
    cells = grid_cells(40, 40, 4)
    big = ids == 0  # the rest: one piece per grid cell
    assert len(set(zip(cut[big], cells[big]))) == len(np.unique(cut[big])) == 16


# ------------------------------------------------------------------------- superpixels
def test_superpixel_partition_counts():
    image = textured_image(np.random.default_rng(1), 96, 128)[0]
    r = spc.superpixel_partition(image, n_segments=100)
    assert 50 <= r.max() + 1 <= 150
    # on a working copy (half size here) the superpixels come back at the image's size
    half = spc.superpixel_partition(image, n_segments=100, work_size=64)
    assert half.shape == (96, 128) and 50 <= half.max() + 1 <= 150
    assert half.max() + 1 == len(np.unique(half))
    # small images are not cut below min_segment_area on average
    assert spc.superpixel_partition(image[:16, :16], n_segments=300, min_segment_area=32).max() + 1 <= 16
    noise = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert spc.superpixel_partition(noise, n_segments=60).max() + 1 >= 20  # SLICO does not collapse noise


def test_superpixel_partition_without_contrib_says_what_to_install(monkeypatch):
    from bench.method import MethodError

    monkeypatch.delattr(cv2, "ximgproc")
    with pytest.raises(MethodError, match="pip install opencv-contrib-python-headless"):
        spc.superpixel_partition(textured_image(np.random.default_rng(1), 48, 64)[0])


def test_edge_features_contrast():
    means = np.array([[50.0, 0, 0], [52.0, 0, 0], [90.0, 20, 0]])
    pairs = np.array([[0, 1], [1, 2]])
    f = spc.edge_features(means, pairs, np.array([10.0, 10.0]), mean_area=100.0)
    assert f.shape == (2, 2)
    np.testing.assert_allclose(f[:, 1], 1.0)  # 10 pixels of boundary = one side of a 10x10 superpixel
    assert f[0, 0] > f[1, 0] > 0
    assert spc.edge_features(means, np.zeros((0, 2), int), np.zeros(0), 100.0).shape == (0, 2)


def test_unary_costs_finite():
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    u = spc.unary_costs(p)
    assert np.isfinite(u).all() and (u >= 0).all()
    assert np.array_equal(u.argmin(axis=1), p.argmax(axis=1))
