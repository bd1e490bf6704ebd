"""Reports from job records: leaderboards, per-class IoU tables and plots.

:func:`build_report` reads ``<out>/records.jsonl`` (see :mod:`bench.records` for the
fields) and writes, into the same folder:

- ``leaderboard.csv``: one row per (dataset, eval_split, method, settings) group of ok
  records, ranked by mIoU within each dataset/split, then one row per failed record
  (``status`` "failed", metrics empty, ``error`` set). Metrics are fractions in [0, 1] at
  full precision; ``<metric>_std`` is the sample standard deviation (ddof=1) over seeds
  (empty for one seed). Also ``extra_<key>`` for numeric ``extra`` figures (e.g.
  ``extra_oracle_miou``), ``miou_conv_<name>`` for every ``miou_by_convention`` entry, and
  the provenance (device, git commit, job ids, commands).
- ``leaderboard.md``: a section per dataset/split with the ranked table (percentages,
  one decimal, "mean ± std" when several seeds), the failed jobs with their errors, the
  mIoU convention, a "How to reproduce" list (command, seed, device, git commit, versions
  of every record behind every row), the per-class IoU table and the plots. Jobs run with
  ``--skip-bad-samples`` form their own rows, labelled ``[--skip-bad-samples]``, with a
  ``skipped samples`` column, a warning above the table when any sample was left out and a
  note naming each left-out sample and its error.
- ``per_class_iou.csv``: long format, one row per (dataset, eval_split, method, class)
  with the IoU averaged over seeds; classes that are NaN for every method are left out.
- ``miou_vs_speed.png``, ``per_class_iou.png``, ``predictions_grid.png``: one set per
  dataset/split, suffixed ``_<dataset>`` (``_<dataset>_<split>`` when a dataset has
  several eval splits) as soon as the records hold more than one dataset/split.

:func:`format_leaderboard_text` gives a compact table for a terminal.

Nothing here uses pyplot: figures are :class:`matplotlib.figure.Figure` objects rendered
by the Agg canvas, so no global backend state is touched.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from bench.records import RECORDS_FILE, latest_by_job, read_records

DASH = "–"
DPI = 120
#: metric fields (fractions in [0, 1]) and their leaderboard titles
METRICS: dict[str, str] = {
    "miou": "mIoU",
    "pixel_acc": "pixel acc",
    "mean_acc": "class acc",
    "fwiou": "fwIoU",
    "bf": "BF",
}
COSTS = ("images_per_s", "predict_time_per_image_s", "fit_time_s", "params")
#: per-class tables with more classes than this get classes as rows
TRANSPOSE_CLASSES = 12
#: per-class plot becomes a heatmap above this many classes (or methods)
HEATMAP_CLASSES = 15
HEATMAP_METHODS = 8
#: rows of the predictions grid
GRID_MAX_IMAGES = 4
GRID_PANEL_IN = 2.4

KIND_STYLE = {
    "classical": dict(marker="o", color="tab:blue"),
    "deep": dict(marker="^", color="tab:orange"),
}
OTHER_STYLE = dict(marker="s", color="tab:gray")


# ---------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------
def _num(value: Any) -> float:
    """A record value as a float; None, bad values and non-finite values -> NaN."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean and sample std (ddof=1) of the finite values, and how many there were."""
    arr = np.array([_num(v) for v in values], dtype=float)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n > 1 else math.nan
    return mean, std, n


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_pct(mean: float, std: float = math.nan, n: int = 1) -> str:
    """0.4567 -> "45.7"; with several seeds "45.7 ± 1.2"; NaN -> "–"."""
    if not _finite(mean):
        return DASH
    s = f"{100 * mean:.1f}"
    if n > 1 and _finite(std):
        s += f" ± {100 * std:.1f}"
    return s


def fmt_speed(x: float) -> str:
    if not _finite(x):
        return DASH
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.01:
        return f"{x:.2f}"
    return f"{x:.2g}"


def fmt_params(x: float) -> str:
    if not _finite(x):
        return DASH
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_code(s: str) -> str:
    s = s.replace("\n", " ")
    return f"`` {s} ``" if "`" in s else f"`{s}`"


_NUMERIC_CELL = re.compile(r"^[-–+\d.,±\s%kMGe]*$")


def _aligns(df: pd.DataFrame) -> list[str]:
    """Right-align the columns whose every cell is a formatted number (or a dash)."""
    return ["right" if len(df) and all(_NUMERIC_CELL.match(v) for v in df[c]) else "left" for c in df.columns]


