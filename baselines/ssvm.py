"""A Potts CRF over a region graph, graph-cut inference, and its structural SVM learning.

Model (:class:`PottsCRF`) - for a graph with nodes i (regions, relative area a_i with mean
1), per-node costs U_i(k) (e.g. -log p_i(k) from a classifier) and edges (i, j) with
non-negative features f_ij, the energy of a labelling y is

    E(y; w) = w_u * sum_i a_i U_i(y_i)  +  sum_i a_i b_{y_i}  +  sum_ij (v . f_ij) [y_i != y_j]

with parameters w = (w_u, b_1..b_K, v_1..v_F): a unary scale, a per-class bias and one
Potts weight per edge feature. E is linear in w: E(y; w) = w . phi(y) with phi the joint
feature vector (normalised by the total node weight, so that images of any size count
alike). w_u >= 0 and v >= 0 are enforced (projection), which keeps the Potts terms
metric, as alpha-expansion requires.

Inference (:func:`potts_inference`) is alpha-expansion by graph cuts from the maintained
``gco-wrapper`` package (GCO v3, Boykov-Veksler-Zabih / Kolmogorov), fed integer costs
scaled from ours. Without edges (or with zero Potts weights) it is a per-node argmin.

Learning (:func:`train_ssvm`) is the n-slack structural SVM (margin rescaling) with the
area-weighted Hamming loss Delta(y*, y) = sum_i a_i [y_i != y*_i] / sum_i a_i (the pixel
error rate of the region labelling):

    min_w  lambda/2 ||w - w0||^2 + 1/N sum_n max_y [Delta(y*_n, y) - E(y*_n; w) + E(y; w)]  ... (energies)

i.e. the true labelling must have lower energy than any other by a margin of its loss.
The inner max is loss-augmented inference: the same graph cut with the loss subtracted
from the node costs of every wrong label (``loss_augmented_costs``). The optimiser is a
projected full-batch subgradient method with step lr / sqrt(t), keeping the iterate with
the lowest objective (so learning never ends above where it started).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class CRFGraph:
    """One example: a region graph with its node costs and (optionally) its labels."""

    unary: np.ndarray  # (n, K) float, node costs before scaling (e.g. -log p)
    node_weight: np.ndarray  # (n,) float > 0, relative area (mean about 1)
    edges: np.ndarray  # (m, 2) int, i < j
    edge_features: np.ndarray  # (m, F) float >= 0
    label: np.ndarray | None = None  # (n,) int; -1 = unknown (no loss, no constraint)

    def __post_init__(self) -> None:
        self.unary = np.asarray(self.unary, np.float64)
        n = self.unary.shape[0]
        self.node_weight = np.asarray(self.node_weight, np.float64).reshape(n)
        self.edges = np.asarray(self.edges, np.int64).reshape(-1, 2)
        ef = np.asarray(self.edge_features, np.float64)
        self.edge_features = ef[:, None] if ef.ndim == 1 else ef
        if self.edge_features.ndim != 2 or self.edge_features.shape[0] != len(self.edges):
            raise ValueError(f"edge_features {ef.shape} do not match {len(self.edges)} edges")
        if len(self.edges) and not (self.edges[:, 0] < self.edges[:, 1]).all():
            raise ValueError("edges must satisfy i < j")
        if len(self.edges) and (self.edges.min() < 0 or self.edges.max() >= n):
            raise ValueError("edge index out of range")
        if self.label is not None:
            self.label = np.asarray(self.label, np.int64).reshape(n)

    @property
    def n_nodes(self) -> int:
        return self.unary.shape[0]

    def labelled(self) -> "CRFGraph":
        """The subgraph of nodes with a known label (edges to unknown nodes dropped)."""
        if self.label is None:
            raise ValueError("graph has no labels")
        keep = self.label >= 0
        if keep.all():
            return self
        new_id = np.cumsum(keep) - 1
        ok = keep[self.edges[:, 0]] & keep[self.edges[:, 1]] if len(self.edges) else np.zeros(0, bool)
        return CRFGraph(
            self.unary[keep], self.node_weight[keep], new_id[self.edges[ok]], self.edge_features[ok], self.label[keep]
        )


def potts_inference(node_costs: np.ndarray, edges: np.ndarray, edge_weights: np.ndarray) -> np.ndarray:
    """argmin_y sum_i C_i(y_i) + sum_ij w_ij [y_i != y_j] by alpha-expansion (w_ij >= 0).

    Exact for two labels, within a factor 2 of the optimum otherwise.
    """
    node_costs = np.asarray(node_costs, np.float64)
    n, k = node_costs.shape
    init = np.argmin(node_costs, axis=1)
    edge_weights = np.asarray(edge_weights, np.float64)
    if (edge_weights < 0).any():
        raise ValueError("Potts weights must be non-negative for alpha-expansion")
    if n == 0 or k == 1 or len(edges) == 0 or not (edge_weights > 0).any():
        return init
    import gco  # gco-wrapper

    costs = node_costs - node_costs.min(axis=1, keepdims=True)  # same argmin, non-negative
    top = max(float(costs.max()), float(edge_weights.max()), 1e-12)
    scale = 1e6 / top  # integers up to 1e6: 6 significant digits, far from int32 overflow
    unary_i = np.rint(costs * scale).astype(np.int32)
    weights_i = np.rint(edge_weights * scale).astype(np.int32)
    gc = gco.GCO()
    gc.create_general_graph(n, k, False)
    try:
        gc.set_data_cost(unary_i)
        gc.set_all_neighbors(edges[:, 0].astype(np.int32), edges[:, 1].astype(np.int32), weights_i)
        gc.set_smooth_cost((1 - np.eye(k)).astype(np.int32))
        gc.expansion(-1)
        labels = np.asarray(gc.get_labels(), np.int64)
    finally:
        gc.destroy_graph()
    # expansion starts from label 0 everywhere; never return worse than the unary argmin
    if _potts_energy(node_costs, edges, edge_weights, init) < _potts_energy(node_costs, edges, edge_weights, labels):
        return init
    return labels


def _potts_energy(costs, edges, weights, y) -> float:
    e = costs[np.arange(len(y)), y].sum()
    if len(edges):
        e += weights[y[edges[:, 0]] != y[edges[:, 1]]].sum()
    return float(e)


class PottsCRF:
    """The linear-in-parameters Potts CRF of the module docstring."""

    def __init__(self, num_classes: int, n_edge_features: int, class_bias: bool = True):
        self.num_classes = int(num_classes)
        self.n_edge_features = int(n_edge_features)
        self.class_bias = bool(class_bias)

    @property
    def size(self) -> int:
        return 1 + self.num_classes + self.n_edge_features

    def initial_weights(self) -> np.ndarray:
        """Unaries alone: w_u = 1, no bias, no Potts term."""
        w = np.zeros(self.size)
        w[0] = 1.0
        return w

    def split(self, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return float(w[0]), w[1 : 1 + self.num_classes], w[1 + self.num_classes :]

    def project(self, w: np.ndarray) -> np.ndarray:
        w = np.array(w, np.float64)
        w[0] = max(w[0], 0.0)
        if not self.class_bias:
            w[1 : 1 + self.num_classes] = 0.0
        else:
            w[1 : 1 + self.num_classes] -= w[1 : 1 + self.num_classes].mean()  # only differences matter
        w[1 + self.num_classes :] = np.maximum(w[1 + self.num_classes :], 0.0)
        return w

    def node_costs(self, g: CRFGraph, w: np.ndarray) -> np.ndarray:
        wu, b, _ = self.split(w)
        return g.node_weight[:, None] * (wu * g.unary + b[None, :])

    def edge_weights(self, g: CRFGraph, w: np.ndarray) -> np.ndarray:
        _, _, v = self.split(w)
        if len(g.edges) == 0 or self.n_edge_features == 0:
            return np.zeros(len(g.edges))
        return g.edge_features @ v

    def joint_feature(self, g: CRFGraph, y: np.ndarray) -> np.ndarray:
        """phi(y) with E(y; w) = w . phi(y), normalised by the total node weight."""
        y = np.asarray(y, np.int64)
        a = g.node_weight
        phi = np.zeros(self.size)
        phi[0] = (a * g.unary[np.arange(len(y)), y]).sum()
        phi[1 : 1 + self.num_classes] = np.bincount(y, weights=a, minlength=self.num_classes)[: self.num_classes]
        if len(g.edges) and self.n_edge_features:
            cut = y[g.edges[:, 0]] != y[g.edges[:, 1]]
            phi[1 + self.num_classes :] = g.edge_features[cut].sum(axis=0)
        return phi / max(a.sum(), 1e-12)

    def energy(self, g: CRFGraph, w: np.ndarray, y: np.ndarray) -> float:
        return float(w @ self.joint_feature(g, y))

    def loss(self, g: CRFGraph, y: np.ndarray) -> float:
        """Area-weighted Hamming loss against ``g.label`` over the labelled nodes."""
        known = g.label >= 0
        a = g.node_weight * known
        return float((a * (np.asarray(y) != g.label)).sum() / max(a.sum(), 1e-12))

    def inference(self, g: CRFGraph, w: np.ndarray) -> np.ndarray:
        return potts_inference(self.node_costs(g, w), g.edges, self.edge_weights(g, w))

    def loss_augmented_costs(self, g: CRFGraph, w: np.ndarray) -> np.ndarray:
        """Node costs minus the Hamming loss of each wrong label (known nodes only)."""
        costs = self.node_costs(g, w)
        known = g.label >= 0
        wrong = np.ones_like(costs, dtype=bool)
        wrong[np.flatnonzero(known), g.label[known]] = False
        costs -= (g.node_weight * known)[:, None] * wrong
        return costs

    def loss_augmented_inference(self, g: CRFGraph, w: np.ndarray) -> np.ndarray:
        return potts_inference(self.loss_augmented_costs(g, w), g.edges, self.edge_weights(g, w))

    def hinge(self, g: CRFGraph, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Structured hinge loss of one (fully labelled) graph and its subgradient."""
        y_hat = self.loss_augmented_inference(g, w)
        phi_true = self.joint_feature(g, g.label)
        phi_hat = self.joint_feature(g, y_hat)
        value = self.loss(g, y_hat) + w @ (phi_true - phi_hat)
        if value <= 0.0:  # the true labelling itself is the maximiser
            return 0.0, np.zeros(self.size)
        return float(value), phi_true - phi_hat


