"""Speed of the image bootstrap (pytest-benchmark; no speed asserts, only checks of what each call returns).

Run: python -m pytest tests/benchmarks/test_bench_bootstrap.py --benchmark-enable -q
Cases: 2,000 resamples of CamVid's test split (233 images, 12 classes), of 120 images x 59
classes (CCP-sized), and a paired comparison of two methods on the 233 images. The bootstrap
runs its products on one BLAS thread (bench.metrics.bootstrap), so the figures are one core's.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics.bootstrap import Arm, bootstrap


def _matrices(n: int, k: int, seed: int) -> np.ndarray:
    """``n`` images' (K, K) matrices of 360x480 pixels: a few classes per image, 70% right."""
    rng = np.random.default_rng(seed)
    m = np.zeros((n, k, k), np.int64)
    for i in range(n):
        present = rng.choice(k, size=min(k, 6), replace=False)
        gt = rng.multinomial(360 * 480, rng.dirichlet(np.ones(len(present))))
        for c, pixels in zip(present, gt):
            right = rng.binomial(pixels, 0.7)
            m[i, c, c] = right
            m[i, c] += rng.multinomial(pixels - right, np.full(k, 1 / k))
    return m


@pytest.mark.benchmark(group="bootstrap")
@pytest.mark.parametrize("n_images, n_classes", [(233, 12), (120, 59)])
def test_bootstrap_2000_resamples(benchmark, n_images, n_classes):
    arm = Arm(_matrices(n_images, n_classes, 0), "mmseg", np.random.default_rng(1).random(n_images))
    res = benchmark(bootstrap, [arm], resamples=2000, seed=0)
    est = res.arms[0]
    assert 0 < est.lo["miou"] < est.hi["miou"] < 1 and len(est.iou) == n_classes
    benchmark.extra_info["resamples_per_s"] = 2000 / benchmark.stats.stats.mean if benchmark.stats else None


@pytest.mark.benchmark(group="bootstrap")
def test_paired_comparison_2000_resamples(benchmark):
    a, b = Arm(_matrices(233, 12, 0)), Arm(_matrices(233, 12, 2))
    res = benchmark(bootstrap, [a, b], [(0, 1)], resamples=2000, seed=0)
    assert 0 <= res.differences[(0, 1)].p["miou"] <= 1
