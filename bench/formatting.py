"""Number formatting for every table segbench prints (leaderboards, speed, evaluate): one
rule per kind of figure, and one mark ("–") for a missing one."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DASH = "–"


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)) \
        and math.isfinite(float(x))


def fmt_pct(mean: Any, std: Any = math.nan, n: int = 1) -> str:
    """A fraction as a percentage: 0.4567 -> "45.7"; with several seeds "45.7 ± 1.2"."""
    if not is_finite_number(mean):
        return DASH
    s = f"{100 * float(mean):.1f}"
    if n > 1 and is_finite_number(std):
        s += f" ± {100 * float(std):.1f}"
    return s


def fmt_interval(value: Any, lo: Any, hi: Any) -> str:
    """A fraction with its interval, as percentages: "44.0 [41.2, 46.9]"."""
    if not is_finite_number(value):
        return DASH
    if not (is_finite_number(lo) and is_finite_number(hi)):
        return fmt_pct(value)
    return f"{fmt_pct(value)} [{fmt_pct(lo)}, {fmt_pct(hi)}]"


def fmt_rate(x: Any) -> str:
    """A speed or a time: three significant figures at most, thousands separated."""
    if not is_finite_number(x):
        return DASH
    x = float(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.01:
        return f"{x:.2f}"
    if x == 0:
        return "0"
    return f"{x:.2g}"


def fmt_count(x: Any) -> str:
    """A large count (parameters, FLOPs): 1234567 -> "1.23M"."""
    if not is_finite_number(x):
        return DASH
    x = float(x)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def fmt_value(v: Any, digits: int | None = None) -> str:
    """Any table cell: numbers by :func:`fmt_rate` (or fixed ``digits``), booleans as yes/blank,
    missing values as the dash, anything else as text."""
    if v is None:
        return DASH
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return DASH
        return f"{float(v):.{digits}f}" if digits is not None else fmt_rate(v)
    return str(v)
