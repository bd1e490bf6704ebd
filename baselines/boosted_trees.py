"""Prediction of a fitted scikit-learn ``HistGradientBoostingClassifier`` by QuickScorer
(Lucchese et al., SIGIR 2015) in one compiled call: the same probabilities, bit for bit.

Hand-written because scikit-learn predicts one tree per Python call (about 5 us each: 6 ms
for the 1,100 trees of the region classifier, 100 iterations x 11 classes) and walks each
tree node by node, a branch the CPU mispredicts about every other level; compiled tree
libraries were measured and not faster here (docs/BENCHMARKS.md, session 12: tl2cgen's
compiled C 15.7 ms where scikit-learn takes 18.1). QuickScorer needs no walk: a tree's
leaves are numbered left to right, every split node whose test fails for a row (the row
goes right) clears the bits of its left subtree's leaves in that tree's leaf mask, and the
lowest bit left standing is the leaf the walk would reach. The split nodes of all trees are
sorted by feature and threshold, so for each feature a row visits exactly its failing
nodes, in one branch-predictable scan. Leaf values are then added to the raw scores in
scikit-learn's order (tree by tree, iteration-major, into a column-major buffer) and
scikit-learn's loss turns them into probabilities, so the output equals ``predict_proba``'s
exactly (tests check it, NaN and infinite features and values on a split included).
Measured on the mser classifier (609 regions an image): 23 ms for a node-by-node compiled
walk, 10 ms for this (docs/BENCHMARKS.md, session 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

#: the most leaves a tree may have here: one bit each in a uint32 mask (the region
#: classifier grows at most 31); larger trees fall back to scikit-learn
MAX_LEAVES = 32
_ALL_LEAVES = np.uint32(0xFFFFFFFF)
#: de Bruijn sequence and table: index of the lowest set bit of a uint32 in two operations
_DE_BRUIJN = 0x077CB531
_LOWEST_BIT = np.zeros(32, np.int64)
_LOWEST_BIT[[((1 << i) * _DE_BRUIJN & 0xFFFFFFFF) >> 27 for i in range(32)]] = np.arange(32)


@numba.njit(cache=True, nogil=True)
def _add_leaf_values(X, start, threshold, tree_mask, nan_right, leaf_start, leaf_value, lowest_bit, classes, raw):
    """raw[i, t % classes] += the value of the leaf tree t sends row i to, tree by tree in order.

    Feature f's split nodes are ``start[f]:start[f + 1]``, sorted by threshold and closed by a
    +inf sentinel; ``tree_mask`` packs a node's tree (high 32 bits) and the mask that clears
    its left-subtree leaves in that tree's leaf mask (low 32 bits: one load instead of two).
    A row fails a node when its value is above the threshold (scikit-learn: at most goes
    left) or, for NaN, when the node sends missing values right (``nan_right``)."""
    n, d = X.shape
    trees = leaf_start.shape[0] - 1
    leaves = np.empty(trees, np.uint32)
    for i in range(n):
        leaves[:] = np.uint32(0xFFFFFFFF)
        for f in range(d):
            x = X[i, f]
            k = start[f]
            if np.isnan(x):
                for k in range(start[f], start[f + 1] - 1):
                    if nan_right[k]:
                        p = tree_mask[k]
                        leaves[p >> np.uint64(32)] &= np.uint32(p & np.uint64(0xFFFFFFFF))
            else:
                while x > threshold[k]:  # the sentinel stops every finite or infinite value
                    p = tree_mask[k]
                    leaves[p >> np.uint64(32)] &= np.uint32(p & np.uint64(0xFFFFFFFF))
                    k += 1
        c = 0  # t % classes without a division per tree
        for t in range(trees):
            v = leaves[t]
            low = v & (~v + np.uint32(1))
            leaf = lowest_bit[np.uint32(low * np.uint32(_DE_BRUIJN)) >> np.uint32(27)]
            raw[i, c] += leaf_value[leaf_start[t] + leaf]
            c += 1
            if c == classes:
                c = 0


@dataclass(frozen=True)
class ScoringTables:
    """The trees of a fitted ``HistGradientBoostingClassifier`` as QuickScorer's tables."""

    start: np.ndarray  # (features + 1,) int64: feature f's nodes are start[f]:start[f+1], sentinel last
    threshold: np.ndarray  # (nodes,) float64, ascending within a feature; +inf at the sentinel
    tree_mask: np.ndarray  # (nodes,) uint64: the node's tree << 32 | ones except its left-subtree leaves
    nan_right: np.ndarray  # (nodes,) bool: NaN fails the node
    leaf_start: np.ndarray  # (trees + 1,) int64: tree t's leaf values are leaf_start[t]:leaf_start[t+1]
    leaf_value: np.ndarray  # (leaves,) float64, left to right within a tree
    classes: int  # trees per iteration (1 for two classes)

    @classmethod
    def from_model(cls, model) -> "ScoringTables | None":
        """The tables of ``model``; None when it cannot be tabled (not fitted, a categorical
        split, a tree of more than :data:`MAX_LEAVES` leaves, or another scikit-learn
        layout), in which case use its own ``predict_proba``."""
        try:
            predictors = model._predictors  # private in scikit-learn: fall back when it changes
            classes = int(model.n_trees_per_iteration_)
            n_features = int(model.n_features_in_)
            nodes = [p.nodes for iteration in predictors for p in iteration]
            if not nodes or any(nd["is_categorical"].any() for nd in nodes):
                return None
            parts = [_tree_parts(nd) for nd in nodes]
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        if any(p is None for p in parts):
            return None
        feature, threshold, mask, leaf_value, nan_right = (np.concatenate(column) for column in zip(*parts))
        tree = np.repeat(np.arange(len(parts), dtype=np.uint32), [len(p[0]) for p in parts])
        order = np.lexsort((threshold, feature))
        feature, threshold, tree, mask, nan_right = (a[order] for a in (feature, threshold, tree, mask, nan_right))
        ends = np.searchsorted(feature, np.arange(n_features), side="right")  # a sentinel closes every feature
        return cls(
            start=(np.searchsorted(feature, np.arange(n_features + 1)) + np.arange(n_features + 1)).astype(np.int64),
            threshold=np.insert(threshold, ends, np.inf),
            tree_mask=(np.insert(tree, ends, 0).astype(np.uint64) << np.uint64(32))
            | np.insert(mask, ends, _ALL_LEAVES).astype(np.uint64),
            nan_right=np.insert(nan_right, ends, False),
            leaf_start=np.concatenate([[0], np.cumsum([len(p[3]) for p in parts])]).astype(np.int64),
            leaf_value=np.ascontiguousarray(leaf_value, np.float64),
            classes=classes,
        )

    def raw_scores(self, X: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        """(n, classes) raw scores, column-major, as scikit-learn's ``_raw_predict``."""
        X = np.ascontiguousarray(X, np.float64)
        raw = np.zeros((len(X), self.classes), np.float64, order="F")
        raw += baseline
        _add_leaf_values(X, self.start, self.threshold, self.tree_mask, self.nan_right, self.leaf_start,
                         self.leaf_value, _LOWEST_BIT, self.classes, raw)
        return raw


def _tree_parts(nodes: np.ndarray):
    """One tree's (split features, thresholds, masks, leaf values left to right, NaN-goes-right
    flags), or None when it has more than :data:`MAX_LEAVES` leaves."""
    is_leaf = nodes["is_leaf"].astype(bool)
    if is_leaf.sum() > MAX_LEAVES:
        return None
    left, right = nodes["left"].astype(np.intp), nodes["right"].astype(np.intp)
    preorder, stack = [], [0]  # depth first, left child first: leaves come left to right
    while stack:
        node = stack.pop()
        preorder.append(node)
        if not is_leaf[node]:
            stack += [right[node], left[node]]
    preorder = np.array(preorder)
    leaves = preorder[is_leaf[preorder]]
    first_leaf = np.zeros(len(nodes), np.int64)  # index of the leftmost leaf under each node
    first_leaf[leaves] = np.arange(len(leaves))
    for node in preorder[::-1]:  # children before parents
        if not is_leaf[node]:
            first_leaf[node] = first_leaf[left[node]]
    splits = preorder[~is_leaf[preorder]]
    lo, hi = first_leaf[left[splits]], first_leaf[right[splits]]
    left_bits = ((np.uint64(1) << (hi - lo).astype(np.uint64)) - np.uint64(1)) << lo.astype(np.uint64)
    mask = (~left_bits & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return (nodes["feature_idx"][splits].astype(np.int64), np.asarray(nodes["num_threshold"][splits], np.float64),
            mask, nodes["value"][leaves].astype(np.float64), ~nodes["missing_go_to_left"][splits].astype(bool))


class FastBoostedPredictor:
    """``predict_proba`` of a fitted ``HistGradientBoostingClassifier`` through
    :class:`ScoringTables`, or through the model itself when it cannot be tabled."""

    def __init__(self, model):
        self.model = model
        self.tables = ScoringTables.from_model(model)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if self.tables is None:
            return self.model.predict_proba(X)
        if X.ndim != 2 or X.shape[1] != self.model.n_features_in_:
            raise ValueError(f"X has shape {X.shape}, the classifier was fitted on {self.model.n_features_in_} features")
        raw = self.tables.raw_scores(X, self.model._baseline_prediction)
        return self.model._loss.predict_proba(raw)
