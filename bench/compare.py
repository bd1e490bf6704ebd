"""`python -m bench compare A B`: two methods (or jobs) of one results folder scored on the same
images; a paired image bootstrap of each figure's difference, its interval and p-value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.errors import SegbenchError
from bench.files import dumps
from bench.formatting import DASH, fmt_pct, is_finite_number
from bench.metrics.bootstrap import METRICS, RESAMPLES, SEED, Estimate, bootstrap
from bench.per_image import PerImage, read_per_image, seeds_arm
from bench.record import Record
from bench.report.aggregate import METRICS as TITLES
from bench.report.aggregate import group_records
from bench.store import RecordStore


class CompareError(SegbenchError, ValueError):
    """Names that match no job or several, or jobs that cannot be compared; one line."""


def find_records(records: list[Record], name: str, where: str) -> tuple[str, list[Record]]:
    """The ok records ``name`` means: a job id (that job), else a method name or leaderboard
    label that matches one row of the leaderboard (its seeds). Returns (label, records)."""
    ok = [r for r in records if r.ok]
    by_id = [r for r in ok if name in (r.job_id, r.legacy_job_id)]
    if by_id:
        return f"{by_id[0].method} (job {by_id[0].job_id})", by_id[:1]
    groups = [g for s in group_records(ok) for g in s.ranked if name in (g.method, g.label)]
    if len(groups) == 1:
        return groups[0].label, groups[0].ok
    if not groups:
        known = sorted({r.method for r in ok})
        raise CompareError(f"{where}: no ok job or method named {name!r}; methods there: {', '.join(known) or 'none'}")
    choices = "; ".join(f"{g.label} on {g.dataset}/{g.split}: {', '.join(r.job_id for r in g.ok)}" for g in groups)
    raise CompareError(f"{where}: {name!r} names several leaderboard rows; give a job id ({choices})")


def _per_image(out_dir: Path, records: list[Record], label: str) -> list[PerImage]:
    missing = [r.job_id for r in records if not r.per_image]
    if missing:
        raise CompareError(f"{label}: no per-image data for job {', '.join(missing)} (recorded before segbench kept "
                           "it); rerun it with `run --force`")
    return [read_per_image(out_dir / r.per_image) for r in records]


def _side(label: str, records: list[Record], est: Estimate) -> dict[str, Any]:
    return {"label": label, "job_ids": [r.job_id for r in records], "seeds": [r.seed for r in records],
            "miou_convention": records[0].miou_convention, **_estimate(est)}


def _estimate(est: Estimate) -> dict[str, Any]:
    out: dict[str, Any] = {m: {"value": est.value[m], "ci": [est.lo[m], est.hi[m]]} for m in METRICS}
    if est.p is not None:
        for m in METRICS:
            out[m]["p"] = est.p[m]
    out["iou"] = [{"value": v, "ci": [lo, hi]} for v, lo, hi in zip(est.iou, est.iou_lo, est.iou_hi)]
    if est.iou_p is not None:
        for item, p in zip(out["iou"], est.iou_p):
            item["p"] = p
    return out


def _records(out_dir: Path) -> list[Record]:
    records = RecordStore(out_dir).records()
    if not records:
        raise CompareError(f"{out_dir}: no records (run `python -m bench run` first)")
    return records


def compare(out_dir: str | Path, a: str, b: str, resamples: int = RESAMPLES, seed: int = SEED,
            out_dir_b: str | Path | None = None) -> dict[str, Any]:
    """The paired comparison of ``a`` and ``b`` (job ids, method names or leaderboard labels) in
    the results folder ``out_dir`` (``b`` in ``out_dir_b`` when given: two runs' folders, e.g. a
    classical and a deep suite on the same split): each one's figures with intervals, and
    ``difference`` (a - b) with intervals and two-sided p-values, from the same image
    resamples (JSON-ready)."""
    out_dir = Path(out_dir)
    dir_b = Path(out_dir_b) if out_dir_b is not None else out_dir
    (la, ra) = find_records(_records(out_dir), a, str(out_dir))
    (lb, rb) = find_records(_records(dir_b), b, str(dir_b))
    if {(r.dataset, r.eval_split) for r in ra + rb} != {(ra[0].dataset, ra[0].eval_split)}:
        raise CompareError(f"{la} and {lb} were scored on different datasets or splits")
    conventions = {r.miou_convention or "mmseg" for r in ra + rb}
    if len(conventions) > 1:
        raise CompareError(f"{la} and {lb} use different mIoU conventions ({', '.join(sorted(conventions))})")
    da, db = _per_image(out_dir, ra, la), _per_image(dir_b, rb, lb)
    ids = sorted(da[0].ids)
    if any(sorted(d.ids) != ids for d in da + db):
        common = set(da[0].ids).intersection(*(d.ids for d in da[1:] + db))
        raise CompareError(f"{la} and {lb} were not scored on the same images ({len(common)} in common)")
    convention = conventions.pop()
    arms = [seeds_arm([d.ordered(ids) for d in side], convention) for side in (da, db)]
    res = bootstrap(arms, [(0, 1)], resamples=resamples, seed=seed)
    names = next((r.class_names for r in ra + rb if r.class_names), None) or []
    return {"dataset": ra[0].dataset, "eval_split": ra[0].eval_split, "n_images": len(ids),
            "class_names": list(names), "bootstrap": res.settings(), "a": _side(la, ra, res.arms[0]),
            "b": _side(lb, rb, res.arms[1]), "difference": _estimate(res.differences[(0, 1)])}


# -- output ---------------------------------------------------------------------------------
def _cell(item: dict[str, Any]) -> str:
    lo, hi = item["ci"]
    if not is_finite_number(item["value"]):
        return DASH
    return fmt_pct(item["value"]) + (f" [{fmt_pct(lo)}, {fmt_pct(hi)}]" if is_finite_number(lo) else "")


def _diff(item: dict[str, Any]) -> str:
    v, (lo, hi) = item["value"], item["ci"]
    if not (is_finite_number(v) and is_finite_number(lo) and is_finite_number(hi)):
        return DASH
    return f"{100 * v:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def fmt_p(p: Any) -> str:
    """A p-value: three decimals, "< 0.001" below that, the dash when there is none."""
    if not is_finite_number(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _verdict(c: dict[str, Any]) -> str:
    alpha = round(1 - c["bootstrap"]["level"], 10)
    d = c["difference"]["miou"]
    p = d.get("p", math.nan)
    if not is_finite_number(p):
        return "No mIoU difference could be computed."
    if p >= alpha:
        return f"mIoU: {c['a']['label']} and {c['b']['label']} are not significantly different at level {alpha:g}."
    better, worse = (c["a"], c["b"]) if d["value"] > 0 else (c["b"], c["a"])
    shown = fmt_p(p)
    shown = shown if shown.startswith("<") else f"= {shown}"
    return f"mIoU: {better['label']} is significantly higher than {worse['label']} at level {alpha:g} (p {shown})."


def format_comparison(c: dict[str, Any], fmt: str = "md") -> str:
    """``json``: the :func:`compare` dict (NaN as null); ``md``: tables of every figure and class."""
    if fmt == "json":
        return dumps(c, sort_keys=False, allow_nan=False)
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r}; choose md or json")
    a, b, d, boot = c["a"], c["b"], c["difference"], c["bootstrap"]
    level = f"{100 * boot['level']:g}%"
    head = f"| {{}} | {a['label']} | {b['label']} | difference (a − b, points) | p |"
    md = [f"## {a['label']} vs {b['label']}: {c['dataset']} / {c['eval_split']}, {c['n_images']} images", "",
          f"Paired basic bootstrap over the same {c['n_images']} images (and each side's seeds), "
          f"{boot['resamples']} resamples, seed {boot['seed']}; {level} intervals in brackets; p: two-sided, "
          f"for a difference of 0 (docs/UNCERTAINTY.md).", "", head.format("metric"), "|---|---:|---:|---:|---:|"]
    md += [f"| {TITLES[m]} | {_cell(a[m])} | {_cell(b[m])} | {_diff(d[m])} | {fmt_p(d[m].get('p'))} |"
           for m in METRICS]
    md += ["", _verdict(c), "", "### Per-class IoU", "", "p-values per class are not corrected for the number of "
           "classes compared.", "", head.format("class"), "|---|---:|---:|---:|---:|"]
    names = c["class_names"]
    for k, (x, y, z) in enumerate(zip(a["iou"], b["iou"], d["iou"])):
        if is_finite_number(x["value"]) or is_finite_number(y["value"]):
            name = names[k] if k < len(names) else f"class {k}"
            md.append(f"| {name} | {_cell(x)} | {_cell(y)} | {_diff(z)} | {fmt_p(z.get('p'))} |")
    return "\n".join(md)