def _to_markdown(df: pd.DataFrame, tablefmt: str = "pipe") -> str:
    """``DataFrame.to_markdown`` (tabulate); a plain table of the same shape if tabulate is missing."""
    df = df.astype(str)
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return _plain_table(df, pipe=tablefmt == "pipe")
    return df.to_markdown(index=False, tablefmt=tablefmt, disable_numparse=True, colalign=_aligns(df))


def _plain_table(df: pd.DataFrame, pipe: bool = True) -> str:
    cols = [str(c) for c in df.columns]
    rows = [[_md_cell(v) if pipe else str(v) for v in r] for r in df.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    right = [a == "right" for a in _aligns(df)]
    just = lambda cells: [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]  # noqa: E731
    if pipe:
        line = lambda cells: "| " + " | ".join(just(cells)) + " |"  # noqa: E731
        sep = "|" + "|".join(("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for w, r in zip(widths, right)) + "|"
    else:
        line = lambda cells: "  ".join(just(cells)).rstrip()  # noqa: E731
        sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cols), sep] + [line(r) for r in rows])


# ---------------------------------------------------------------------------------------
# grouping
# ---------------------------------------------------------------------------------------
@dataclass
class Group:
    """The records of one (dataset, eval_split, method, settings): one leaderboard row."""

    dataset: str
    split: str
    method: str
    settings: dict
    ok: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    label: str = ""

    @property
    def kind(self) -> str:
        kinds = sorted({str(r.get("kind")) for r in self.ok + self.failed if r.get("kind")})
        return "/".join(kinds) if kinds else DASH

    @property
    def skips_bad_samples(self) -> bool:
        """Its jobs ran with ``--skip-bad-samples`` (grouped apart from jobs that did not)."""
        return any(_skips(r) for r in self.ok + self.failed)

    def stat(self, key: str) -> tuple[float, float, int]:
        return _mean_std(r.get(key) for r in self.ok)

    def extra_stat(self, key: str) -> tuple[float, float, int]:
        return _mean_std((r.get("extra") or {}).get(key) for r in self.ok)

    def seeds(self, records: Sequence[dict] | None = None) -> list:
        return [r.get("seed") for r in (self.ok if records is None else records)]

    def joined(self, key: str, records: Sequence[dict] | None = None, sep: str = ", ") -> str:
        vals: list[str] = []
        for r in self.ok if records is None else records:
            v = r.get(key)
            if v is not None and str(v) not in vals:
                vals.append(str(v))
        return sep.join(vals)


@dataclass
class Section:
    """One dataset/split: its groups ranked by mIoU (failed-only groups last)."""

    dataset: str
    split: str
    groups: list[Group]
    suffix: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ranked(self) -> list[Group]:
        return [g for g in self.groups if g.ok]

    @property
    def failed(self) -> list[tuple[Group, dict]]:
        return [(g, r) for g in self.groups for r in g.failed]

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.split}"


