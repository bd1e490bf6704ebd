"""The region classifier's preparation of features for scikit-learn's histogram boosting."""

from __future__ import annotations

import numpy as np

from baselines.region_classifier import MAX_BINS, RegionClassifier, coarsen_for_binning


def test_coarsen_for_binning_keeps_order_and_few_valued_columns():
    rng = np.random.default_rng(0)
    X = np.stack([rng.random(3000), rng.integers(0, 5, 3000).astype(float), rng.normal(size=3000) ** 3], axis=1)
    out = coarsen_for_binning(X)
    assert out.shape == X.shape
    np.testing.assert_array_equal(out[:, 1], X[:, 1])  # 5 values: as they are
    for j in (0, 2):
        assert len(np.unique(out[:, j])) <= MAX_BINS
        order = np.argsort(X[:, j], kind="stable")
        assert (np.diff(out[order, j]) >= 0).all()  # monotone: the split order is kept
        # each value moves at most about one bin's worth of ranks
        ranks = np.searchsorted(np.sort(X[:, j]), out[:, j])
        assert np.abs(ranks - np.argsort(order)).max() <= 3000 / MAX_BINS + 1
    small = rng.random((100, 2))
    np.testing.assert_array_equal(coarsen_for_binning(small), small)


def test_hgb_fit_on_coarsened_features_still_separates_classes():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 4))
    y = (X[:, 0] + 0.1 * X[:, 1] > 0.3).astype(int) * 2  # classes 0 and 2 of 3
    clf = RegionClassifier("hgb", 3, n_estimators=20).fit(X, y, np.ones(len(y)))
    proba = clf.predict_proba(X)
    assert proba.shape == (2000, 3) and (proba[:, 1] == 0).all()
    assert (clf.predict(X) == y).mean() > 0.97
