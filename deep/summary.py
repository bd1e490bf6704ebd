"""Parameter and FLOP table of the registered networks (``python -m bench models``).

Every network is built on the meta device (no memory, no init cost) and run once there
under :class:`torch.utils.flop_counter.FlopCounterMode`, which counts from shapes alone,
so the full-width table takes seconds.

FLOP convention: FLOPs = 2 x multiply-accumulates of the convolutions / transposed
convolutions / matrix products (FlopCounterMode's convention), batch 1, at the given input
size. Pooling, unpooling, BN, ReLU, padding and interpolation are not counted.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from deep.models import create_model, model_names

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


def _count(name: str, num_classes: int, width: float):
    with torch.device("meta"):
        model = create_model(name, num_classes, width=width)
    return model, sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> int:
    """FLOPs (2 x MACs) of one forward pass at batch 1, counted on the meta device."""
    model = model.eval()
    x = torch.empty(1, in_channels, *input_hw, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def model_table(
    input_hw: tuple[int, int] = (360, 480),
    num_classes: int = 21,
    width: float = 1.0,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """One row per network.

    ``params`` is the count for ``num_classes`` at ``width``; ``paper_params`` the paper's
    figure for ``paper_classes`` classes; ``params_vs_paper`` the difference in percent
    between our count *at the paper's class count* (and ``width``) and the paper's figure
    (NaN when the paper reports none); ``gflops`` one forward pass at batch 1 on
    ``input_hw`` (2 x MACs).
    """
    rows = []
    for name in names or model_names():
        model, params = _count(name, num_classes, width)
        paper = model.paper_params
        paper_k = model.paper_num_classes
        if paper is None:
            vs = math.nan
        else:
            ours = params if paper_k in (None, num_classes) else _count(name, paper_k, width)[1]
            vs = round(100.0 * (ours - paper) / paper, 2)
        rows.append(
            {
                "name": name,
                "params": params,
                "paper_params": paper,
                "paper_classes": paper_k,
                "params_vs_paper": vs,
                "gflops": round(count_flops(model, input_hw, model.in_channels) / 1e9, 2),
                "output_stride": model.output_stride,
                "min_input_size": model.min_input_size,
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