def _settings_key(settings: Any) -> str:
    try:
        return json.dumps(settings or {}, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(settings)


def _label_groups(groups: list[Group]) -> None:
    """Method name, plus the settings that tell apart groups of the same method."""
    by_method: dict[str, list[Group]] = {}
    for g in groups:
        by_method.setdefault(g.method, []).append(g)
    for method, gs in by_method.items():
        if len(gs) == 1:
            gs[0].label = method + _skip_tag(gs[0])
            continue
        keys = sorted({k for g in gs for k in (g.settings or {})})
        differ = [k for k in keys if len({_settings_key((g.settings or {}).get(k)) for g in gs}) > 1]
        told_apart_by_flag = len({g.skips_bad_samples for g in gs}) == len(gs)
        for i, g in enumerate(gs):
            parts = [f"{k}={(g.settings or {}).get(k)}" for k in differ]
            label = f"{method} ({', '.join(parts)})" if parts else method if told_apart_by_flag else f"{method} #{i + 1}"
            g.label = label + _skip_tag(g)


#: appended to the label of rows whose jobs ran with --skip-bad-samples
SKIP_TAG = " [--skip-bad-samples]"


def _skips(rec: dict) -> bool:
    return bool((rec.get("extra") or {}).get("skip_bad_samples"))


def _skip_tag(g: Group) -> str:
    return SKIP_TAG if g.skips_bad_samples else ""


def _skip_notes(s: Section) -> list[str]:
    """One note per ok job that left samples out, naming them (the first few) and why."""
    notes = []
    for g in s.ranked:
        for r in g.ok:
            extra = r.get("extra") or {}
            n = _num(extra.get("skipped_samples"))
            if not _skips(r) or not n > 0:  # NaN compares False
                continue
            items = [x for x in extra.get("skipped_sample_list") or [] if isinstance(x, dict)]
            shown = "; ".join(f"{x.get('split')}/{x.get('id')}: {x.get('error')}" for x in items[:5])
            more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
            notes.append(f"**{g.label}** (seed {r.get('seed')}, job `{r.get('job_id')}`): {int(n)} unreadable "
                         f"sample(s) left out (`--skip-bad-samples`); its scores cover the other samples only. "
                         f"{_md_cell(shown + more)}")
    return notes


def _sort_key(g: Group):
    m = g.stat("miou")[0]
    return (0 if g.ok else 1, -m if _finite(m) else math.inf, g.label)


def group_records(records: Iterable[dict]) -> list[Section]:
    """Records (the last one per job_id) -> sections by dataset/split, groups ranked."""
    latest = latest_by_job(records)
    sections: dict[tuple[str, str], dict[tuple[str, str], Group]] = {}
    for rec in latest.values():
        ds = str(rec.get("dataset") or "unknown")
        sp = str(rec.get("eval_split") or "unknown")
        method = str(rec.get("method") or "unknown")
        settings = rec.get("settings") or {}
        key = (method, _settings_key(settings), _skips(rec))
        groups = sections.setdefault((ds, sp), {})
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(ds, sp, method, settings if isinstance(settings, dict) else {"settings": settings})
        (g.ok if rec.get("status") == "ok" else g.failed).append(rec)

    seed_key = lambda r: (r.get("seed") is None, _num(r.get("seed")), str(r.get("seed")))  # noqa: E731
    out = []
    for (ds, sp), groups in sorted(sections.items()):
        gs = list(groups.values())
        for g in gs:
            g.ok.sort(key=seed_key)
            g.failed.sort(key=seed_key)
        _label_groups(gs)
        gs.sort(key=_sort_key)
        out.append(Section(ds, sp, gs))

    if len(out) > 1:
        splits_per_ds: dict[str, int] = {}
        for s in out:
            splits_per_ds[s.dataset] = splits_per_ds.get(s.dataset, 0) + 1
        for s in out:
            name = s.dataset if splits_per_ds[s.dataset] == 1 else f"{s.dataset}_{s.split}"
            s.suffix = "_" + _safe_name(name)
    return out


# ---------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------
def _has_extra(records: Iterable[dict], key: str) -> bool:
    """Whether any record has a finite number under ``extra[key]``."""
    return any(_finite(_num((r.get("extra") or {}).get(key))) for r in records)


def _extra_keys(sections: list[Section]) -> list[str]:
    """Numeric scalar ``extra`` keys of any ok record (oracle_miou first)."""
    keys: list[str] = []
    for s in sections:
        for g in s.ranked:
            for r in g.ok:
                for k, v in (r.get("extra") or {}).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                        keys.append(k)
    return sorted(keys, key=lambda k: (k != "oracle_miou", k))


def _conventions(sections: list[Section]) -> list[str]:
    """Every key of ``miou_by_convention`` in an ok record."""
    keys: list[str] = []
    for s in sections:
        for g in s.ranked:
            for r in g.ok:
                for k in r.get("miou_by_convention") or {}:
                    if str(k) not in keys:
                        keys.append(str(k))
    return keys


def leaderboard_frame(sections: list[Section]) -> pd.DataFrame:
    """The machine-readable leaderboard (what goes into leaderboard.csv)."""
    extras = _extra_keys(sections)
    convs = _conventions(sections)
    rows = []
    for s in sections:
        for rank, g in enumerate(s.ranked, 1):
            row: dict[str, Any] = dict(
                dataset=s.dataset, eval_split=s.split, rank=rank, method=g.method, label=g.label,
                kind=g.kind, settings=_settings_key(g.settings), status="ok", n_seeds=len(g.ok),
                seeds=";".join(str(x) for x in g.seeds()), n_failed=len(g.failed),
            )
            for k in METRICS:
                row[k], row[f"{k}_std"], _ = g.stat(k)
            for k in COSTS:
                row[k], row[f"{k}_std"], _ = g.stat(k)
            for k in extras:
                row[f"extra_{k}"], row[f"extra_{k}_std"], _ = g.extra_stat(k)
            for c in convs:
                vals = [(r.get("miou_by_convention") or {}).get(c) for r in g.ok]
                row[f"miou_conv_{_safe_name(c)}"], row[f"miou_conv_{_safe_name(c)}_std"], _ = _mean_std(vals)
            row.update(
                device=g.joined("device", sep=";"), miou_convention=g.joined("miou_convention", sep=";"),
                git_commit=g.joined("git_commit", sep=";"), job_ids=g.joined("job_id", sep=";"),
                error="", command=g.joined("command", sep="\n"),
            )
            rows.append(row)
        for g, r in s.failed:
            rows.append(dict(
                dataset=s.dataset, eval_split=s.split, rank=None, method=g.method, label=g.label,
                kind=r.get("kind") or "", settings=_settings_key(g.settings), status=r.get("status") or "failed",
                n_seeds=None, seeds=str(r.get("seed")), n_failed=None, device=r.get("device") or "",
                miou_convention="", git_commit=r.get("git_commit") or "", job_ids=r.get("job_id") or "",
                error=r.get("error") or "", command=r.get("command") or "",
            ))
    cols = ["dataset", "eval_split", "rank", "method", "label", "kind", "settings", "status", "n_seeds",
            "seeds", "n_failed"]
    for k in list(METRICS) + list(COSTS):
        cols += [k, f"{k}_std"]
    for k in extras:
        cols += [f"extra_{k}", f"extra_{k}_std"]
    for c in convs:
        cols += [f"miou_conv_{_safe_name(c)}", f"miou_conv_{_safe_name(c)}_std"]
    cols += ["device", "miou_convention", "git_commit", "job_ids", "error", "command"]
    df = pd.DataFrame(rows, columns=cols)
    df["rank"] = df["rank"].astype("Int64")
    df["n_seeds"] = df["n_seeds"].astype("Int64")
    df["n_failed"] = df["n_failed"].astype("Int64")
    params = pd.to_numeric(df["params"], errors="coerce")
    if params.dropna().apply(float.is_integer).all():
        df["params"] = params.round().astype("Int64")
    return df


def _display_table(s: Section) -> pd.DataFrame:
    ok = [r for g in s.ranked for r in g.ok]
    oracle, regions = _has_extra(ok, "oracle_miou"), _has_extra(ok, "regions_per_image")
    skipping = any(g.skips_bad_samples for g in s.ranked)
    rows = []
    for rank, g in enumerate(s.ranked, 1):
        row = {"rank": str(rank), "method": g.label, "kind": g.kind}
        for k, title in METRICS.items():
            row[title] = fmt_pct(*g.stat(k))
        if oracle:
            row["oracle mIoU"] = fmt_pct(*g.extra_stat("oracle_miou"))
        if regions:  # the partition's size next to its quality (classical methods)
            mean = g.extra_stat("regions_per_image")[0]
            row["regions/image"] = f"{mean:.0f}" if _finite(mean) else DASH
        speed, sstd, n = g.stat("images_per_s")
        row["images/s"] = fmt_speed(speed) + (f" ± {fmt_speed(sstd)}" if n > 1 and _finite(sstd) else "")
        row["params"] = fmt_params(g.stat("params")[0])
        row["device"] = g.joined("device") or DASH
        row["seeds (n)"] = str(len(g.ok))
        if skipping:  # how many samples each row's scores leave out (most over its seeds)
            counts = [_num((r.get("extra") or {}).get("skipped_samples")) for r in g.ok if _skips(r)]
            counts = [c for c in counts if _finite(c)]
            row["skipped samples"] = str(int(max(counts))) if counts else DASH
        rows.append({k: _md_cell(v) for k, v in row.items()})
    return pd.DataFrame(rows)


@dataclass
class ClassTable:
    """Per-class IoU of one section: methods x classes, mean over seeds (fractions)."""

    methods: list[str]
    classes: list[str]
    class_index: list[int]  # the dataset's index of each class kept
    mean: np.ndarray  # (methods, classes)
    std: np.ndarray
    n: np.ndarray


def per_class_table(s: Section) -> ClassTable | None:
    """Per-class IoU over the ok groups; classes NaN for every method left out."""
    groups = [g for g in s.ranked if any(isinstance(r.get("iou"), list) for r in g.ok)]
    if not groups:
        return None
    names: list[str] = []
    for g in groups:
        for r in g.ok:
            cn = r.get("class_names")
            if isinstance(cn, list) and len(cn) > len(names):
                names = [str(c) for c in cn]
    width = max([len(names)] + [len(r.get("iou") or []) for g in groups for r in g.ok])
    names = names + [f"class {i}" for i in range(len(names), width)]
    mean = np.full((len(groups), width), np.nan)
    std = np.full_like(mean, np.nan)
    n = np.zeros(mean.shape, dtype=int)
    for i, g in enumerate(groups):
        vals = [r.get("iou") for r in g.ok if isinstance(r.get("iou"), list)]
        for c in range(width):
            mean[i, c], std[i, c], n[i, c] = _mean_std(v[c] if c < len(v) else None for v in vals)
    keep = ~np.all(np.isnan(mean), axis=0)
    if not keep.any():
        return None
    return ClassTable([g.label for g in groups], [c for c, k in zip(names, keep) if k],
                      [int(i) for i in np.flatnonzero(keep)], mean[:, keep], std[:, keep], n[:, keep])


def _class_markdown(t: ClassTable) -> str:
    cell = np.vectorize(lambda x: fmt_pct(x))(t.mean) if t.mean.size else t.mean.astype(str)
    if len(t.classes) > TRANSPOSE_CLASSES:
        df = pd.DataFrame(cell.T, columns=[_md_cell(m) for m in t.methods])
        df.insert(0, "class", [_md_cell(c) for c in t.classes])
    else:
        df = pd.DataFrame(cell, columns=[_md_cell(c) for c in t.classes])
        df.insert(0, "method", [_md_cell(m) for m in t.methods])
    return _to_markdown(df)


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI)


