"""Prediction of a fitted scikit-learn ``HistGradientBoostingClassifier`` with all its trees
walked in one compiled call: the same probabilities, bit for bit, at about half the time.

Hand-written because scikit-learn predicts one tree per Python call (about 5 us each: 6 ms
for the 1,100 trees of the region classifier, 100 iterations x 11 classes) and copies a
60-byte node record at every step of the walk; compiled tree libraries were measured and
not faster here (docs/BENCHMARKS.md, session 12: tl2cgen's compiled C 15.7 ms where
scikit-learn takes 18.1 and this walk 8.3). The walk is numba-compiled and follows
scikit-learn's own arithmetic: raw scores start at the baseline and add each tree's leaf
value in iteration order (a column-major buffer, as scikit-learn's), then scikit-learn's
loss turns them into probabilities, so the output equals ``predict_proba``'s exactly (a
test checks it, NaN features included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _add_leaf_values(X, roots, feature, threshold, left, right, nan_left, value, classes, raw):
    """raw[i, t % classes] += the leaf value tree t gives row i, tree by tree in order.

    Every tree's nodes live in the flat arrays from index ``roots[t]``; a leaf has feature
    -1. The branch rule is scikit-learn's: NaN goes where the node sends missing values,
    otherwise left when the value is at most the threshold."""
    n = X.shape[0]
    for t in range(roots.shape[0]):
        k = t % classes
        root = roots[t]
        for i in range(n):
            node = root
            while feature[node] >= 0:
                v = X[i, feature[node]]
                if np.isnan(v):
                    node = left[node] if nan_left[node] else right[node]
                elif v <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            raw[i, k] += value[node]


@dataclass(frozen=True)
class FlatTrees:
    """The trees of a fitted ``HistGradientBoostingClassifier`` in flat node arrays."""

    roots: np.ndarray  # (trees,) int32: index of each tree's root, iteration-major, class-minor
    feature: np.ndarray  # (nodes,) int32: split feature, -1 at a leaf
    threshold: np.ndarray  # (nodes,) float64: go left when value <= threshold
    left: np.ndarray  # (nodes,) int32, global node index
    right: np.ndarray  # (nodes,) int32
    nan_left: np.ndarray  # (nodes,) bool: where NaN goes
    value: np.ndarray  # (nodes,) float64: leaf value
    classes: int  # trees per iteration (1 for two classes)

    @classmethod
    def from_model(cls, model) -> "FlatTrees | None":
        """The flat trees of ``model``; None when it cannot be flattened (not fitted, a
        categorical split, or another scikit-learn layout), in which case use its own
        ``predict_proba``."""
        try:
            predictors = model._predictors  # private in scikit-learn: fall back when it changes
            classes = int(model.n_trees_per_iteration_)
            nodes = [p.nodes for iteration in predictors for p in iteration]
            if not nodes or any(nd["is_categorical"].any() for nd in nodes):
                return None
            sizes = np.array([len(nd) for nd in nodes])
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            nd = np.concatenate(nodes)
            shift = np.repeat(offsets, sizes)
            leaf = nd["is_leaf"].astype(bool)
            return cls(
                roots=offsets.astype(np.int32),
                feature=np.where(leaf, -1, nd["feature_idx"]).astype(np.int32),
                threshold=np.ascontiguousarray(nd["num_threshold"], np.float64),
                left=(nd["left"] + shift).astype(np.int32),
                right=(nd["right"] + shift).astype(np.int32),
                nan_left=nd["missing_go_to_left"].astype(bool),
                value=np.ascontiguousarray(nd["value"], np.float64),
                classes=classes,
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def raw_scores(self, X: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """(n, classes) raw scores, column-major, as scikit-learn's ``_raw_predict``."""
        X = np.ascontiguousarray(X, np.float64)
        raw = np.zeros((len(X), self.classes), np.float64, order="F")
        raw += baseline
        _add_leaf_values(X, self.roots, self.feature, self.threshold, self.left, self.right, self.nan_left,
                         self.value, self.classes, raw)
        return raw


class FastBoostedPredictor:
    """``predict_proba`` of a fitted ``HistGradientBoostingClassifier`` through :class:`FlatTrees`,
    or through the model itself when it cannot be flattened."""

    def __init__(self, model):
        self.model = model
        self.trees = FlatTrees.from_model(model)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if self.trees is None:
            return self.model.predict_proba(X)
        if X.ndim != 2 or X.shape[1] != self.model.n_features_in_:
            raise ValueError(f"X has shape {X.shape}, the classifier was fitted on {self.model.n_features_in_} features")
        raw = self.trees.raw_scores(X, self.model._baseline_prediction)
        return self.model._loss.predict_proba(raw)
