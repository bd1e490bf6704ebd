"""report.html: the leaderboards, plots, per-class tables and reproduce commands as one self-contained page."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from bench.files import write_atomic
from bench.formatting import DASH, fmt_count, fmt_interval, fmt_pct, fmt_rate, fmt_value, is_finite_number
from bench.record import Record
from bench.report.aggregate import METRICS, Section, num, safe_name
from bench.report.tables import TRANSPOSE_CLASSES

__all__ = ["render_html_report", "write_html_report"]

#: the charts among build_report's per-section plots (title -> PNG); the others show images
#: (the predictions grid, the evidence figures) and go under "Qualitative results", full width
CHARTS = ("mIoU vs speed", "per-class IoU")
#: extra_* leaderboard columns shown in the HTML table: column -> (title, kind of figure)
EXTRA_COLUMNS = {"extra_oracle_miou": ("oracle mIoU", "pct"), "extra_regions_per_image": ("regions/image", "int")}


def _env() -> Environment:
    """The template environment: every value HTML-escaped, unknown names an error."""
    return Environment(loader=PackageLoader("bench.report", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _cell(text: str, sort: Any = None, numeric: bool = True, tip: str | None = None, sub: str = "") -> dict[str, Any]:
    """A table cell: its text, the key the page sorts by ("" = missing, sorted last), a tooltip and a
    second, smaller line (``sub``)."""
    if numeric:
        x = num(sort)
        key = "" if math.isnan(x) else repr(x)
    else:
        key = str(text)
    return {"text": text, "sort": key, "numeric": numeric, "tip": tip, "sub": sub}


def _metric_cell(row: pd.Series, key: str) -> dict[str, Any]:
    """A fraction as %: "mean" (" ± std" over seeds), and "[lo, hi]" below it where the frame has a
    finite ``<key>_lo``/``<key>_hi`` (the bootstrap interval)."""
    mean, std, n = num(row.get(key)), num(row.get(f"{key}_std")), num(row.get("n_seeds"))
    text = fmt_pct(mean, std, int(n) if is_finite_number(n) else 1)
    lo, hi = num(row.get(f"{key}_lo")), num(row.get(f"{key}_hi"))
    ok = text != DASH and is_finite_number(lo) and is_finite_number(hi)
    return _cell(text, mean, sub=f"[{fmt_pct(lo)}, {fmt_pct(hi)}]" if ok else "")


def _has_values(rows: pd.DataFrame, col: str) -> bool:
    """Whether some row has a number (or a non-empty text) in ``col``."""
    if col not in rows:
        return False
    vals = rows[col].dropna()
    return bool(len(vals)) and (pd.to_numeric(vals, errors="coerce").notna().any() or (vals.astype(str) != "").any())


def _columns(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(title, frame column) of the HTML leaderboard; optional columns only where some row has a value."""
    cols = [("rank", "rank"), ("method", "label"), ("kind", "kind")]
    cols += [(title, key) for key, title in METRICS.items()]
    cols += [(title, c) for c, (title, _) in EXTRA_COLUMNS.items() if _has_values(rows, c)]
    cols += [("images/s", "images_per_s"), ("params", "params"), ("device", "device"), ("seeds", "n_seeds")]
    return cols + [(title, c) for title, c in (("vs best", "vs_best"), ("vs prior", "vs_prior"),
                                               ("reads image", "reads_image")) if _has_values(rows, c)]


def _leaderboard_cell(row: pd.Series, col: str) -> dict[str, Any]:
    if col in METRICS or EXTRA_COLUMNS.get(col, ("", ""))[1] == "pct":
        return _metric_cell(row, col)
    if col in EXTRA_COLUMNS:
        return _cell(fmt_value(num(row[col]), digits=0), row[col])
    if col == "images_per_s":
        speed, std = num(row[col]), num(row.get(f"{col}_std"))
        return _cell(fmt_rate(speed) + (f" ± {fmt_rate(std)}" if is_finite_number(std) else ""), speed)
    if col == "params":
        return _cell(fmt_count(num(row[col])), row[col])
    if col in ("rank", "n_seeds"):
        return _cell(fmt_value(row[col]), row[col])
    text = "" if pd.isna(row[col]) else str(row[col])
    tip = f"settings: {row['settings']}" if col == "label" else None
    if col in ("vs_best", "vs_prior") and is_finite_number(p := num(row.get(f"p_{col}_holm"))):
        tip = f"p = {p:.3g} against the {'best' if col == 'vs_best' else 'location-prior'} row (Holm-adjusted)"
    if col == "reads_image" and is_finite_number(p := num(row.get("p_reads_image_holm"))):
        tip = f"{100 * num(row['photo_gain']):+.1f} mIoU over its own mode map, p = {p:.3g} (Holm-adjusted)"
    return _cell(text.replace(";", ", ") or DASH, numeric=False, tip=tip)


def _leaderboard(s: Section, frame: pd.DataFrame) -> dict[str, Any]:
    """The ranked rows of one section, from the leaderboard frame (what leaderboard.csv holds)."""
    rows = frame[(frame["dataset"] == s.dataset) & (frame["eval_split"] == s.split) & (frame["status"] == "ok")]
    cols = _columns(rows)
    return {
        "columns": [{"title": t, "numeric": c not in ("label", "kind", "device")} for t, c in cols],
        "rows": [[_leaderboard_cell(r, c) for _, c in cols] for _, r in rows.iterrows()],
        "intervals": any(_has_values(rows, f"{k}_lo") for k in METRICS),
        "compared": _has_values(rows, "vs_best"),
        "prior_compared": _has_values(rows, "vs_prior"),
        "reads_tested": _has_values(rows, "reads_image"),
    }


