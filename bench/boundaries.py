"""The BSDS500 boundary benchmark of the registered edge methods: ODS, OIS and AP, and their table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.formatting import fmt_value
from bench.method import Method, MethodError, create_method, method_class, method_names
from bench.metrics.boundary_matching import MATCHINGS, MAX_DIST
from bench.metrics.boundary_pr import image_counts, summarise, threshold_values

#: published results on the BSDS500 test set (Arbelaez et al., TPAMI 2011, table 1)
PUBLISHED = {
    "human": {"ods": 0.80, "ois": 0.80, "ap": None},
    "canny (published)": {"ods": 0.60, "ois": 0.63, "ap": 0.58},
}
#: columns of the table, in order
COLUMNS = ("method", "ods", "ois", "ap", "ods_p", "ods_r", "ods_threshold", "images", "thresholds", "seconds")


def edge_methods() -> list[str]:
    """Names of the registered methods that give an edge-strength map (``capabilities.edge_map``)."""
    return [name for name in method_names() if method_class(name).capabilities.edge_map]


def create_edge_method(name: str, settings: dict[str, Any] | None = None) -> Method:
    """The method ``name`` with ``settings``; MethodError when it gives no edge map."""
    if not method_class(name).capabilities.edge_map:
        raise MethodError(f"method '{name}' gives no edge map; edge methods: {', '.join(edge_methods())}")
    return create_method(name, settings)


def evaluate_boundaries(
    strength_fn: Callable[[np.ndarray], np.ndarray],
    split,
    thresholds: int | Sequence[float] = 99,
    progress: bool = True,
    limit: int | None = None,
    max_dist: float = MAX_DIST,
    matching: str = "maximum",
) -> dict:
    """Run the boundary benchmark of ``strength_fn`` (RGB image -> HxW in [0, 1]) on a BSDS split.

    ``split`` needs ``len``, ``load(i).image`` and ``boundaries(i)``. Returns a dict with
    ``ods``, ``ois``, ``ap`` (plus P/R at ODS and OIS, the ODS threshold), the PR curve
    (``thresholds``, ``precision``, ``recall``, ``f``), per-image ``counts``
    (n_images x n_thresholds x [cntR, sumR, cntP, sumP]) and ``seconds``.
    """
    ts = threshold_values(thresholds)
    n = len(split) if limit is None else min(int(limit), len(split))
    if n < 1:
        raise ValueError("no image to evaluate")
    start = time.perf_counter()
    counts = np.zeros((n, len(ts), 4), np.float64)
    for idx in range(n):
        image = split.load(idx).image
        strength = np.asarray(strength_fn(image), np.float64)
        counts[idx] = image_counts(strength, split.boundaries(idx), ts, max_dist=max_dist, matching=matching)
        if progress:
            print(f"\r  {idx + 1}/{n} images, {time.perf_counter() - start:.0f}s", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    res = summarise(counts, ts)
    res["seconds"] = time.perf_counter() - start
    return res


def run_boundary_benchmark(
    root: str | Path,
    split: str = "val",
    methods: Sequence[str] | None = None,
    thresholds: int | Sequence[float] = 33,
    limit: int | None = None,
    progress: bool = True,
    matching: str = "maximum",
    settings: Mapping[str, dict[str, Any]] | None = None,
):
    """Evaluate edge methods (default: every registered one) on BSDS500 -> pandas DataFrame, one row each.

    ``settings`` maps a method name to its settings (defaults otherwise).
    """
    import pandas as pd

    from bench.datasets import get_dataset

    if matching not in MATCHINGS:
        raise ValueError(f"unknown matching {matching!r}; known: {', '.join(MATCHINGS)}")
    names = list(edge_methods() if methods is None else methods)
    created = [(name, create_edge_method(name, (settings or {}).get(name))) for name in names]
    data = get_dataset("bsds500", root).split(split)
    rows = []
    for name, method in created:
        if progress:
            print(f"{name}:", file=sys.stderr)
        res = evaluate_boundaries(method.edge_strength, data, thresholds=thresholds, progress=progress,
                                  limit=limit, matching=matching)
        rows.append({
            "method": name, "ods": res["ods"], "ois": res["ois"], "ap": res["ap"],
            "ods_p": res["ods_p"], "ods_r": res["ods_r"], "ods_threshold": res["ods_threshold"],
            "images": res["n_images"], "thresholds": len(res["thresholds"]), "seconds": res["seconds"],
        })
    return pd.DataFrame(rows)


def format_markdown(df, digits: int = 3) -> str:
    """Markdown table of a :func:`run_boundary_benchmark` frame (seconds without decimals)."""
    cols = [c for c in COLUMNS if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = [fmt_value(row[c], 0 if c == "seconds" else digits) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_boundary_table(df, fmt: str = "md") -> str:
    """The table as ``md`` (with the published reference rows), ``csv`` or ``json``."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2)
    if fmt != "md":
        raise ValueError(f"format must be md, csv or json, not {fmt!r}")
    published = ", ".join(f"{name} ODS {v['ods']:.2f}" for name, v in PUBLISHED.items())
    return format_markdown(df) + f"\n\nPublished (BSDS500 test, Arbelaez et al. 2011): {published}."
