"""Records -> leaderboard groups and tables: rows by (dataset, split, method, method version,
settings), means over seeds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bench.files import dumps
from bench.formatting import DASH, is_finite_number
from bench.metrics.bootstrap import Estimate
from bench.per_image import PerImage
from bench.record import Record, id_settings_of, method_defaults

#: metric fields (fractions in [0, 1]) and their leaderboard titles
METRICS: dict[str, str] = {
    "miou": "mIoU",
    "pixel_acc": "pixel acc",
    "mean_acc": "class acc",
    "fwiou": "fwIoU",
    "bf": "BF",
}
COSTS = ("images_per_s", "predict_time_per_image_s", "fit_time_s", "params")
#: appended to the label of rows whose jobs ran with --skip-bad-samples
SKIP_TAG = " [--skip-bad-samples]"


def num(value: Any) -> float:
    """A record value as a float; None, bad values and non-finite values -> NaN."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean and sample std (ddof=1) of the finite values, and how many there were."""
    arr = np.array([num(v) for v in values], dtype=float)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n > 1 else math.nan
    return mean, std, n


def safe_name(s: str) -> str:
    """``s`` usable in a file or column name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


def skips(rec: Record) -> bool:
    """Whether the job ran with ``--skip-bad-samples``."""
    return bool(rec.extra.get("skip_bad_samples"))


def settings_key(settings: Any) -> str:
    """Settings as canonical JSON (sorted keys): what tells groups of one method apart."""
    return dumps(settings or {}, default=str)


def tta_text(settings: dict) -> str:
    """A row's test-time augmentation in words ("" without): its predictions cost that many
    forward passes an image, so the budget column says so beside the training budget."""
    flip, scales = bool(settings.get("tta_flip")), list(settings.get("tta_scales") or [1.0])
    if not flip and scales == [1.0]:
        return ""
    parts = (["flip"] if flip else []) + ([f"scales {'/'.join(f'{m:g}' for m in scales)}"] if scales != [1.0] else [])
    return f"test-time {' + '.join(parts)} ({len(scales) * (2 if flip else 1)} passes)"


@dataclass
class Group:
    """The records of one (dataset, eval_split, method, method version, settings): one
    leaderboard row (records of another version of the method computed something else, so
    they are never averaged with these as if they were other seeds)."""

    dataset: str
    split: str
    method: str
    settings: dict
    version: int | None = None
    ok: list[Record] = field(default_factory=list)
    failed: list[Record] = field(default_factory=list)
    label: str = ""
    #: bootstrap figures over its per-image data (bench.report.intervals); None without
    interval: Estimate | None = None
    #: against the best row of its section: "best", "tied" (not significantly below), "below"
    #: or "" (not compared); the two-sided p-value of the mIoU difference, and Holm-adjusted
    vs_best: str = ""
    p_vs_best: float = math.nan
    p_vs_best_holm: float = math.nan
    #: against the section's location-prior row (the floor a method clears only by reading the
    #: image): "prior" (that row), "above" (significantly higher mIoU), "tied", "below" or ""
    #: (no such row, or not compared); p-values as for vs_best
    vs_prior: str = ""
    p_vs_prior: float = math.nan
    p_vs_prior_holm: float = math.nan
    #: against its own per-pixel-mode map (bench.report.photo_gain): "yes" (significantly higher
    #: mIoU: it follows each image), "no", or "" (not tested: not every prediction saved); the
    #: gain in mIoU (a fraction) and its Holm-adjusted p-value
    reads_image: str = ""
    photo_gain: float = math.nan
    p_reads_image_holm: float = math.nan

    @property
    def kind(self) -> str:
        kinds = sorted({str(r.kind) for r in self.ok + self.failed if r.kind})
        return "/".join(kinds) if kinds else DASH

    @property
    def skips_bad_samples(self) -> bool:
        """Its jobs ran with ``--skip-bad-samples`` (grouped apart from jobs that did not)."""
        return any(skips(r) for r in self.ok + self.failed)

    def stat(self, key: str) -> tuple[float, float, int]:
        return mean_std(getattr(r, key) for r in self.ok)

    def extra_stat(self, key: str) -> tuple[float, float, int]:
        return mean_std(r.extra.get(key) for r in self.ok)

    @property
    def budget(self) -> str:
        """What each row was given to learn: a network's epochs, optimiser steps and input
        scale (rows of one table may see the photos at different sizes), a classical method's
        training images, and the fit's wall time (first seed)."""
        if not self.ok:
            return DASH
        r = self.ok[0]
        epochs, steps = r.extra.get("epochs_trained"), r.extra.get("optimizer_steps")
        if epochs:
            what = f"{epochs} ep, {steps} steps" if steps else f"{epochs} ep"
            if is_finite_number(r.settings.get("scale")):
                what += f", scale {r.settings['scale']:g}"
        elif r.n_train:
            cap = r.settings.get("max_train_images")
            what = f"{min(int(r.n_train), int(cap)) if cap else int(r.n_train)} img"
        else:
            what = ""
        took = f"{r.fit_time_s:.0f} s" if is_finite_number(r.fit_time_s) else ""
        return ", ".join(x for x in (what, took, tta_text(r.settings)) if x) or DASH

    def seeds(self) -> list:
        return [r.seed for r in self.ok]

    def joined(self, key: str, sep: str = ", ") -> str:
        """The distinct values of ``key`` over the ok records, in seed order."""
        vals: list[str] = []
        for r in self.ok:
            v = getattr(r, key)
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
    #: per-image data of its ok records by job id, as read by bench.report.intervals
    per_image: dict[str, PerImage] = field(default_factory=dict)
    #: how its intervals were made (bench.metrics.bootstrap.Result.settings); None without any
    bootstrap: dict[str, Any] | None = None

    @property
    def ranked(self) -> list[Group]:
        return [g for g in self.groups if g.ok]

    @property
    def failed(self) -> list[tuple[Group, Record]]:
        return [(g, r) for g in self.groups for r in g.failed]

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.split}"