def _class_grid(part: pd.DataFrame, column: str, methods: list[str], classes: pd.Index) -> np.ndarray | None:
    """``column`` of the per-class frame as a methods x classes array (None when the frame lacks it)."""
    if column not in part:
        return None
    g = part.pivot_table(index="method", columns="class_index", values=column, aggfunc="first", dropna=False)
    return g.reindex(index=methods, columns=classes).to_numpy(dtype=float)


def _class_cell(v: float, lo: float, hi: float) -> dict[str, Any]:
    """A per-class IoU cell, shaded by its value; its interval, when there is one, as the tooltip."""
    tip = fmt_interval(v, lo, hi) if is_finite_number(lo) and is_finite_number(hi) else None
    return dict(_cell(fmt_pct(v), v, tip=tip), shade=None if math.isnan(v) else float(v))


def _per_class(s: Section, frame: pd.DataFrame) -> dict[str, Any] | None:
    """Per-class IoU of one section from the per-class frame; ``iou_lo``/``iou_hi``, when present, as tooltips."""
    part = frame[(frame["dataset"] == s.dataset) & (frame["eval_split"] == s.split)]
    if part.empty:
        return None
    methods = list(dict.fromkeys(part["method"]))
    names = part.drop_duplicates("class_index").set_index("class_index")["class"].sort_index()
    iou, lo, hi = (_class_grid(part, c, methods, names.index) for c in ("iou", "iou_lo", "iou_hi"))
    heads, keys = list(names), methods
    transposed = len(names) > TRANSPOSE_CLASSES  # classes as rows, like leaderboard.md
    if transposed:
        heads, keys, iou = methods, list(names), iou.T
        lo, hi = (None if a is None else a.T for a in (lo, hi))
    nan = np.full_like(iou, np.nan)
    lo, hi = (nan if a is None else a for a in (lo, hi))
    rows = [{"key": k, "cells": [_class_cell(*x) for x in zip(iou[i], lo[i], hi[i])]} for i, k in enumerate(keys)]
    return {"corner": "class" if transposed else "method", "heads": heads, "rows": rows, "transposed": transposed}


def _data_uri(path: Path) -> str:
    """A PNG as a ``data:`` URI, so the page keeps its images when moved."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _reproduce(r: Record, label: str) -> dict[str, Any]:
    versions = ", ".join(f"{k} {v}" for k, v in (r.versions or {}).items()) or DASH
    return {"label": label, "seed": fmt_value(r.seed), "device": r.device or DASH, "git": r.git_commit or DASH,
            "job": r.job_id, "versions": versions, "error": r.error or "",
            "command": r.command or "(no command recorded)"}


def _convention(s: Section) -> str:
    conv = sorted({str(r.miou_convention) for g in s.ranked for r in g.ok if r.miou_convention})
    if len(conv) > 1:
        return "Warning: mixed mIoU conventions, rows are not comparable: " + ", ".join(conv)
    return f"mIoU convention: {conv[0]}" if conv else "mIoU convention: not recorded"


def _section(s: Section, plots: dict[str, Path], leaderboard: pd.DataFrame, per_class: pd.DataFrame) -> dict:
    """Everything the template shows for one dataset/split, as text and numbers."""
    figures = {t: {"title": t, "file": p.name, "src": _data_uri(p)} for t, p in plots.items()}
    return {
        "anchor": "s-" + safe_name(f"{s.dataset}-{s.split}"), "title": s.title, "convention": _convention(s),
        "leaderboard": _leaderboard(s, leaderboard) if s.ranked else None,
        "skipping": any(g.skips_bad_samples for g in s.ranked),
        "failed": [_reproduce(r, g.label) for g, r in s.failed],
        "reproduce": [_reproduce(r, g.label) for g in s.ranked for r in g.ok],
        "per_class": _per_class(s, per_class) if s.ranked else None,
        "plots": [f for t, f in figures.items() if t in CHARTS],
        "qualitative": [f for t, f in figures.items() if t not in CHARTS],
        "notes": list(s.notes),
    }


def render_html_report(sections: list[Section], plots: list[dict[str, Path]], leaderboard: pd.DataFrame,
                       per_class: pd.DataFrame, source: str) -> str:
    """The page: ``plots`` holds each section's plots (title -> PNG), in the order of ``sections``;
    ``leaderboard``/``per_class`` are :func:`~bench.report.aggregate.leaderboard_frame` and
    :func:`~bench.report.aggregate.per_class_frame` of ``sections`` (interval columns
    ``<metric>_lo``/``<metric>_hi`` are shown when present)."""
    n_ok = sum(len(g.ok) for s in sections for g in s.groups)
    n_failed = sum(len(g.failed) for s in sections for g in s.groups)
    return _env().get_template("report.html.j2").render(
        sections=[_section(s, p, leaderboard, per_class) for s, p in zip(sections, plots, strict=True)],
        n_ok=n_ok, n_failed=n_failed, source=source.strip("`"))  # build_report gives it as Markdown code


def write_html_report(path: str | Path, sections: list[Section], plots: list[dict[str, Path]],
                      leaderboard: pd.DataFrame, per_class: pd.DataFrame, source: str) -> Path:
    """:func:`render_html_report` written atomically to ``path``."""
    return write_atomic(path, render_html_report(sections, plots, leaderboard, per_class, source))