def plot_miou_vs_speed(s: Section, path: Path) -> bool:
    """mIoU (%) against images/s (log x), one marker/colour per kind, points labelled."""
    pts = []
    skipped = []
    for g in s.ranked:
        m, mstd, n = g.stat("miou")
        v = g.stat("images_per_s")[0]
        if _finite(m) and _finite(v) and v > 0:
            pts.append((g, v, 100 * m, 100 * mstd if n > 1 and _finite(mstd) else 0.0))
        else:
            skipped.append(g.label)
    if not pts:
        s.notes.append("mIoU vs speed plot skipped: no ok job has both mIoU and images/s.")
        return False
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    seen: set[str] = set()
    for i, (g, x, y, yerr) in enumerate(pts):
        kind = g.kind
        style = KIND_STYLE.get(kind, OTHER_STYLE)
        lab = kind if kind not in seen else None
        seen.add(kind)
        ax.errorbar([x], [y], yerr=[yerr] if yerr else None, linestyle="none", markersize=9,
                    markeredgecolor="black", markeredgewidth=0.6, capsize=3, label=lab, **style)
        ax.annotate(g.label, (x, y), xytext=(8, 6 if i % 2 == 0 else -13), textcoords="offset points",
                    fontsize=8.5, arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=1, shrinkB=5))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)
    texts = [t for t in ax.texts]
    ax.set_xlabel("images / s (log scale, higher is faster)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{s.title}: mIoU vs speed")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i] != "classical", labels[i] != "deep", labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], title="kind", loc="best", fontsize=9)
    if skipped:
        fig.text(0.01, 0.01, "not plotted (no mIoU or speed): " + ", ".join(skipped), fontsize=7, color="gray")
    fig.tight_layout()
    _separate_labels(fig, texts)
    fig.savefig(path, dpi=DPI)
    return True


