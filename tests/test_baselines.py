"""The classical methods through the method interface: registry and capabilities, fit and
predict, the partition oracle, stage timing, odd and bad inputs, settings.

Everything but one test runs on small synthetic textured images (tests/baseline_data.py:
classes that differ in colour, in texture, or only in texture), so the file stays fast.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import baselines.edges as edges
from baseline_data import BAD_INPUTS, BAD_OK_INPUTS, INFO, textured_image, textured_split
from baselines.features import region_label_histogram
from baselines.labelling import RegionLabeller
from bench.datasets import get_dataset
from bench.datasets.types import InMemorySplit, Sample, Split
from bench.method import FitContext, Method, MethodError, create_method, method_class, method_names

EDGE_METHODS = ["sobel", "laplacian", "log", "canny"]
METHODS = EDGE_METHODS + ["region-growing", "mser", "superpixel-unary", "superpixel-crf"]
#: the module function behind each edge method, in the order of EDGE_METHODS
EDGE_FUNCTIONS = [edges.sobel_strength, edges.laplacian_strength, edges.log_strength, edges.canny_strength]


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


def fit(name: str, train: Split, settings: dict | None = None, seed: int = 0) -> Method:
    """A method created from settings and fitted on ``train`` (no progress bars)."""
    method = create_method(name, settings)
    method.fit(train, None, FitContext(seed=seed, progress=False))
    return method


@pytest.fixture(scope="module")
def train_split():
    return textured_split(12, 0, "train")


@pytest.fixture(scope="module")
def test_split():
    return textured_split(6, 1, "test")


@pytest.fixture(scope="module", params=METHODS)
def fitted(request, train_split):
    return fit(request.param, train_split)


# ------------------------------------------------------------------------- methods
def test_all_registered():
    for name in METHODS:
        cls = method_class(name)
        assert name in method_names() and issubclass(cls, RegionLabeller)
        assert cls.kind == "classical" and cls.capabilities.partition_oracle and cls.capabilities.stages
        assert cls.capabilities.edge_map == (name in EDGE_METHODS)
        assert not cls.capabilities.validation and not cls.capabilities.network
    majority = method_class("majority")
    assert majority.kind == "classical"
    assert not majority.capabilities.partition_oracle and not majority.capabilities.stages


def test_predict_with_stages_times_each_stage_and_predicts_the_same(fitted, test_split):
    image = test_split[0].image
    labels, seconds = fitted.predict_with_stages(image)
    np.testing.assert_array_equal(labels, fitted.predict(image))
    expected = {"partition", "features", "classifier", "total"}
    if fitted.name in EDGE_METHODS:
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
    majority = fit("majority", train_split)
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
        create_method(name).predict(np.zeros((8, 8, 3), np.uint8))


COMMON_BAD = [
    {"classifier": "svm"}, {"max_train_images": 0}, {"max_train_regions": 0}, {"n_estimators": 0},
    {"sample_weight": "pixels"}, {"class_weight": "auto"}, {"no_such_setting": 1}, {"classifier": 3},
    {"learning_rate": 0.0}, {"learning_rate": 1.5},
]
SPECIFIC_BAD = {
    "sobel": [{"sigma": -1.0}, {"low_quantile": 0.0}, {"low_quantile": 1.5}, {"grid_cells": 0}, {"local_ratio": 2.5},
              {"work_size": 4}],
    "laplacian": [{"smooth_sigma": -0.5}, {"min_marker_frac": 0.7}],
    "log": [{"sigma": -2.0}, {"grid_cells": -3}],
    "canny": [{"sigma": -1.0}, {"low_quantile": 2.0}, {"work_size": 7}],
    "region-growing": [{"threshold": 0.0}, {"seed_cells": 0}, {"work_size": 4}, {"merge_threshold": -1.0},
                       {"min_region_frac": 0.9}],
    "mser": [{"delta": 0}, {"min_area_frac": 0.0}, {"min_area_frac": 0.6, "max_area_frac": 0.5},
             {"max_area_frac": 1.5}, {"max_variation": 0.0}, {"work_size": 2}, {"min_visible_frac": 1.5},
             {"min_diversity": 1.0}],
    "superpixel-unary": [{"n_segments": 0}, {"compactness": 0.0}, {"unary_folds": 1}, {"work_size": 2}],
    "superpixel-crf": [{"ssvm_epochs": 0}, {"ssvm_lr": 0.0}, {"ssvm_reg": -1.0}, {"min_segment_area": 0},
                       {"max_ssvm_images": 0}],
}


@pytest.mark.parametrize("name", METHODS)
def test_bad_settings_raise(name):
    for bad in COMMON_BAD + SPECIFIC_BAD[name]:
        with pytest.raises(MethodError):
            create_method(name, bad)
    # and the Settings dataclass itself raises ValueError (MethodError wraps it)
    cls = method_class(name)
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
    m = fit("sobel", split, {"max_train_images": 3, "max_train_regions": 50})
    assert len(loaded) == 3 and len(set(loaded)) == 3
    assert m.predict(train_split[0].image).shape == train_split[0].label.shape


def test_fit_is_deterministic(train_split, test_split):
    preds = []
    for _ in range(2):
        m = fit("region-growing", train_split, {"max_train_images": 6}, seed=5)
        preds.append(m.predict(test_split[0].image))
    assert np.array_equal(*preds)


def test_single_class_training_split():
    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), np.full((24, 32), 2, np.uint8), f"s{i}")
               for i in range(3)]
    for name in ("sobel", "superpixel-crf"):
        m = fit(name, InMemorySplit(INFO, "train", samples))
        assert (m.predict(samples[0].image) == 2).all()


def test_all_ignore_training_split_is_clear_error():
    samples = [Sample(np.zeros((16, 16, 3), np.uint8), np.full((16, 16), 255, np.uint8), "s0")]
    with pytest.raises(ValueError, match="no labelled training region"):
        fit("mser", InMemorySplit(INFO, "train", samples))


def test_beats_majority_on_shapes_dataset():
    ds = get_dataset("shapes")
    train = ds.split("train")
    val = ds.split("val")
    tr = InMemorySplit(train.info, "train", [train[i] for i in range(12)])
    va = [val[i] for i in range(6)]
    k = train.info.num_classes
    m = fit("superpixel-unary", tr)
    maj = fit("majority", tr)
    labels = [s.label for s in va]
    assert miou([m.predict(s.image) for s in va], labels, k) > miou([maj.predict(s.image) for s in va], labels, k) + 0.1


def test_context_option_runs(train_split, test_split):
    m = fit("sobel", train_split, {"context": True, "max_train_images": 4})
    assert m.predict(test_split[0].image).shape == test_split[0].label.shape


@pytest.mark.parametrize("classifier", ["rf", "hgb", "logreg"])
def test_other_classifiers(classifier, train_split, test_split):
    m = fit("sobel", train_split, {"classifier": classifier, "max_train_images": 6, "n_estimators": 20})
    preds = [m.predict(s.image) for s in test_split]
    assert miou(preds, [s.label for s in test_split]) > 0.5
    assert m.num_parameters() > 0


# ------------------------------------------------------------------------- edge maps
@pytest.mark.parametrize("name, fn", list(zip(EDGE_METHODS, EDGE_FUNCTIONS)), ids=EDGE_METHODS)
def test_edge_methods_give_their_operator_unfitted(name, fn):
    """The BSDS500 benchmark reaches every operator through the registry, with default settings:
    the maps must be the module functions' own defaults (its published numbers)."""
    image = textured_image(np.random.default_rng(0))[0]
    np.testing.assert_array_equal(create_method(name).edge_strength(image), fn(image))
    sharp = create_method(name, {"sigma": 0.5}).edge_strength(image)
    np.testing.assert_array_equal(sharp, fn(image, sigma=0.5))
    assert not np.array_equal(sharp, fn(image))
    assert create_method(name).edge_strength(image[:, :, 0]).shape == image.shape[:2]  # grey is fine
