"""Per-image predict time of every classical region method on a fixed 480x360 image.

Each method is fitted once (module scope) on a few small synthetic images; the benchmark
times ``predict`` alone (partition + features + classifier [+ CRF inference]). Run with
``pytest tests/benchmarks/test_bench_baselines.py --benchmark-enable``; without it (the
default ``--benchmark-disable``) every benchmark runs once as a smoke test.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.types import DatasetInfo, InMemorySplit, Sample
from bench.method import FitContext, create_method

METHODS = ["sobel", "laplacian", "log", "canny", "region-growing", "mser", "superpixel-unary", "superpixel-crf"]

INFO = DatasetInfo(
    "textured", ("sky", "grass", "brick", "moss"),
    np.array([[80, 120, 220], [40, 160, 40], [180, 70, 50], [40, 160, 40]], np.uint8), 255,
)


def textured_image(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of 4 textured classes (smooth ramp, noise, stripes, smooth)."""
    n = int(rng.integers(5, 10))
    pts = rng.random((n, 2)) * [h, w]
    cls = rng.integers(0, 4, n)
    yy, xx = np.mgrid[0:h, 0:w]
    label = cls[np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=2)]
    img = INFO.palette[label].astype(np.float32)
    noise = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
    img += np.where((label == 0)[..., None], ((yy - h / 2) * 0.1)[..., None] + 3 * noise, 0)
    img += np.where((label == 1)[..., None], 35 * noise, 0)
    img += np.where((label == 2)[..., None], (np.sin((xx + yy) * 2 * np.pi / 8) * 40)[..., None] + 5 * noise, 0)
    img += np.where((label == 3)[..., None], 4 * noise, 0)
    return np.clip(img, 0, 255).astype(np.uint8), label.astype(np.uint8)


@pytest.fixture(scope="module")
def train_split():
    rng = np.random.default_rng(0)
    return InMemorySplit(INFO, "train", [Sample(*textured_image(rng, 96, 128), id=f"t{i}") for i in range(6)])


@pytest.fixture(scope="module")
def image_480x360():
    return textured_image(np.random.default_rng(42), 360, 480)[0]


@pytest.fixture(scope="module", params=METHODS)
def fitted(request, train_split):
    method = create_method(request.param)
    method.fit(train_split, None, FitContext(progress=False))
    return method


def test_bench_predict_480x360(benchmark, fitted, image_480x360):
    benchmark.group = "classical predict 480x360"
    benchmark.extra_info["method"] = fitted.name
    pred = benchmark(fitted.predict, image_480x360)
    assert pred.shape == (360, 480)
    benchmark.extra_info["regions"] = int(fitted.partition(image_480x360).max()) + 1