def _separate_labels(fig, texts: list, iterations: int = 60) -> None:
    """Nudge overlapping point labels (annotations in offset points) apart vertically."""
    if len(texts) < 2:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
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


def plot_per_class(s: Section, t: ClassTable, path: Path) -> str:
    """Grouped bars per class, or a heatmap (classes x methods) when there are many."""
    n_m, n_c = len(t.methods), len(t.classes)
    vals = 100 * t.mean
    if n_c > HEATMAP_CLASSES or n_m > HEATMAP_METHODS:
        import matplotlib

        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgray")
        fig = _figure(max(6.0, 1.1 * n_m + 3.5), max(4.0, 0.26 * n_c + 2.2))
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
        kind = "heatmap"
    else:
        import matplotlib

        colors = matplotlib.colormaps["tab10"]
        fig = _figure(min(24.0, max(7.0, n_c * (0.22 * n_m + 0.35) + 1.5)), 5.0)
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
        kind = "bars"
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return kind


def _read_png(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (OSError, ValueError):
        return None


def colorize(label: np.ndarray, palette: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """Index map -> RGB with the palette; the ignore index and unknown values -> black."""
    if label.ndim == 3:  # already colour
        return label[..., :3].astype(np.uint8)
    label = label.astype(np.int64)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    lut = np.zeros((max(int(label.max(initial=0)) + 1, len(pal), 1), 3), np.uint8)
    lut[: len(pal)] = pal
    out = lut[np.clip(label, 0, None)]
    out[label < 0] = 0
    if ignore_index is not None:
        out[label == ignore_index] = 0
    return out


def _load_palette(sample_dir: Path) -> tuple[list[str], np.ndarray | None, int | None, str | None]:
    p = sample_dir / "palette.json"
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
        names = [str(c) for c in meta.get("class_names") or []]
        pal = np.asarray(meta["palette"], dtype=np.uint8).reshape(-1, 3)
        ign = meta.get("ignore_index")
        return names, pal, (int(ign) if ign is not None else None), None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [], None, None, f"{p} unreadable ({type(e).__name__}); a default palette is used"


def _default_palette(n: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return (np.asarray(cmap(np.arange(max(n, 1)) % 20))[:, :3] * 255).astype(np.uint8)


@dataclass
class GridInfo:
    """What the predictions grid shows: ``rows`` images x ``columns`` panels."""

    path: Path | None
    image_ids: list[str]
    columns: list[str]  # "image", "ground truth", then method labels
    skipped: list[str]  # methods left out, with why

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.image_ids), len(self.columns)


def plot_predictions_grid(s: Section, out_dir: Path, path: Path, max_images: int = GRID_MAX_IMAGES) -> GridInfo:
    """Rows: the first images with saved predictions; columns: image, GT, each method."""
    out_dir = Path(out_dir)
    sample_dir = out_dir / "samples" / s.dataset / s.split
    methods: list[tuple[str, dict[str, Path]]] = []
    skipped: list[str] = []
    for g in s.ranked:
        chosen: dict[str, Path] = {}
        listed = False
        for r in g.ok:  # lowest seed first
            preds = r.get("predictions") or []
            listed = listed or bool(preds)
            found = {Path(p).stem: out_dir / p for p in preds if (out_dir / p).is_file()}
            if found:
                chosen = found
                break
        if chosen:
            methods.append((g.label, chosen))
        else:
            why = "prediction PNGs missing" if listed else "no predictions saved"
            skipped.append(f"{g.label} ({why})")
    ids: list[str] = []
    for _, preds in methods:
        for i in preds:
            if i not in ids:
                ids.append(i)
    ids = ids[:max_images]
    info = GridInfo(None, ids, ["image", "ground truth"] + [m for m, _ in methods], skipped)
    if not ids:
        s.notes.append("Predictions grid skipped: no saved prediction PNGs found.")
        return info
    for sk in skipped:
        s.notes.append(f"Predictions grid: {sk} left out.")

    names, palette, ignore, warn = _load_palette(sample_dir)
    if warn:
        s.notes.append(f"Predictions grid: {warn}.")
    images = {i: _read_png(sample_dir / f"{i}_image.png") for i in ids}
    gts = {i: _read_png(sample_dir / f"{i}_gt.png") for i in ids}
    preds = {(m, i): (_read_png(p[i]) if i in p else None) for m, p in methods for i in ids}
    if palette is None:
        top = max([int(a.max()) for a in list(gts.values()) + list(preds.values()) if a is not None and a.ndim == 2]
                  + [0])
        palette = _default_palette(top + 1)
        ignore = 255 if top >= 255 else None
    missing_img = [i for i in ids if images[i] is None]
    if missing_img:
        s.notes.append(f"Predictions grid: sample image/GT missing for {', '.join(missing_img)}.")

    aspect = 0.75
    for a in list(images.values()) + list(gts.values()):
        if a is not None:
            aspect = a.shape[0] / a.shape[1]
            break
    n_rows, n_cols = len(ids), len(info.columns)
    pw = GRID_PANEL_IN
    ph = pw * aspect
    # a legend of the classes drawn
    present: set[int] = set()
    for a in list(gts.values()) + list(preds.values()):
        if a is not None and a.ndim == 2:
            present.update(int(v) for v in np.unique(a))
    legend_ids = [c for c in sorted(present) if c < len(palette) and c != ignore][:40]
    leg_cols = max(1, min(6, n_cols * 2))
    leg_h = (math.ceil(len(legend_ids) / leg_cols) * 0.22 + 0.25) if legend_ids else 0.1
    title_h = 0.55
    fig_w, fig_h = n_cols * pw, n_rows * (ph + 0.15) + title_h + leg_h
    fig = _figure(fig_w, fig_h)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, wspace=0.04, hspace=0.08,
                        top=1 - title_h / fig_h, bottom=leg_h / fig_h)

    def show(ax, arr, text="missing"):
        ax.set_xticks([])
        ax.set_yticks([])
        if arr is None:
            ax.set_facecolor("0.85")
            ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.3")
        else:
            ax.imshow(arr, interpolation="nearest")

    for r, i in enumerate(ids):
        img = images[i]
        if img is not None and img.ndim == 2:  # a grey image
            img = np.repeat(img.astype(np.uint8)[..., None], 3, axis=2)
        show(axes[r][0], img, "no image")
        gt = gts[i]
        show(axes[r][1], None if gt is None else colorize(gt, palette, ignore), "no ground truth")
        for c, (m, _) in enumerate(methods, 2):
            p = preds[(m, i)]
            show(axes[r][c], None if p is None else colorize(p, palette, ignore))
        axes[r][0].set_ylabel(i, fontsize=8)
    for c, title in enumerate(info.columns):
        axes[0][c].set_title(title, fontsize=9 if len(title) < 28 else 7)
    fig.suptitle(f"{s.title}: predictions (ignore = black)", fontsize=11)
    if legend_ids:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=palette[c] / 255.0, edgecolor="black", linewidth=0.3,
                         label=names[c] if c < len(names) else f"class {c}") for c in legend_ids]
        fig.legend(handles=handles, loc="lower center", ncol=leg_cols, fontsize=7.5, frameon=False)
    fig.savefig(path, dpi=DPI, metadata={"Description": f"segbench predictions grid: {n_rows} rows x {n_cols} columns"})
    info.path = path
    return info