@dataclasses.dataclass
class SSVMResult:
    weights: np.ndarray
    objective: list[float]  # per epoch, at the iterate evaluated
    initial_objective: float
    best_objective: float


def ssvm_objective(model: PottsCRF, graphs: Sequence[CRFGraph], w: np.ndarray, reg: float, w0: np.ndarray) -> float:
    """lambda/2 ||w - w0||^2 + mean structured hinge loss."""
    hinge = np.mean([model.hinge(g, w)[0] for g in graphs]) if graphs else 0.0
    return float(0.5 * reg * np.sum((w - w0) ** 2) + hinge)


def train_ssvm(
    model: PottsCRF,
    graphs: Sequence[CRFGraph],
    epochs: int = 60,
    reg: float = 1e-3,
    lr: float = 0.5,
    w_init: np.ndarray | None = None,
    progress=None,
) -> SSVMResult:
    """Projected subgradient descent on the n-slack SSVM objective (full batch).

    ``graphs`` must carry labels; nodes with label -1 are removed first. The regulariser
    pulls towards ``w_init`` (default: unaries alone). Returns the best iterate seen.
    """
    graphs = [g.labelled() for g in graphs]
    graphs = [g for g in graphs if g.n_nodes > 0]
    w0 = model.project(model.initial_weights() if w_init is None else w_init)
    w = w0.copy()
    best_w, best_obj = w.copy(), np.inf
    history: list[float] = []
    initial = None
    for t in range(1, epochs + 1):
        values, grads = zip(*(model.hinge(g, w) for g in graphs)) if graphs else ((0.0,), (np.zeros(model.size),))
        obj = float(0.5 * reg * np.sum((w - w0) ** 2) + np.mean(values))
        if initial is None:
            initial = obj
        history.append(obj)
        if obj < best_obj:
            best_obj, best_w = obj, w.copy()
        grad = reg * (w - w0) + np.mean(grads, axis=0)
        norm = np.linalg.norm(grad)
        if norm < 1e-12:
            break
        w = model.project(w - (lr / np.sqrt(t)) * grad / max(norm, 1.0))
        if progress is not None:
            progress(t, obj)
    return SSVMResult(best_w, history, float(initial if initial is not None else 0.0), float(best_obj))
