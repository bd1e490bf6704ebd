"""The region classifier of the classical methods: a scikit-learn classifier over region
features that always speaks in dataset classes, saved in safe formats, run on one thread."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from baselines.boosted_trees import FastBoostedPredictor
from baselines.state_files import load_arrays, load_estimator, save_arrays, save_estimator


#: scikit-learn's histogram boosting puts each feature into at most this many bins
MAX_BINS = 255


def coarsen_for_binning(X: np.ndarray, max_bins: int = MAX_BINS) -> np.ndarray:
    """X with every column that has more than ``max_bins`` distinct values replaced by the
    (unweighted) quantile of its bin: level (b + 1/2) / max_bins for the b-th of ``max_bins``
    equal-count bins; other columns as they are.

    Why: scikit-learn 1.9's ``HistGradientBoostingClassifier`` finds the bin thresholds of a
    weighted fit with 254 Python-level weighted-percentile calls per feature (0.15 s or more a
    feature whatever the data size: 26 of the 35 s of a tiny test fit with 170 features); a column with at
    most ``max_bins`` values takes its fast path (thresholds at the midpoints between the
    values, here near the quantile bin edges). The fitted trees compare raw features with
    those thresholds, so prediction needs no such step. Bin edges are unweighted quantiles,
    as scikit-learn used before it weighted them.
    """
    X = np.asarray(X)
    if len(X) <= max_bins:
        return X
    ordered = np.sort(X, axis=0)
    distinct = 1 + (np.diff(ordered, axis=0) != 0).sum(axis=0)
    out = X.copy()
    n = len(X)
    for j in np.flatnonzero(distinct > max_bins):
        col = ordered[:, j]
        edges = col[np.minimum((np.arange(1, max_bins) * n) // max_bins, n - 1)]
        centres = col[np.minimum(((2 * np.arange(max_bins) + 1) * n) // (2 * max_bins), n - 1)]
        out[:, j] = centres[np.searchsorted(edges, X[:, j], side="right")]
    return out


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The thread pools (OpenMP, BLAS) of the loaded libraries, found once: finding them
    (what every ``threadpool_limits()`` call does) takes 5-20 ms, longer than a prediction."""
    return ThreadpoolController()


class RegionClassifier:
    """A scikit-learn classifier over region features that always speaks in dataset classes.

    ``predict_proba`` returns all ``num_classes`` columns (classes absent from training get
    probability 0); a training set with a single class gives a constant predictor.
    """

    def __init__(
        self, kind: str, num_classes: int, n_estimators: int = 100, seed: int = 0, learning_rate: float = 0.1
    ):
        self.kind = kind
        self.num_classes = num_classes
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.seed = seed
        self.model = None
        self.classes_: np.ndarray = np.zeros(0, np.int64)
        self._predictor: FastBoostedPredictor | None = None  # hgb: the compiled tree walk, made on first use

    def _make(self):
        if self.kind == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(
                max_iter=self.n_estimators, learning_rate=self.learning_rate, max_leaf_nodes=31, min_samples_leaf=10,
                l2_regularization=1e-3, early_stopping=False, random_state=self.seed,
            )
        if self.kind == "et":
            from sklearn.ensemble import ExtraTreesClassifier

            return ExtraTreesClassifier(
                n_estimators=self.n_estimators, min_samples_leaf=2, max_features="sqrt", n_jobs=1,
                random_state=self.seed,
            )
        if self.kind == "rf":
            from sklearn.ensemble import RandomForestClassifier

            return RandomForestClassifier(
                n_estimators=self.n_estimators, min_samples_leaf=2, max_features="sqrt", n_jobs=1,
                random_state=self.seed,
            )
        if self.kind == "logreg":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        raise ValueError(f"unknown classifier {self.kind!r}")

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "RegionClassifier":
        if len(y) == 0:
            raise ValueError("no labelled training region (every region is ignore)")
        self.classes_ = np.unique(y).astype(np.int64)
        if len(self.classes_) < 2:
            self.model = None
            return self
        self.model = self._make()
        kw = {}
        if sample_weight is not None:
            sample_weight = sample_weight / sample_weight.mean()
            kw = {"logisticregression__sample_weight" if self.kind == "logreg" else "sample_weight": sample_weight}
        if self.kind == "hgb":
            X = coarsen_for_binning(X)
        with _thread_pools().limit(limits=1):
            self.model.fit(X, y, **kw)
        return self

    def _proba(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "hgb" and (self._predictor is None or self._predictor.model is not self.model):
            self._predictor = FastBoostedPredictor(self.model)
        predictor = self._predictor if self.kind == "hgb" else self.model
        # one thread: OpenMP/BLAS pools spin badly on a shared machine for a few hundred rows
        with _thread_pools().limit(limits=1):
            return predictor.predict_proba(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), self.num_classes), np.float64)
        if self.model is None:
            out[:, self.classes_[0]] = 1.0
        elif len(X):
            out[:, self.classes_] = self._proba(X)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(X), self.classes_[0], np.int64)
        return self.classes_[np.argmax(self._proba(X), axis=1)] if len(X) else np.zeros(0, np.int64)

    def save(self, folder: Path) -> None:
        """``classifier.npz`` (the classes seen) and, unless constant, ``classifier.skops``."""
        save_arrays(folder / "classifier.npz", classes=self.classes_)
        if self.model is not None:
            save_estimator(folder / "classifier.skops", self.model)

    @classmethod
    def load(cls, folder: Path, kind: str, num_classes: int, n_estimators: int = 100) -> "RegionClassifier":
        """The classifier :meth:`save` wrote into ``folder`` (no pickle, see baselines.state_files)."""
        clf = cls(kind, num_classes, n_estimators)
        clf.classes_ = load_arrays(folder / "classifier.npz", "classes")["classes"].astype(np.int64)
        if len(clf.classes_) >= 2:
            clf.model = load_estimator(folder / "classifier.skops")
        return clf

    def num_parameters(self) -> int:
        m = self.model
        if m is None:
            return 1
        if self.kind == "hgb":  # one (feature, threshold or value) per tree node
            predictors = getattr(m, "_predictors", None)  # private: fall back to the tree count
            if predictors is None:
                return int(m.n_iter_ * m.n_trees_per_iteration_)
            return int(sum(p.nodes.shape[0] for it in predictors for p in it))
        if self.kind in ("rf", "et"):
            return int(sum(t.tree_.node_count for t in m.estimators_))
        lr = m[-1]
        return int(lr.coef_.size + lr.intercept_.size)