def _skip_tag(g: Group) -> str:
    return SKIP_TAG if g.skips_bad_samples else ""


def _label_groups(groups: list[Group]) -> None:
    """Method name, plus the settings that tell apart groups of the same method."""
    by_method: dict[str, list[Group]] = {}
    for g in groups:
        by_method.setdefault(g.method, []).append(g)
    for method, gs in by_method.items():
        if len(gs) == 1:
            gs[0].label = method + _skip_tag(gs[0])
            continue
        # what the job ids count (no runtime settings), defaults filled in for settings a
        # record predates, so that a row's label does not depend on which record came first
        defaults = method_defaults(method)
        shown = [{**defaults, **id_settings_of(method, g.settings)} for g in gs]
        for d in shown:
            d.pop("__version__", None)
        keys = sorted({k for d in shown for k in d})
        differ = [k for k in keys if len({settings_key(d.get(k)) for d in shown}) > 1]
        told_apart_by_flag = len({g.skips_bad_samples for g in gs}) == len(gs)
        versions_differ = len({g.version for g in gs}) > 1
        for i, (g, d) in enumerate(zip(gs, shown)):
            parts = [f"version {DASH if g.version is None else g.version}"] if versions_differ else []
            # tuples (a default) and lists (a value read back from JSON) alike: [0.75, 1.0]
            parts += [f"{k}={list(v) if isinstance(v := d.get(k), tuple) else v}" for k in differ]
            label = f"{method} ({', '.join(parts)})" if parts else method if told_apart_by_flag else f"{method} #{i + 1}"
            g.label = label + _skip_tag(g)


def _sort_key(g: Group):
    m = g.stat("miou")[0]
    return (0 if g.ok else 1, -m if is_finite_number(m) else math.inf, g.label)


def _seed_key(r: Record):
    return (r.seed is None, num(r.seed), str(r.seed))


def _suffix_sections(sections: list[Section]) -> None:
    """File-name suffixes ``_<dataset>`` (``_<dataset>_<split>``) once there are several sections."""
    if len(sections) < 2:
        return
    splits_per_ds: dict[str, int] = {}
    for s in sections:
        splits_per_ds[s.dataset] = splits_per_ds.get(s.dataset, 0) + 1
    for s in sections:
        name = s.dataset if splits_per_ds[s.dataset] == 1 else f"{s.dataset}_{s.split}"
        s.suffix = "_" + safe_name(name)


