"""Output of ``bench speed``: the rows of a sweep or of a classical method as markdown, CSV or JSON."""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from bench.files import dumps
from bench.formatting import fmt_value

_MD_COLUMNS = [
    "model", "width", "input_hw", "batch_size", "precision", "layout", "mode", "status", "images_per_s",
    "latency_p50_ms", "latency_p95_ms", "speedup_vs_eager_fp32", "e2e_images_per_s", "loader_images_per_s",
    "limited_by", "peak_mem_mib", "achieved_tflops", "fraction_of_peak", "warmup_s", "note",
    # classical_speed rows
    "method", "processes", "threads", "num_images", "ms_per_image_p50", "ms_per_image_p95",
    "edge_map_ms_p50", "partition_ms_p50", "features_ms_p50", "classifier_ms_p50", "crf_inference_ms_p50",
]
#: settings shared by every row: listed once above the markdown table
_MD_HEADER = ["dataset", "device_name", "torch", "torchvision", "cuda", "cudnn", "driver", "python", "git_commit",
              "gflops_per_image", "peak_tflops", "num_workers"]


def hw_text(input_hw: Sequence[int]) -> str:
    """An input size as records show it: ``(360, 480)`` -> ``"360x480"``."""
    return f"{int(input_hw[0])}x{int(input_hw[1])}"


def _markdown(df: pd.DataFrame) -> str:
    lines = []
    for key in _MD_HEADER:
        if key in df.columns:
            vals = [v for v in df[key].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
            uniq = list(dict.fromkeys(fmt_value(v) for v in vals))
            if uniq:
                lines.append(f"- {key}: {', '.join(uniq)}")
    cols = [c for c in _MD_COLUMNS if c in df.columns and not df[c].isna().all()]
    if "note" in cols and not any(df["note"].fillna("").astype(str).str.strip()):
        cols.remove("note")
    table = [[fmt_value(v) for v in row] for row in df[cols].itertuples(index=False)]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table]
    return "\n".join(lines + ([""] if lines else []) + out) + "\n"


def format_speed(df: pd.DataFrame | dict, fmt: str = "md") -> str:
    """The table as ``md`` (settings shared by every row in a header), ``csv`` or ``json``.

    ``df``: a :func:`bench.speed.speed_table` frame, a :func:`bench.speed.classical_speed`
    result (its ``rows``) or one record.
    """
    if isinstance(df, dict):
        df = pd.DataFrame(df["rows"] if "rows" in df else [df])
    fmt = fmt.lower()
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return dumps(df.to_dict(orient="records"), indent=2, sort_keys=False)
    if fmt not in ("md", "markdown"):
        raise ValueError(f"format must be md, csv or json, not {fmt!r}")
    return _markdown(df)
