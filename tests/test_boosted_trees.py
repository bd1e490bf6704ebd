"""QuickScorer over a histogram-boosting classifier's trees gives scikit-learn's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from baselines.boosted_trees import MAX_LEAVES, FastBoostedPredictor, ScoringTables
from baselines.region_classifier import RegionClassifier


def _data(classes: int, n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=n), np.linspace(-1, 1, classes - 1))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values: the trees learn where NaN goes
    return X, y


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("leaves", [2, 15, MAX_LEAVES - 1, MAX_LEAVES])
def test_quickscorer_equals_predict_proba_bit_for_bit(classes, leaves):
    X, y = _data(classes)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=leaves, random_state=0).fit(X, y)
    fast = FastBoostedPredictor(model)
    tables = fast.tables
    assert tables is not None
    trees = model.n_iter_ * model.n_trees_per_iteration_
    assert len(tables.leaf_start) == trees + 1
    assert np.diff(tables.leaf_start).max() == leaves  # the largest tree uses every bit it may
    assert np.isinf(tables.threshold[tables.start[1:] - 1]).all()  # each feature's sentinel
    test, _ = _data(classes, n=400, seed=1)
    test[:7] = np.nan  # whole rows missing
    test[7:12] = np.inf
    test[12:17] = -np.inf
    splits = tables.threshold[tables.start[0] : tables.start[1] - 1]  # values exactly on a split: "at most" goes left
    assert len(splits)
    test[17 : 17 + len(splits[:50]), 0] = splits[:50]
    expected = model.predict_proba(test)
    got = fast.predict_proba(test)
    np.testing.assert_array_equal(got, expected)
    assert fast.predict_proba(test[:0]).shape == (0, classes)  # scikit-learn refuses no rows
    with pytest.raises(ValueError, match="fitted on 6 features"):
        fast.predict_proba(test[:, :5])


def test_tables_fall_back_for_categorical_splits():
    rng = np.random.default_rng(2)
    X = np.stack([rng.integers(0, 6, 800).astype(float), rng.normal(size=800)], axis=1)
    y = (X[:, 0] % 2 == 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0], random_state=0).fit(X, y)
    assert ScoringTables.from_model(model) is None
    fast = FastBoostedPredictor(model)  # the model's own predict_proba then
    np.testing.assert_array_equal(fast.predict_proba(X), model.predict_proba(X))


def test_tables_fall_back_for_trees_wider_than_a_mask():
    X, y = _data(3)
    model = HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=MAX_LEAVES + 8, random_state=0).fit(X, y)
    assert max(p.get_n_leaf_nodes() for it in model._predictors for p in it) > MAX_LEAVES
    assert ScoringTables.from_model(model) is None
    fast = FastBoostedPredictor(model)
    np.testing.assert_array_equal(fast.predict_proba(X), model.predict_proba(X))


def test_tables_fall_back_before_fitting():
    assert FastBoostedPredictor(HistGradientBoostingClassifier()).tables is None


def test_region_classifier_uses_the_tables_and_keeps_its_answers(tmp_path):
    X, y = _data(4)
    X = np.nan_to_num(X)
    clf = RegionClassifier("hgb", 6, n_estimators=20).fit(X, y, np.ones(len(y)))
    proba = clf.predict_proba(X)
    assert isinstance(clf._predictor, FastBoostedPredictor) and clf._predictor.tables is not None
    np.testing.assert_array_equal(proba[:, clf.classes_], clf.model.predict_proba(X))
    clf.save(tmp_path)
    loaded = RegionClassifier.load(tmp_path, "hgb", 6, 20)
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    np.testing.assert_array_equal(loaded.predict(X), clf.classes_[proba[:, clf.classes_].argmax(1)])
