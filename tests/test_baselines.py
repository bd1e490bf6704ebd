"""The classical two-stage methods: partitions, region features and labelling, robustness.

Everything runs on small synthetic textured images generated here (classes that differ in
colour, in texture, or only in texture), so the file needs no data and stays fast.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import baselines.edges as edges
import baselines.mser as mser
import baselines.region_growing as rg
import baselines.superpixel_crf as spc
from baselines.features import (
    as_rgb,
    context_features,
    feature_names,
    region_adjacency,
    region_features,
    region_label_histogram,
    region_majority_labels,
    relabel_contiguous,
)
from baselines.labelling import RegionLabeller
from baselines.majority import MajorityClass
from bench.datasets.types import DatasetInfo, InMemorySplit, Sample
from bench.methods import MethodError, create_method

METHODS = ["sobel", "laplacian", "log", "region-growing", "mser", "superpixel-unary", "superpixel-crf"]

INFO = DatasetInfo(
    "textured", ("sky", "grass", "brick", "moss"),
    np.array([[80, 120, 220], [40, 160, 40], [180, 70, 50], [40, 160, 40]], np.uint8), 255,
)


# ------------------------------------------------------------------------- synthetic data
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


def confusion(preds, labels, k: int = 4) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    for p, t in zip(preds, labels):
        ok = (t >= 0) & (t < k)
        cm += np.bincount(t[ok].astype(np.int64) * k + p[ok].astype(np.int64), minlength=k * k).reshape(k, k)
    return cm


def miou(preds, labels, k: int = 4) -> float:
    cm = confusion(preds, labels, k)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean())


def pixel_acc(pred, label) -> float:
    ok = label != 255
    return float((pred[ok] == label[ok]).mean())


@pytest.fixture(scope="module")
def train_split():
    return textured_split(12, 0, "train")


@pytest.fixture(scope="module")
def test_split():
    return textured_split(6, 1, "test")


@pytest.fixture(scope="module", params=METHODS)
def fitted(request, train_split):
    method = create_method(request.param, progress=False)
    method.fit(train_split)
    return method


# ------------------------------------------------------------------------- methods
def test_all_registered():
    from bench.methods import method_class, method_names

    for name in METHODS:
        assert name in method_names() and issubclass(method_class(name), RegionLabeller)
        assert method_class(name).kind == "classical"


def test_predict_with_stages_times_each_stage_and_predicts_the_same(fitted, test_split):
    image = test_split[0].image
    labels, seconds = fitted.predict_with_stages(image)
    np.testing.assert_array_equal(labels, fitted.predict(image))
    expected = {"partition", "features", "classifier", "total"}
    if fitted.name in ("sobel", "laplacian", "log"):
        expected.add("edge map")  # timed inside the partition
        assert seconds["edge map"] <= seconds["partition"]
    if fitted.name.startswith("superpixel"):  # the unaries-only variant runs the same inference, no pairwise
        expected.add("crf inference")
    assert set(seconds) == expected, fitted.name
    assert all(v >= 0 for v in seconds.values())
    top = seconds["partition"] + seconds["features"] + seconds["classifier"] + seconds.get("crf inference", 0.0)
    assert top <= seconds["total"]
    assert fitted._stage_seconds is None  # timing is off again for plain predict


def test_beats_majority(fitted, train_split, test_split):
    majority = MajorityClass(progress=False)
    majority.fit(train_split)
    labels = [s.label for s in test_split]
    base = miou([majority.predict(s.image) for s in test_split], labels)
    preds = [fitted.predict(s.image) for s in test_split]
    score = miou(preds, labels)
    assert score > base + 0.3, (fitted.name, score, base)
    assert all(p.shape == s.label.shape and p.dtype == np.int32 for p, s in zip(preds, test_split))
    assert all(p.min() >= 0 and p.max() < INFO.num_classes for p in preds)


def test_partition_properties(fitted, test_split):
    rng = np.random.default_rng(3)
    images = [s.image for s in list(test_split)[:2]] + [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)]
    for image in images:
        regions = fitted.partition(image)
        assert regions.shape == image.shape[:2]
        assert np.issubdtype(regions.dtype, np.integer)
        n = int(regions.max()) + 1
        assert regions.min() == 0
        assert np.array_equal(np.unique(regions), np.arange(n)), "ids must be 0..n-1, all used"
        assert 1 <= n <= regions.size


def test_oracle_at_least_method(fitted, test_split):
    for s in test_split:
        oracle = fitted.partition_oracle(s.image, s.label)
        pred = fitted.predict(s.image)
        assert oracle.shape == s.label.shape
        assert pixel_acc(oracle, s.label) >= pixel_acc(pred, s.label) - 1e-12
        # every region is constant in the oracle map
        regions = fitted.partition(s.image)
        hist = region_label_histogram(regions, oracle, 256)
        assert ((hist > 0).sum(axis=1) == 1).all()


def test_oracle_all_ignore_region_gets_ignore(fitted):
    image = np.zeros((20, 30, 3), np.uint8)
    label = np.full((20, 30), 255, np.uint8)
    assert (fitted.partition_oracle(image, label) == 255).all()
    with pytest.raises(ValueError):
        fitted.partition_oracle(image, label[:10])


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


def test_odd_inputs_give_right_size(fitted):
    rng = np.random.default_rng(0)
    for name, make in BAD_OK_INPUTS.items():
        image = make(rng)
        pred = fitted.predict(image)
        assert pred.shape == image.shape[:2], (fitted.name, name)
        assert pred.min() >= 0 and pred.max() < INFO.num_classes, (fitted.name, name)
        oracle = fitted.partition_oracle(image, np.zeros(image.shape[:2], np.uint8))
        assert oracle.shape == image.shape[:2]


def test_bad_inputs_raise_value_error(fitted):
    for name, image in BAD_INPUTS.items():
        with pytest.raises(ValueError, match="image|dtype"):
            fitted.predict(image)


def test_grey_and_rgba_match_rgb(fitted, test_split):
    rgb = test_split[0].image
    alpha = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    assert np.array_equal(fitted.predict(alpha), fitted.predict(rgb))
    grey = rgb[:, :, 1]
    assert np.array_equal(fitted.predict(grey), fitted.predict(np.dstack([grey] * 3)))


def test_extra_metrics_and_parameters(fitted, test_split):
    fitted.predict(test_split[0].image)
    extra = fitted.extra_metrics()
    assert extra["regions_per_image"] > 1
    assert extra["train_regions_per_image"] > 1
    assert fitted.num_parameters() > 0


@pytest.mark.parametrize("name", METHODS)
def test_predict_before_fit(name):
    with pytest.raises(MethodError, match="before fit"):
        create_method(name, progress=False).predict(np.zeros((8, 8, 3), np.uint8))


COMMON_BAD = [
    {"classifier": "svm"}, {"max_train_images": 0}, {"max_train_regions": 0}, {"n_estimators": 0},
    {"sample_weight": "pixels"}, {"class_weight": "auto"}, {"no_such_setting": 1}, {"classifier": 3},
]
SPECIFIC_BAD = {
    "sobel": [{"sigma": -1.0}, {"low_quantile": 0.0}, {"low_quantile": 1.5}, {"grid_cells": 0}, {"local_ratio": 2.5}],
    "laplacian": [{"smooth_sigma": -0.5}, {"min_marker_frac": 0.7}],
    "log": [{"sigma": -2.0}, {"grid_cells": -3}],
    "region-growing": [{"threshold": 0.0}, {"seed_cells": 0}, {"work_size": 4}, {"merge_threshold": -1.0},
                       {"min_region_frac": 0.9}],
    "mser": [{"delta": 0}, {"min_area_frac": 0.0}, {"min_area_frac": 0.6, "max_area_frac": 0.5},
             {"max_area_frac": 1.5}, {"max_variation": 0.0}, {"work_size": 2}, {"min_visible_frac": 1.5},
             {"min_diversity": 1.0}],
    "superpixel-unary": [{"n_segments": 0}, {"compactness": 0.0}, {"unary_folds": 1}],
    "superpixel-crf": [{"ssvm_epochs": 0}, {"ssvm_lr": 0.0}, {"ssvm_reg": -1.0}, {"min_segment_area": 0},
                       {"max_ssvm_images": 0}],
}


@pytest.mark.parametrize("name", METHODS)
def test_bad_settings_raise(name):
    for bad in COMMON_BAD + SPECIFIC_BAD[name]:
        with pytest.raises(MethodError):
            create_method(name, bad)
    # and the Settings dataclass itself raises ValueError (MethodError wraps it)
    cls = type(create_method(name))
    with pytest.raises(ValueError):
        cls.Settings(classifier="nope")
    # defaults are valid and every field is recorded
    assert dataclasses.asdict(cls.Settings())


def test_max_train_images_caps_loaded_images(train_split):
    loaded: list[int] = []

    class Counting(InMemorySplit):
        def load(self, index):
            loaded.append(index)
            return super().load(index)

    split = Counting(INFO, "train", train_split.samples)
    m = create_method("sobel", {"max_train_images": 3, "max_train_regions": 50}, progress=False)
    m.fit(split)
    assert len(loaded) == 3 and len(set(loaded)) == 3
    assert m.predict(train_split[0].image).shape == train_split[0].label.shape


def test_fit_is_deterministic(train_split, test_split):
    preds = []
    for _ in range(2):
        m = create_method("region-growing", {"max_train_images": 6}, progress=False, seed=5)
        m.fit(train_split)
        preds.append(m.predict(test_split[0].image))
    assert np.array_equal(*preds)


def test_single_class_training_split():
    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), np.full((24, 32), 2, np.uint8), f"s{i}")
               for i in range(3)]
    for name in ("sobel", "superpixel-crf"):
        m = create_method(name, progress=False)
        m.fit(InMemorySplit(INFO, "train", samples))
        assert (m.predict(samples[0].image) == 2).all()


def test_all_ignore_training_split_is_clear_error():
    samples = [Sample(np.zeros((16, 16, 3), np.uint8), np.full((16, 16), 255, np.uint8), "s0")]
    with pytest.raises(ValueError, match="no labelled training region"):
        create_method("mser", progress=False).fit(InMemorySplit(INFO, "train", samples))


def test_shapes_dataset_if_available():
    datasets = pytest.importorskip("bench.datasets")
    try:
        ds = datasets.get_dataset("shapes")
    except Exception as e:  # the dataset is written by another worker
        pytest.skip(f"shapes dataset unavailable: {e}")
    train = ds.split("train")
    val = ds.split("val")
    tr = InMemorySplit(train.info, "train", [train[i] for i in range(12)])
    va = [val[i] for i in range(6)]
    k = train.info.num_classes
    m = create_method("superpixel-unary", progress=False)
    m.fit(tr)
    maj = MajorityClass(progress=False)
    maj.fit(tr)
    labels = [s.label for s in va]
    assert miou([m.predict(s.image) for s in va], labels, k) > miou([maj.predict(s.image) for s in va], labels, k) + 0.1


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
    from baselines.features import rgb_to_lab

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


def test_region_features_tiny_and_flat_images():
    for shape in [(1, 1, 3), (2, 5, 3), (5, 2, 3)]:
        f = region_features(np.full(shape, 90, np.uint8), np.zeros(shape[:2], np.int32))
        assert f.shape == (1, len(feature_names())) and np.isfinite(f).all()


def test_region_majority_labels():
    regions = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    label = np.array([[3, 3, 255, 255], [1, 0, 7, 255]])
    maj = region_majority_labels(regions, label, num_classes=4, ignore_index=255)
    # region 2 has one valid vote (0; 7 is out of range), region 1 is all ignore
    assert maj.tolist() == [3, -1, 0]
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


def test_context_option_runs(train_split, test_split):
    m = create_method("sobel", {"context": True, "max_train_images": 4}, progress=False)
    m.fit(train_split)
    assert m.predict(test_split[0].image).shape == test_split[0].label.shape


@pytest.mark.parametrize("classifier", ["rf", "hgb", "logreg"])
def test_other_classifiers(classifier, train_split, test_split):
    m = create_method("sobel", {"classifier": classifier, "max_train_images": 6, "n_estimators": 20}, progress=False)
    m.fit(train_split)
    preds = [m.predict(s.image) for s in test_split]
    assert miou(preds, [s.label for s in test_split]) > 0.5
    assert m.num_parameters() > 0


# ------------------------------------------------------------------------- edges
STRENGTHS = [edges.sobel_strength, edges.laplacian_strength, edges.log_strength, edges.canny_edges, edges.canny_strength]


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


def test_edge_strength_by_name_and_method():
    image = textured_image(np.random.default_rng(0))[0]
    for name in ("sobel", "laplacian", "log", "canny"):
        assert edges.edge_strength(image, name).shape == image.shape[:2]
    with pytest.raises(ValueError, match="unknown edge method"):
        edges.edge_strength(image, "prewitt")
    m = create_method("log", progress=False)
    np.testing.assert_array_equal(m.edge_strength(image), edges.log_strength(image, sigma=m.settings.sigma))


def test_canny_strength_thresholded_is_canny_at_that_threshold():
    """The swept map holds every Canny output: strength >= t is exactly Canny at high t, low 0.4 t."""
    import cv2

    image = textured_image(np.random.default_rng(3))[0]
    s = edges.canny_strength(image, sigma=1.0, ratio=0.4, levels=16)
    assert len(np.unique(s)) > 5  # graded, not one binary map
    light = cv2.GaussianBlur(edges.rgb_to_lab(image)[:, :, 0], (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    k = 16000 / float(np.hypot(gx, gy).max())
    dx, dy = np.rint(gx * k).astype(np.int16), np.rint(gy * k).astype(np.int16)
    for level in (2, 5, 9):
        high = (level - 0.5) / 16 * 16000
        reference = cv2.Canny(dx, dy, 0.4 * high, high, L2gradient=True) > 0
        np.testing.assert_array_equal(s >= level / 16 - 1e-6, reference)


def test_log_zero_crossings_are_thin():
    image = np.zeros((30, 30, 3), np.uint8)
    image[:, 15:] = 255
    s = edges.log_strength(image, sigma=2.0)
    row = s[15]
    assert (row > 0.5).sum() <= 2 and 13 <= int(np.argmax(row)) <= 16


def test_watershed_partition_follows_edges():
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, 40:] = [255, 255, 255]
    regions = edges.watershed_partition(edges.sobel_strength(image), grid_cells=2)
    # no region straddles the step
    left, right = set(np.unique(regions[:, :38])), set(np.unique(regions[:, 42:]))
    assert not left & right
    assert edges.watershed_partition(np.zeros((10, 10), np.float32)).max() >= 0


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


def test_mser_partition_finds_blobs():
    rng = np.random.default_rng(0)
    image = np.full((60, 80, 3), 128, np.float32)
    image[10:25, 10:30] = 20
    image[35:55, 45:75] = 240
    image = cv2.GaussianBlur(image, (0, 0), 1.5) + rng.normal(0, 2, image.shape)
    r = mser.mser_partition(np.clip(image, 0, 255).astype(np.uint8))
    dark, bright = np.unique(r[14:21, 15:25]), np.unique(r[40:50, 50:70])
    assert dark.size == 1 and bright.size == 1
    assert len({dark[0], bright[0], r[2, 2]}) == 3
    # a flat image has no stable region: a grid, not an error
    flat = mser.mser_partition(np.full((40, 40, 3), 9, np.uint8))
    assert flat.max() >= 1 and flat.min() == 0


# ------------------------------------------------------------------------- superpixels
def test_superpixel_partition_counts():
    image = textured_image(np.random.default_rng(1), 96, 128)[0]
    r = spc.superpixel_partition(image, n_segments=100)
    assert 50 <= r.max() + 1 <= 150
    # small images are not cut below min_segment_area on average
    assert spc.superpixel_partition(image[:16, :16], n_segments=300, min_segment_area=32).max() + 1 <= 16
    noise = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert spc.superpixel_partition(noise, n_segments=60).max() + 1 >= 20  # SLICO does not collapse noise


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
