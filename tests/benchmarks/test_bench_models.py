"""One forward pass of each network at width 0.125 on a 1x3x96x128 CPU input.

Run with ``pytest tests/benchmarks/test_bench_models.py --benchmark-enable``
(pyproject disables benchmarking by default, so a plain run only checks they work).
"""

from __future__ import annotations

import pytest
import torch

from bench.method import method_class, method_names
from deep.models import create_model

WIDTH = 0.125
INPUT = (1, 3, 96, 128)
#: the networks of the papers (deep.method; the library reference networks come in one size)
NETWORKS = sorted(method_class(m).network for m in method_names() if method_class(m).__module__ == "deep.method")


@pytest.mark.parametrize("name", NETWORKS)
def test_bench_forward(benchmark, name):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(name, 21, width=WIDTH).eval()
    x = torch.randn(*INPUT)

    def forward():
        with torch.inference_mode():
            return model(x)

    benchmark.extra_info.update({"model": name, "width": WIDTH, "input": "x".join(map(str, INPUT))})
    y = benchmark(forward)
    assert y.shape == (1, 21, 96, 128)