def group_records(records: Iterable[Record]) -> list[Section]:
    """Records (the last one per job_id) -> sections by dataset/split, groups ranked."""
    latest = {r.job_id: r for r in records}
    sections: dict[tuple[str, str], dict[tuple[str, int | None, str, bool], Group]] = {}
    for rec in latest.values():
        ds, sp = str(rec.dataset or "unknown"), str(rec.eval_split or "unknown")
        method = str(rec.method or "unknown")
        # the settings as the job id counts them: a setting added later at its default splits no row
        key = (method, rec.method_version, settings_key(id_settings_of(method, rec.settings)), skips(rec))
        groups = sections.setdefault((ds, sp), {})
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(ds, sp, method, rec.settings, rec.method_version)
        (g.ok if rec.ok else g.failed).append(rec)

    out = []
    for (ds, sp), groups in sorted(sections.items()):
        gs = list(groups.values())
        for g in gs:
            g.ok.sort(key=_seed_key)
            g.failed.sort(key=_seed_key)
        _label_groups(gs)
        gs.sort(key=_sort_key)
        out.append(Section(ds, sp, gs))
    _suffix_sections(out)
    return out


# -- leaderboard ------------------------------------------------------------------------------
def ok_records(sections: list[Section]) -> list[Record]:
    """The ok records of every section, in ranking order."""
    return [r for s in sections for g in s.ranked for r in g.ok]


def has_extra(records: Iterable[Record], key: str) -> bool:
    """Whether any record has a finite number under ``extra[key]``."""
    return any(is_finite_number(num(r.extra.get(key))) for r in records)


def _extra_keys(sections: list[Section]) -> list[str]:
    """Numeric scalar ``extra`` keys of any ok record (oracle_miou first)."""
    keys: list[str] = []
    for r in ok_records(sections):
        for k, v in r.extra.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    return sorted(keys, key=lambda k: (k != "oracle_miou", k))


def _conventions(sections: list[Section]) -> list[str]:
    """Every key of ``miou_by_convention`` in an ok record."""
    keys: list[str] = []
    for r in ok_records(sections):
        for k in r.miou_by_convention or {}:
            if str(k) not in keys:
                keys.append(str(k))
    return keys


def _ok_row(s: Section, rank: int, g: Group, extras: list[str], convs: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        dataset=s.dataset, eval_split=s.split, rank=rank, method=g.method, label=g.label,
        kind=g.kind, settings=settings_key(g.settings), status="ok", n_seeds=len(g.ok),
        seeds=";".join(str(x) for x in g.seeds()), n_failed=len(g.failed), budget=g.budget,
    )
    for k in list(METRICS) + list(COSTS):
        row[k], row[f"{k}_std"], _ = g.stat(k)
        if k in METRICS:
            row[f"{k}_lo"], row[f"{k}_hi"] = g.interval.interval(k) if g.interval else (math.nan, math.nan)
    for k in extras:
        row[f"extra_{k}"], row[f"extra_{k}_std"], _ = g.extra_stat(k)
    for c in convs:
        vals = [(r.miou_by_convention or {}).get(c) for r in g.ok]
        row[f"miou_conv_{safe_name(c)}"], row[f"miou_conv_{safe_name(c)}_std"], _ = mean_std(vals)
    boot = s.bootstrap if g.interval else None
    row.update(
        vs_best=g.vs_best, p_vs_best=g.p_vs_best, p_vs_best_holm=g.p_vs_best_holm,
        vs_prior=g.vs_prior, p_vs_prior=g.p_vs_prior, p_vs_prior_holm=g.p_vs_prior_holm,
        reads_image=g.reads_image, photo_gain=g.photo_gain, p_reads_image_holm=g.p_reads_image_holm,
        ci_resamples=boot["resamples"] if boot else None, ci_seed=boot["seed"] if boot else None,
        device=g.joined("device", sep=";"), miou_convention=g.joined("miou_convention", sep=";"),
        git_commit=g.joined("git_commit", sep=";"), job_ids=g.joined("job_id", sep=";"),
        error="", command=g.joined("command", sep="\n"),
    )
    return row


def _failed_row(s: Section, g: Group, r: Record) -> dict[str, Any]:
    return dict(
        dataset=s.dataset, eval_split=s.split, rank=None, method=g.method, label=g.label,
        kind=r.kind or "", settings=settings_key(g.settings), status=r.status or "failed",
        n_seeds=None, seeds=str(r.seed), n_failed=None, device=r.device or "",
        miou_convention="", git_commit=r.git_commit or "", job_ids=r.job_id,
        error=r.error or "", command=r.command or "",
    )


