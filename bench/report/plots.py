"""Report figures (mIoU vs speed, per-class IoU), drawn on Agg-backed Figures without pyplot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.files import write_atomic
from bench.formatting import DASH, is_finite_number
from bench.report.aggregate import ClassTable, Group, Section

DPI = 120
#: per-class plot becomes a heatmap above this many classes (or methods)
HEATMAP_CLASSES = 15
HEATMAP_METHODS = 8

KIND_STYLE = {
    "classical": dict(marker="o", color="tab:blue"),
    "deep": dict(marker="^", color="tab:orange"),
}
OTHER_STYLE = dict(marker="s", color="tab:gray")


def figure(w: float, h: float):
    """A ``w`` x ``h`` inch figure (no pyplot, no global backend state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI)


def save_figure(fig, path: Path, **kwargs: Any) -> Path:
    """``fig`` as a PNG at ``path``, written atomically."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=DPI, **kwargs))


def _miou_error(g: Group) -> tuple[float, float] | None:
    """The mIoU error bar (down, up) in points: the bootstrap interval, else ± the std over seeds."""
    m, mstd, n = g.stat("miou")
    lo, hi = g.interval.interval("miou") if g.interval is not None else (None, None)
    if is_finite_number(lo) and is_finite_number(hi):
        return 100 * max(0.0, m - lo), 100 * max(0.0, hi - m)
    return (100 * mstd, 100 * mstd) if n > 1 and is_finite_number(mstd) else None


def plot_miou_vs_speed(s: Section, path: Path) -> bool:
    """mIoU (%) against images/s (log x), one marker/colour per kind, points labelled; error bars
    are the bootstrap intervals (else ± the std over seeds)."""
    pts = []
    skipped = []
    for g in s.ranked:
        m = g.stat("miou")[0]
        v = g.stat("images_per_s")[0]
        if is_finite_number(m) and is_finite_number(v) and v > 0:
            pts.append((g, v, 100 * m, _miou_error(g)))
        else:
            skipped.append(g.label)
    if not pts:
        s.notes.append("mIoU vs speed plot skipped: no ok job has both mIoU and images/s.")
        return False
    fig = figure(7.5, 5.0)
    ax = fig.add_subplot()
    seen: set[str] = set()
    for i, (g, x, y, yerr) in enumerate(pts):
        kind = g.kind
        style = KIND_STYLE.get(kind, OTHER_STYLE)
        lab = kind if kind not in seen else None
        seen.add(kind)
        ax.errorbar([x], [y], yerr=[[yerr[0]], [yerr[1]]] if yerr else None, linestyle="none", markersize=9,
                    markeredgecolor="black", markeredgewidth=0.6, capsize=3, label=lab, **style)
        ax.annotate(g.label, (x, y), xytext=(8, 6 if i % 2 == 0 else -13), textcoords="offset points",
                    fontsize=8.5, arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=1, shrinkB=5))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)
    texts = list(ax.texts)
    ax.set_xlabel("images / s (log scale, higher is faster)")
    ax.set_ylabel("mIoU (%)" + (", bars: 95% interval" if s.bootstrap else ""))
    ax.set_title(f"{s.title}: mIoU vs speed")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i] != "classical", labels[i] != "deep", labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], title="kind", loc="best", fontsize=9)
    if skipped:
        fig.text(0.01, 0.01, "not plotted (no mIoU or speed): " + ", ".join(skipped), fontsize=7, color="gray")
    fig.tight_layout()
    _separate_labels(fig, texts)
    save_figure(fig, path)
    return True


def _separate_labels(fig, texts: list, iterations: int = 60) -> None:
    """Nudge overlapping point labels (annotations in offset points) apart vertically."""
    if len(texts) < 2:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    renderer = FigureCanvasAgg(fig).get_renderer()
    pt_per_px = 72.0 / fig.dpi
    # the text's own box (an Annotation's extent also covers its leader line)
    extent = lambda t: Text.get_window_extent(t, renderer).expanded(1.0, 1.15)  # noqa: E731
    for _ in range(iterations):
        moved = False
        boxes = [extent(t) for t in texts]
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                a, b = boxes[i], boxes[j]
                if a.overlaps(b):
                    dy = (min(a.y1, b.y1) - max(a.y0, b.y0)) / 2 + 1
                    up, down = (j, i) if b.y0 + b.y1 >= a.y0 + a.y1 else (i, j)
                    for k, sign in ((up, 1), (down, -1)):
                        x, y = texts[k].xyann
                        texts[k].xyann = (x, max(-80.0, min(80.0, y + sign * dy * pt_per_px)))
                    boxes[i], boxes[j] = extent(texts[i]), extent(texts[j])
                    moved = True
        if not moved:
            break


def _heatmap(s: Section, t: ClassTable, vals: np.ndarray):
    import matplotlib

    n_m, n_c = len(t.methods), len(t.classes)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgray")
    fig = figure(max(6.0, 1.1 * n_m + 3.5), max(4.0, 0.26 * n_c + 2.2))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(vals.T), aspect="auto", cmap=cmap, vmin=0, vmax=100,
                   interpolation="nearest")
    ax.set_xticks(range(n_m), t.methods, rotation=35, ha="right", fontsize=9)
    ax.set_yticks(range(n_c), t.classes, fontsize=8 if n_c <= 40 else 6.5)
    if n_c * n_m <= 800:
        for c in range(n_c):
            for m in range(n_m):
                v = vals[m, c]
                ax.text(m, c, DASH if np.isnan(v) else f"{v:.0f}", ha="center", va="center",
                        fontsize=6.5, color="white" if not np.isnan(v) and v < 55 else "black")
    fig.colorbar(im, ax=ax, label="IoU (%)", shrink=0.8)
    ax.set_title(f"{s.title}: per-class IoU (%)")
    return fig


def _bars(s: Section, t: ClassTable, vals: np.ndarray):
    import matplotlib

    n_m, n_c = len(t.methods), len(t.classes)
    colors = matplotlib.colormaps["tab10"]
    fig = figure(min(24.0, max(7.0, n_c * (0.22 * n_m + 0.35) + 1.5)), 5.0)
    ax = fig.add_subplot()
    x = np.arange(n_c)
    w = 0.8 / max(n_m, 1)
    for m in range(n_m):
        ax.bar(x - 0.4 + w * (m + 0.5), np.nan_to_num(vals[m], nan=0.0), width=w, label=t.methods[m],
               color=colors(m % 10), edgecolor="black", linewidth=0.3)
    ax.set_xticks(x, t.classes, rotation=40, ha="right", fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_ylabel("IoU (%)")
    ax.set_title(f"{s.title}: per-class IoU (%)  (missing bars: class absent)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(n_m, 4), loc="upper right")
    return fig


def plot_per_class(s: Section, t: ClassTable, path: Path) -> str:
    """Grouped bars per class, or a heatmap (classes x methods) when there are many; returns which."""
    vals = 100 * t.mean
    heatmap = len(t.classes) > HEATMAP_CLASSES or len(t.methods) > HEATMAP_METHODS
    fig = (_heatmap if heatmap else _bars)(s, t, vals)
    fig.tight_layout()
    save_figure(fig, path)
    return "heatmap" if heatmap else "bars"
