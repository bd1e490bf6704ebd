"""Parameter and FLOP table of the networks (``python -m bench models``): one row per
registered method that declares ``capabilities.network``, built by its ``create_network``.

Every network is built on the meta device (no memory, no init cost) and run once there
under :func:`bench.torch_helpers.count_flops`, which counts from shapes alone, so the
full-width table takes seconds.

FLOP convention: FLOPs = 2 x multiply-accumulates of the convolutions / transposed
convolutions / matrix products, batch 1, at the given input size. Pooling, unpooling, BN,
ReLU, padding and interpolation are not counted.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import torch

from bench.method import create_method, method_class, method_names
from bench.torch_helpers import count_flops

COLUMNS = [
    "name",
    "params",
    "paper_params",
    "paper_classes",
    "params_vs_paper",
    "gflops",
    "output_stride",
    "min_input_size",
]


def network_methods() -> list[str]:
    """Names of the registered methods that have a network (``capabilities.network``)."""
    return [name for name in method_names() if method_class(name).capabilities.network]


def _build(name: str, num_classes: int, width: float) -> tuple[torch.nn.Module, int]:
    """The method's network on the meta device (at ``width`` where it has that setting)."""
    has_width = "width" in {f.name for f in dataclasses.fields(method_class(name).Settings)}
    with torch.device("meta"):
        model = create_method(name, {"width": width} if has_width else {}).create_network(num_classes)
    return model, sum(p.numel() for p in model.parameters())


def model_table(
    input_hw: tuple[int, int] = (360, 480),
    num_classes: int = 21,
    width: float = 1.0,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """One row per network method (default: all of :func:`network_methods`).

    ``params`` is the count for ``num_classes`` at ``width``; ``paper_params`` the paper's
    figure for ``paper_classes`` classes; ``params_vs_paper`` the difference in percent
    between our count *at the paper's class count* (and ``width``) and the paper's figure
    (NaN when the paper reports none); ``gflops`` one forward pass at batch 1 on
    ``input_hw`` (2 x MACs).
    """
    rows = []
    for name in names or network_methods():
        model, params = _build(name, num_classes, width)
        paper = getattr(model, "paper_params", None)
        paper_k = getattr(model, "paper_num_classes", None)
        if paper is None:
            vs = math.nan
        else:
            ours = params if paper_k in (None, num_classes) else _build(name, paper_k, width)[1]
            vs = round(100.0 * (ours - paper) / paper, 2)
        rows.append(
            {
                "name": name,
                "params": params,
                "paper_params": paper,
                "paper_classes": paper_k,
                "params_vs_paper": vs,
                "gflops": round(count_flops(model, input_hw) / 1e9, 2),
                "output_stride": getattr(model, "output_stride", None),
                "min_input_size": getattr(model, "min_input_size", None),
            }
        )
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["paper_params"] = df["paper_params"].astype("Int64")
    df["paper_classes"] = df["paper_classes"].astype("Int64")
    return df


def _fmt_cell(col: str, v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if col in ("params", "paper_params"):
        return f"{int(v) / 1e6:.3f}M" if int(v) < 10_000_000 else f"{int(v) / 1e6:.2f}M"
    if col == "params_vs_paper":
        return f"{v:+.2f}%"
    if col == "gflops":
        return f"{v:.1f}"
    return str(v)


def format_table(df: pd.DataFrame, fmt: str = "md") -> str:
    """``"md"``: a GitHub markdown table (params in millions); ``"csv"``: raw numbers."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt not in ("md", "markdown"):
        raise ValueError(f"unknown table format {fmt!r}; use 'md' or 'csv'")
    cols = list(df.columns)
    header = {
        "params": "params",
        "paper_params": "paper params",
        "paper_classes": "paper classes",
        "params_vs_paper": "vs paper",
        "gflops": "GFLOPs",
        "output_stride": "output stride",
        "min_input_size": "min input",
    }
    lines = [
        "| " + " | ".join(header.get(c, c) for c in cols) + " |",
        "|" + "|".join("---" if c == "name" else "---:" for c in cols) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(c, v) for c, v in zip(cols, row)) + " |")
    return "\n".join(lines) + "\n"
