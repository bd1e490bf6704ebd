"""The Potts CRF, its graph-cut inference and its structural SVM learning (baselines.ssvm),
and the learned CRF of ``superpixel-crf`` against its unaries-only twin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from baselines.ssvm import CRFGraph, PottsCRF, potts_inference, ssvm_objective, train_ssvm
from bench.datasets.types import DatasetInfo, InMemorySplit, Sample
from bench.method import FitContext, create_method


# ------------------------------------------------------------------------- helpers
def grid_edges(h: int, w: int) -> np.ndarray:
    idx = np.arange(h * w).reshape(h, w)
    return np.concatenate([
        np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
        np.stack([idx[:-1].ravel(), idx[1:].ravel()], 1),
    ])


def blob_graph(rng: np.random.Generator, side: int = 14, k: int = 3, noise: float = 1.5) -> CRFGraph:
    """A grid of nodes whose true labels are smooth blobs and whose unaries are noisy:
    the setting where Potts smoothing helps."""
    field = ndimage.gaussian_filter(rng.normal(size=(k, side, side)), (0, 3, 3))
    y = field.argmax(0).ravel()
    logits = np.eye(k)[y] + rng.normal(0, noise, (side * side, k))
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    edges = grid_edges(side, side)
    return CRFGraph(-np.log(p), rng.uniform(0.5, 1.5, side * side), edges, np.ones((len(edges), 1)), y)


def brute_force(costs: np.ndarray, edges: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    n, k = costs.shape
    best, arg = np.inf, None
    for y in itertools.product(range(k), repeat=n):
        y = np.array(y)
        e = costs[np.arange(n), y].sum() + weights[y[edges[:, 0]] != y[edges[:, 1]]].sum()
        if e < best:
            best, arg = e, y
    return best, arg


def energy(costs, edges, weights, y) -> float:
    return float(costs[np.arange(len(y)), y].sum() + weights[y[edges[:, 0]] != y[edges[:, 1]]].sum())


# ------------------------------------------------------------------------- inference
def test_potts_inference_exact_for_two_labels():
    rng = np.random.default_rng(0)
    edges = grid_edges(3, 3)
    for _ in range(10):
        costs = rng.normal(size=(9, 2)) * 2
        weights = rng.uniform(0, 1.5, len(edges))
        best, _ = brute_force(costs, edges, weights)
        y = potts_inference(costs, edges, weights)
        assert energy(costs, edges, weights, y) == pytest.approx(best, abs=1e-4)


def test_potts_inference_multilabel_within_bound():
    rng = np.random.default_rng(1)
    edges = grid_edges(2, 4)
    for _ in range(5):
        costs = rng.uniform(0, 3, size=(8, 3))
        weights = rng.uniform(0, 1.0, len(edges))
        best, _ = brute_force(costs, edges, weights)
        y = potts_inference(costs, edges, weights)
        e = energy(costs, edges, weights, y)
        assert best - 1e-6 <= e <= 2 * best + 1e-6  # alpha-expansion's bound for Potts
        assert e <= energy(costs, edges, weights, costs.argmin(1)) + 1e-6


def test_potts_inference_degenerate_cases():
    costs = np.array([[0.0, 1.0], [2.0, 0.5]])
    assert potts_inference(costs, np.zeros((0, 2), int), np.zeros(0)).tolist() == [0, 1]
    assert potts_inference(costs, np.array([[0, 1]]), np.zeros(1)).tolist() == [0, 1]
    assert potts_inference(np.zeros((3, 1)), np.array([[0, 1], [1, 2]]), np.ones(2)).tolist() == [0, 0, 0]
    assert potts_inference(costs, np.array([[0, 1]]), np.array([10.0])).tolist() in ([0, 0], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        potts_inference(costs, np.array([[0, 1]]), np.array([-1.0]))


def test_graph_validation():
    with pytest.raises(ValueError, match="i < j"):
        CRFGraph(np.zeros((2, 2)), np.ones(2), np.array([[1, 0]]), np.ones((1, 1)))
    with pytest.raises(ValueError, match="out of range"):
        CRFGraph(np.zeros((2, 2)), np.ones(2), np.array([[0, 5]]), np.ones((1, 1)))
    with pytest.raises(ValueError, match="edge_features"):
        CRFGraph(np.zeros((2, 2)), np.ones(2), np.array([[0, 1]]), np.ones((3, 1)))
    g = CRFGraph(np.zeros((3, 2)), np.ones(3), np.array([[0, 1], [1, 2]]), np.ones((2, 1)), np.array([0, -1, 1]))
    sub = g.labelled()
    assert sub.n_nodes == 2 and len(sub.edges) == 0 and sub.label.tolist() == [0, 1]


# ------------------------------------------------------------------------- model
def test_energy_is_linear_in_weights():
    rng = np.random.default_rng(2)
    g = blob_graph(rng, side=5)
    g.edge_features = np.stack([g.edge_features[:, 0], rng.uniform(0, 2, len(g.edges))], 1)
    model = PottsCRF(3, 2)
    w = model.project(rng.normal(size=model.size))
    y = rng.integers(0, 3, g.n_nodes)
    direct = energy(model.node_costs(g, w), g.edges, model.edge_weights(g, w), y) / g.node_weight.sum()
    assert model.energy(g, w, y) == pytest.approx(direct, rel=1e-9)


def test_projection_keeps_potts_metric():
    model = PottsCRF(3, 2)
    w = model.project(np.array([-1.0, 1.0, 2.0, 3.0, -0.5, 0.7]))
    assert w[0] == 0 and w[4] == 0 and w[5] == 0.7
    assert w[1:4].sum() == pytest.approx(0)
    assert (PottsCRF(3, 0, class_bias=False).project(np.array([1.0, 5.0, 5.0, 5.0]))[1:] == 0).all()


def test_loss_augmented_inference_is_the_argmax():
    rng = np.random.default_rng(3)
    model = PottsCRF(2, 1)
    edges = grid_edges(2, 4)
    for _ in range(5):
        g = CRFGraph(rng.uniform(0, 2, (8, 2)), rng.uniform(0.5, 1.5, 8), edges, np.ones((len(edges), 1)),
                     rng.integers(0, 2, 8))
        w = model.project(np.array([1.0, 0.2, -0.2, 0.3]))
        y_hat = model.loss_augmented_inference(g, w)
        score = lambda y: model.loss(g, y) - model.energy(g, w, y)  # noqa: E731
        best = max(score(np.array(y)) for y in itertools.product(range(2), repeat=8))
        assert score(y_hat) == pytest.approx(best, abs=1e-5)


def test_hinge_is_zero_for_confident_correct_unaries():
    y = np.array([0, 1, 1, 0])
    unary = np.where(np.eye(2)[y] > 0, 0.0, 50.0)
    g = CRFGraph(unary, np.ones(4), np.array([[0, 1], [1, 2], [2, 3]]), np.ones((3, 1)), y)
    model = PottsCRF(2, 1)
    value, grad = model.hinge(g, model.initial_weights())
    assert value == 0.0 and not grad.any()


# ------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def blob_sets():
    rng = np.random.default_rng(0)
    return [blob_graph(rng) for _ in range(16)], [blob_graph(rng) for _ in range(16)]


@pytest.fixture(scope="module")
def learned(blob_sets):
    train, _ = blob_sets
    model = PottsCRF(3, 1)
    return model, train_ssvm(model, train, epochs=40, reg=1e-3, lr=0.5)


def test_learning_lowers_training_hinge_loss(blob_sets, learned):
    train, _ = blob_sets
    model, result = learned
    w0 = model.initial_weights()
    before = ssvm_objective(model, train, w0, 0.0, w0)
    after = ssvm_objective(model, train, result.weights, 0.0, w0)
    assert after < 0.7 * before, (before, after)
    assert result.best_objective <= result.initial_objective
    assert result.objective[0] == pytest.approx(result.initial_objective)


def test_learned_crf_beats_unaries_on_held_out_graphs(blob_sets, learned):
    _, test = blob_sets
    model, result = learned
    w0 = model.initial_weights()
    alone = np.mean([model.loss(g, model.inference(g, w0)) for g in test])
    crf = np.mean([model.loss(g, model.inference(g, result.weights)) for g in test])
    assert result.weights[-1] > 0  # a Potts weight was learned
    assert crf < 0.75 * alone, (alone, crf)


def test_training_skips_unlabelled_nodes_and_empty_graphs():
    rng = np.random.default_rng(5)
    g = blob_graph(rng, side=6)
    g.label[:10] = -1
    empty = CRFGraph(np.zeros((2, 3)), np.ones(2), np.zeros((0, 2), int), np.zeros((0, 1)), np.array([-1, -1]))
    result = train_ssvm(PottsCRF(3, 1), [g, empty], epochs=5)
    assert np.isfinite(result.weights).all() and result.best_objective <= result.initial_objective


# ------------------------------------------------------------------------- the method
HARD_INFO = DatasetInfo("hard", ("a", "b", "c"), np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.uint8), 255)


def hard_image(rng: np.random.Generator, h: int = 72, w: int = 96):
    """Large Voronoi blobs of three classes with one mean colour, told apart only by weak
    texture (noise level, faint stripes): single superpixels are ambiguous, their
    neighbourhoods are not - smoothing helps."""
    n = int(rng.integers(3, 6))
    pts = rng.random((n, 2)) * [h, w]
    cls = rng.integers(0, 3, n)
    yy, xx = np.mgrid[0:h, 0:w]
    label = cls[np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=2)]
    img = np.full((h, w, 3), [110, 130, 100], np.float32)
    img += np.array([10.0, 16.0, 10.0], np.float32)[label][..., None] * rng.normal(0, 1, (h, w, 1))
    img += np.where((label == 2)[..., None], 8 * np.sin(xx * 2 * np.pi / 5)[..., None], 0)
    return np.clip(img, 0, 255).astype(np.uint8), label.astype(np.uint8)


def hard_split(n: int, seed: int, name: str) -> InMemorySplit:
    rng = np.random.default_rng(seed)
    return InMemorySplit(HARD_INFO, name, [Sample(*hard_image(rng), id=f"{name}{i}") for i in range(n)])


def test_superpixel_crf_beats_unary_variant_where_smoothing_helps():
    train, test = hard_split(12, 0, "train"), hard_split(8, 1, "test")
    settings = {"n_estimators": 60, "ssvm_epochs": 40, "context": False}
    scores, extras = {}, {}
    for name in ("superpixel-unary", "superpixel-crf"):
        m = create_method(name, settings)
        m.fit(train, None, FitContext(progress=False))
        correct = sum(int((m.predict(s.image) == s.label).sum()) for s in test)
        scores[name] = correct / sum(s.label.size for s in test)
        extras[name] = m.extra_metrics()
    assert scores["superpixel-crf"] > scores["superpixel-unary"] + 0.03, scores
    crf = extras["superpixel-crf"]
    assert crf["crf_potts_contrast_weight"] + crf["crf_potts_length_weight"] > 0
    assert crf["ssvm_objective_final"] < crf["ssvm_objective_initial"]
    assert "crf_potts_length_weight" not in extras["superpixel-unary"]
