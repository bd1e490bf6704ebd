"""Speed of the metric hot paths (pytest-benchmark; no speed asserts, only checks of what each call returns).

Run: python -m pytest tests/benchmarks/test_bench_metrics.py --benchmark-enable -q
Each confusion-matrix case reports ``pixels_per_s`` in ``extra_info``; torchmetrics'
MulticlassJaccardIndex.update runs on the same data so the ratio is measured side by side.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from bench.metrics import ConfusionMatrix, boundary_f1, confusion_matrix, summarize

N, H, W, K, IGNORE = 8, 360, 480, 12, 11


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    target = rng.integers(0, K, (N, H, W)).astype(np.uint8)  # value 11 = the ignore index
    pred = np.where(rng.random((N, H, W)) < 0.7, np.minimum(target, K - 2), rng.integers(0, K - 1, (N, H, W))).astype(np.uint8)
    return pred, target


@pytest.fixture
def one_thread():
    """Our counting is single-threaded: measure torch/torchmetrics on one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pixels_per_s(benchmark, n_pixels):
    benchmark.extra_info["pixels"] = n_pixels
    if benchmark.stats is not None:
        benchmark.extra_info["pixels_per_s"] = n_pixels / benchmark.stats.stats.mean
        benchmark.extra_info["pixels_per_s_median"] = n_pixels / benchmark.stats.stats.median


@pytest.mark.benchmark(group="confusion-matrix")
def test_cm_numpy_uint8(benchmark, batch):
    pred, target = batch
    cm = ConfusionMatrix(K, IGNORE)
    m = benchmark(cm.update, pred, target)
    assert m.sum() == np.count_nonzero(target != IGNORE)
    _pixels_per_s(benchmark, pred.size)


@pytest.mark.benchmark(group="confusion-matrix")
def test_cm_torch_cpu_uint8(benchmark, batch, one_thread):
    pred, target = (torch.from_numpy(a) for a in batch)
    cm = ConfusionMatrix(K, IGNORE)
    m = benchmark(cm.update, pred, target)
    np.testing.assert_array_equal(m.numpy(), confusion_matrix(batch[0], batch[1], K, IGNORE))
    _pixels_per_s(benchmark, pred.numel())


@pytest.mark.benchmark(group="confusion-matrix")
def test_cm_torch_cpu_int64_pred(benchmark, batch, one_thread):
    """argmax output is int64: the common case of a network's prediction."""
    pred, target = torch.from_numpy(batch[0]).long(), torch.from_numpy(batch[1])
    m = benchmark(confusion_matrix, pred, target, K, IGNORE)
    np.testing.assert_array_equal(m.numpy(), confusion_matrix(batch[0], batch[1], K, IGNORE))
    _pixels_per_s(benchmark, pred.numel())


@pytest.mark.benchmark(group="confusion-matrix")
def test_cm_torchmetrics_jaccard_update(benchmark, batch, one_thread):
    from torchmetrics.classification import MulticlassJaccardIndex

    pred, target = (torch.from_numpy(a) for a in batch)
    metric = MulticlassJaccardIndex(num_classes=K, average=None, ignore_index=IGNORE)
    benchmark(metric.update, pred, target)
    _pixels_per_s(benchmark, pred.numel())


@pytest.mark.benchmark(group="summarize")
def test_summarize_59_classes(benchmark):
    rng = np.random.default_rng(1)
    matrix = rng.integers(0, 10_000, (59, 59)).astype(np.int64)
    matrix[7] = 0
    matrix[:, 7] = 0
    s = benchmark(summarize, matrix)
    assert 0 < s["miou"] < 1 and np.isnan(s["iou"][7])


@pytest.mark.benchmark(group="boundary-f1")
def test_boundary_f1_360x480(benchmark):
    rng = np.random.default_rng(2)
    cells = (12, 16)

    def field():
        f = rng.normal(size=(K,) + cells).astype(np.float32)
        return np.stack([cv2.resize(c, (W, H), interpolation=cv2.INTER_CUBIC) for c in f])

    f = field()
    target = f.argmax(0).astype(np.uint8)
    pred = (f + 0.3 * field()).argmax(0).astype(np.uint8)
    target[:12] = 255
    assert 0 < benchmark(boundary_f1, pred, target, K, 255) < 1
    _pixels_per_s(benchmark, pred.size)


@pytest.mark.benchmark(group="boundary-f1")
def test_boundary_f1_512x1024_19_classes_one_thread(benchmark):
    """The `evaluate` case of docs/BENCHMARKS.md: Cityscapes-sized maps, 19 classes, OpenCV on one thread.

    Smooth regions (argmax of a smooth random field) with blocks of a coarse grid; the prediction
    perturbs the field and shifts the blocks. Reports ``images_per_s``.
    """
    rng = np.random.default_rng(3)
    h, w, k = 512, 1024, 19

    def field(cells):
        f = rng.normal(size=(k,) + cells).astype(np.float32)
        return np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in f])

    f = field((6, 12))
    target, pred = f.argmax(0).astype(np.uint8), (f + 0.25 * field((24, 48))).argmax(0).astype(np.uint8)
    blocks = cv2.resize(rng.integers(0, k, (8, 16)).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    target[:, 512:] = blocks[:, 512:]
    pred[:, 512:] = np.roll(blocks, (2, -3), axis=(0, 1))[:, 512:]
    target[-40:] = 255  # an ignored strip (the ego vehicle)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        assert 0.5 < benchmark(boundary_f1, pred, target, k, 255) < 1
    finally:
        cv2.setNumThreads(threads)
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_s"] = 1 / benchmark.stats.stats.mean
