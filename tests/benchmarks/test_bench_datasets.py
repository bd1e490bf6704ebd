"""pytest-benchmark: decoding a batch of 8 CamVid-sized samples (480x360 PNG image +
index mask, with the size and label-range checks) from a fake SegNet-layout tree.

Disabled by the default ``--benchmark-disable`` (then it runs once as a plain test);
measure with ``python -m pytest tests/benchmarks/test_bench_datasets.py --benchmark-enable``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_camvid

from bench.datasets import get_dataset


@pytest.fixture(scope="module")
def camvid_batch_split(tmp_path_factory):
    root = make_camvid(tmp_path_factory.mktemp("bench") / "camvid", splits={"train": 8}, size=(360, 480))
    return get_dataset("camvid", root).split("train")


def _decode_batch(split):
    return [split.load(i) for i in range(len(split))]


def test_decode_camvid_batch_of_8(benchmark, camvid_batch_split):
    batch = benchmark(_decode_batch, camvid_batch_split)
    assert len(batch) == 8
    assert all(s.image.shape == (360, 480, 3) and s.label.shape == (360, 480) for s in batch)
    assert all(s.label.dtype == np.uint8 and s.label.max() <= 11 for s in batch)


def test_decode_camvid_batch_of_8_half_scale(benchmark, camvid_batch_split):
    half = get_dataset("camvid", camvid_batch_split.pairs[0][0].parents[1], scale=0.5).split("train")
    batch = benchmark(_decode_batch, half)
    assert all(s.image.shape == (180, 240, 3) for s in batch)