# ---------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------
def _versions(v: Any) -> str:
    if isinstance(v, dict) and v:
        return ", ".join(f"{k} {val}" for k, val in v.items())
    return DASH if not v else str(v)


def _reproduce_lines(s: Section) -> list[str]:
    lines = []
    for g in s.ranked:
        for r in g.ok:
            lines.append(
                f"- **{_md_cell(g.label)}** — seed {r.get('seed')}, device `{r.get('device') or DASH}`, "
                f"git `{r.get('git_commit') or DASH}`, job `{r.get('job_id')}`; versions: {_versions(r.get('versions'))}  \n"
                f"  {_md_code(str(r.get('command') or '(no command recorded)'))}"
            )
    return lines


def _section_markdown(s: Section, plots: dict[str, Path]) -> list[str]:
    md = [f"## {s.title}", ""]
    if not s.ranked:
        md += ["**No successful jobs for this dataset/split: nothing to rank.**", ""]
    else:
        conv = sorted({str(r.get("miou_convention")) for g in s.ranked for r in g.ok if r.get("miou_convention")})
        if len(conv) == 1:
            md.append(f"mIoU convention: `{conv[0]}` (see bench/metrics.py; the mIoU of every convention "
                      "is in leaderboard.csv, columns `miou_conv_*`).")
        elif conv:
            md.append("**Warning: mixed mIoU conventions, rows are not comparable:** "
                      + "; ".join(f"{_md_cell(g.label)}: `{g.joined('miou_convention') or DASH}`" for g in s.ranked))
        else:
            md.append("mIoU convention: not recorded.")
        md += ["Metrics in %; mean ± sample std (ddof=1) over seeds when n > 1; – = not available.", ""]
        if _skip_notes(s):
            md += ["**Partial scores: some rows marked `--skip-bad-samples` were scored with unreadable samples "
                   "left out (their count is in column `skipped samples`); they are not comparable with rows "
                   "scored on every sample. Which samples and why: see Notes.**", ""]
        md += [_to_markdown(_display_table(s)), ""]
    if s.failed:
        md += ["### Failed jobs", ""]
        for g, r in s.failed:
            md.append(f"- **{_md_cell(g.label)}** (seed {r.get('seed')}, job `{r.get('job_id')}`): "
                      f"{_md_cell(r.get('error') or 'no error message recorded')}  \n"
                      f"  {_md_code(str(r.get('command') or '(no command recorded)'))}")
        md.append("")
    if s.ranked:
        md += ["### How to reproduce", ""] + _reproduce_lines(s) + [""]
        t = per_class_table(s)
        md += ["### Per-class IoU (%)", ""]
        if t is None:
            md += ["No per-class IoU recorded.", ""]
        else:
            note = " Classes as rows." if len(t.classes) > TRANSPOSE_CLASSES else ""
            md += [f"Mean over seeds; classes with no IoU for any method are left out.{note}", "",
                   _class_markdown(t), ""]
    if plots:
        md += ["### Plots", ""] + [f"![{name}]({p.name})" for name, p in plots.items()] + [""]
    notes = _skip_notes(s) + s.notes
    if notes:
        md += ["### Notes", ""] + [f"- {n}" for n in notes] + [""]
    return md