def leaderboard_frame(sections: list[Section]) -> pd.DataFrame:
    """The machine-readable leaderboard (what goes into leaderboard.csv)."""
    extras, convs = _extra_keys(sections), _conventions(sections)
    rows = []
    for s in sections:
        rows += [_ok_row(s, rank, g, extras, convs) for rank, g in enumerate(s.ranked, 1)]
        rows += [_failed_row(s, g, r) for g, r in s.failed]
    cols = ["dataset", "eval_split", "rank", "method", "label", "kind", "settings", "status", "n_seeds",
            "seeds", "n_failed", "budget"]
    for k in list(METRICS) + list(COSTS):
        cols += [k, f"{k}_std"] + ([f"{k}_lo", f"{k}_hi"] if k in METRICS else [])
    for k in extras:
        cols += [f"extra_{k}", f"extra_{k}_std"]
    for c in convs:
        cols += [f"miou_conv_{safe_name(c)}", f"miou_conv_{safe_name(c)}_std"]
    cols += ["vs_best", "p_vs_best", "p_vs_best_holm", "vs_prior", "p_vs_prior", "p_vs_prior_holm",
             "reads_image", "photo_gain", "p_reads_image_holm", "ci_resamples", "ci_seed",
             "device", "miou_convention", "git_commit", "job_ids", "error", "command"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("rank", "n_seeds", "n_failed", "ci_resamples", "ci_seed"):
        df[c] = df[c].astype("Int64")
    params = pd.to_numeric(df["params"], errors="coerce")
    if params.dropna().apply(float.is_integer).all():
        df["params"] = params.round().astype("Int64")
    return df


# -- per class ----------------------------------------------------------------------------------
@dataclass
class ClassTable:
    """Per-class IoU of one section: methods x classes, mean over seeds (fractions)."""

    methods: list[str]
    classes: list[str]
    class_index: list[int]  # the dataset's index of each class kept
    mean: np.ndarray  # (methods, classes)
    std: np.ndarray
    n: np.ndarray
    lo: np.ndarray  # the bootstrap interval (NaN without per-image data)
    hi: np.ndarray


def _class_names(groups: list[Group]) -> list[str]:
    """The longest ``class_names`` of the groups' records."""
    names: list[str] = []
    for r in (r for g in groups for r in g.ok):
        if r.class_names and len(r.class_names) > len(names):
            names = [str(c) for c in r.class_names]
    return names


def per_class_table(s: Section) -> ClassTable | None:
    """Per-class IoU over the ok groups; classes NaN for every method left out."""
    groups = [g for g in s.ranked if any(r.iou is not None for r in g.ok)]
    if not groups:
        return None
    names = _class_names(groups)
    width = max([len(names)] + [len(r.iou or []) for g in groups for r in g.ok])
    names = names + [f"class {i}" for i in range(len(names), width)]
    mean = np.full((len(groups), width), np.nan)
    std = np.full_like(mean, np.nan)
    n = np.zeros(mean.shape, dtype=int)
    lo, hi = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    for i, g in enumerate(groups):
        vals = [r.iou for r in g.ok if r.iou is not None]
        for c in range(width):
            mean[i, c], std[i, c], n[i, c] = mean_std(v[c] if c < len(v) else None for v in vals)
        if g.interval is not None:
            k = min(width, len(g.interval.iou))
            lo[i, :k], hi[i, :k] = g.interval.iou_lo[:k], g.interval.iou_hi[:k]
    keep = ~np.all(np.isnan(mean), axis=0)
    if not keep.any():
        return None
    return ClassTable([g.label for g in groups], [c for c, k in zip(names, keep) if k],
                      [int(i) for i in np.flatnonzero(keep)], mean[:, keep], std[:, keep], n[:, keep],
                      lo[:, keep], hi[:, keep])


def per_class_frame(sections: list[Section]) -> pd.DataFrame:
    """Long format (what goes into per_class_iou.csv): one row per (section, method, class)."""
    rows = []
    for s in sections:
        t = per_class_table(s)
        if t is None:
            continue
        for m, label in enumerate(t.methods):
            for c, cls in enumerate(t.classes):
                rows.append({"dataset": s.dataset, "eval_split": s.split, "method": label,
                             "class_index": t.class_index[c], "class": cls, "iou": t.mean[m, c],
                             "iou_std": t.std[m, c], "iou_lo": t.lo[m, c], "iou_hi": t.hi[m, c],
                             "n_seeds": int(t.n[m, c])})
    return pd.DataFrame(rows, columns=["dataset", "eval_split", "method", "class_index", "class", "iou",
                                       "iou_std", "iou_lo", "iou_hi", "n_seeds"])