# ---------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------
def _per_class_frame(sections: list[Section]) -> pd.DataFrame:
    rows = []
    for s in sections:
        t = per_class_table(s)
        if t is None:
            continue
        for m, label in enumerate(t.methods):
            for c, cls in enumerate(t.classes):
                rows.append({"dataset": s.dataset, "eval_split": s.split, "method": label,
                             "class_index": t.class_index[c], "class": cls, "iou": t.mean[m, c],
                             "iou_std": t.std[m, c], "n_seeds": int(t.n[m, c])})
    df = pd.DataFrame(rows, columns=["dataset", "eval_split", "method", "class_index", "class", "iou", "iou_std",
                                     "n_seeds"])
    return df


def build_report(out_dir: str | Path, records: Iterable[dict] | None = None) -> dict[str, Path]:
    """Write the leaderboards, per-class tables and plots into ``out_dir``.

    Returns ``{file name: path}`` of every file written. Never raises for missing or
    failed results: they are reported in leaderboard.md instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = "the records given" if records is not None else f"`{RECORDS_FILE}`"
    records = list(records) if records is not None else read_records(out_dir / RECORDS_FILE)
    sections = group_records(records)
    written: dict[str, Path] = {}

    def keep(p: Path) -> Path:
        written[p.name] = p
        return p

    df = leaderboard_frame(sections)
    df.to_csv(keep(out_dir / "leaderboard.csv"), index=False)
    _per_class_frame(sections).to_csv(keep(out_dir / "per_class_iou.csv"), index=False)

    n_ok = sum(len(g.ok) for s in sections for g in s.groups)
    n_failed = sum(len(g.failed) for s in sections for g in s.groups)
    md = ["# segbench leaderboard", "",
          f"{n_ok + n_failed} job records from {source} ({n_ok} ok, {n_failed} failed), "
          f"{len(sections)} dataset/split section(s). Ranked by mIoU within each section.", ""]
    if not sections:
        md += ["**No job records found: nothing to report.**", ""]
    elif n_ok == 0:
        md += ["**No job succeeded: there is nothing to rank; the failed jobs are listed below.**", ""]

    for s in sections:
        plots: dict[str, Path] = {}
        if s.ranked:
            try:
                p = out_dir / f"miou_vs_speed{s.suffix}.png"
                if plot_miou_vs_speed(s, p):
                    plots["mIoU vs speed"] = keep(p)
                t = per_class_table(s)
                if t is not None:
                    p = out_dir / f"per_class_iou{s.suffix}.png"
                    plot_per_class(s, t, p)
                    plots["per-class IoU"] = keep(p)
                p = out_dir / f"predictions_grid{s.suffix}.png"
                if plot_predictions_grid(s, out_dir, p).path is not None:
                    plots["predictions"] = keep(p)
            except Exception as e:  # a plot must never cost the tables
                s.notes.append(f"Plotting failed: {type(e).__name__}: {e}")
        md += _section_markdown(s, plots)

    (out_dir / "leaderboard.md").write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    keep(out_dir / "leaderboard.md")
    return written


def format_leaderboard_text(out_dir: str | Path, records: Iterable[dict] | None = None) -> str:
    """A compact table per dataset/split (method, mIoU, pixel acc, BF, img/s) for a terminal."""
    out_dir = Path(out_dir)
    records = list(records) if records is not None else read_records(out_dir / RECORDS_FILE)
    sections = group_records(records)
    if not sections:
        return f"No job records in {out_dir / RECORDS_FILE}."
    parts = []
    for s in sections:
        parts.append(f"== {s.title} ==")
        if s.ranked:
            rows = []
            for g in s.ranked:
                n = len(g.ok)
                rows.append({
                    "method": g.label + (f" (n={n})" if n > 1 else ""),
                    "mIoU": fmt_pct(*g.stat("miou")),
                    "pixel acc": fmt_pct(*g.stat("pixel_acc")),
                    "BF": fmt_pct(*g.stat("bf")),
                    "img/s": fmt_speed(g.stat("images_per_s")[0]),
                })
            parts.append(_to_markdown(pd.DataFrame(rows), tablefmt="simple"))
        else:
            parts.append("no successful jobs")
        if s.failed:
            parts.append(f"{len(s.failed)} failed: " + "; ".join(
                f"{g.label} (seed {r.get('seed')}): {r.get('error') or 'no error message'}" for g, r in s.failed))
        parts.append("")
    return "\n".join(parts).rstrip()
