"""Report tables as text: leaderboard.csv/per_class_iou.csv, the leaderboard.md sections and the terminal table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.files import write_atomic
from bench.formatting import DASH, fmt_count, fmt_pct, fmt_rate, fmt_value, is_finite_number
from bench.report.aggregate import (METRICS, ClassTable, Group, Section, has_extra, num, per_class_table, skips)

#: per-class tables with more classes than this get classes as rows
TRANSPOSE_CLASSES = 12
#: skipped samples named per job in the notes
SKIP_NOTE_ITEMS = 5

_NUMERIC_CELL = re.compile(r"^[-–+\d.,±\s%kMGe\[\]]*$")


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """``df`` as CSV (no index), written atomically."""
    return write_atomic(path, df.to_csv(index=False))


def md_cell(s: Any) -> str:
    """``s`` safe inside a Markdown table cell (pipes escaped, one line)."""
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_code(s: str) -> str:
    s = s.replace("\n", " ")
    return f"`` {s} ``" if "`" in s else f"`{s}`"


def _aligns(df: pd.DataFrame) -> list[str]:
    """Right-align the columns whose every cell is a formatted number (or a dash)."""
    return ["right" if len(df) and all(_NUMERIC_CELL.match(v) for v in df[c]) else "left" for c in df.columns]


def to_markdown(df: pd.DataFrame, tablefmt: str = "pipe") -> str:
    """``DataFrame.to_markdown`` (tabulate) of the cells as text, numbers right-aligned."""
    df = df.astype(str)
    return df.to_markdown(index=False, tablefmt=tablefmt, disable_numparse=True, colalign=_aligns(df))


def _skip_notes(s: Section) -> list[str]:
    """One note per ok job that left samples out, naming them (the first few) and why."""
    notes = []
    for g in s.ranked:
        for r in g.ok:
            n = num(r.extra.get("skipped_samples"))
            if not skips(r) or not n > 0:  # NaN compares False
                continue
            items = [x for x in r.extra.get("skipped_sample_list") or [] if isinstance(x, dict)]
            shown = "; ".join(f"{x.get('split')}/{x.get('id')}: {x.get('error')}" for x in items[:SKIP_NOTE_ITEMS])
            more = f"; and {len(items) - SKIP_NOTE_ITEMS} more" if len(items) > SKIP_NOTE_ITEMS else ""
            notes.append(f"**{g.label}** (seed {r.seed}, job `{r.job_id}`): {int(n)} unreadable "
                         f"sample(s) left out (`--skip-bad-samples`); its scores cover the other samples only. "
                         f"{md_cell(shown + more)}")
    return notes


def _metric_cell(g: Group, key: str) -> str:
    """``mean`` (``± std`` over seeds) and the bootstrap interval when there is one: "44.0 [41.2, 46.9]"."""
    mean, std, n = g.stat(key)
    text = fmt_pct(mean, std, n)
    if g.interval is not None and text != DASH:
        lo, hi = g.interval.interval(key)
        if is_finite_number(lo) and is_finite_number(hi):
            text += f" [{fmt_pct(lo)}, {fmt_pct(hi)}]"
    return text


def _compared(s: Section) -> bool:
    """Whether any row of the section was tested against the best row."""
    return any(g.vs_best for g in s.ranked)


def _prior_compared(s: Section) -> bool:
    """Whether any row of the section was tested against the location-prior row."""
    return any(g.vs_prior for g in s.ranked)


def _reads_tested(s: Section) -> bool:
    """Whether any row of the section was tested against its own mode map."""
    return any(g.reads_image for g in s.ranked)


def _display_table(s: Section) -> pd.DataFrame:
    """The ranked table of a section as leaderboard.md shows it (percentages, humanised costs)."""
    ok = [r for g in s.ranked for r in g.ok]
    oracle, regions = has_extra(ok, "oracle_miou"), has_extra(ok, "regions_per_image")
    skipping = any(g.skips_bad_samples for g in s.ranked)
    rows = []
    for rank, g in enumerate(s.ranked, 1):
        row = {"rank": str(rank), "method": g.label, "kind": g.kind}
        for k, title in METRICS.items():
            row[title] = _metric_cell(g, k)
        if oracle:
            row["oracle mIoU"] = fmt_pct(*g.extra_stat("oracle_miou"))
        if regions:  # the partition's size next to its quality (classical methods)
            row["regions/image"] = fmt_value(g.extra_stat("regions_per_image")[0], digits=0)
        speed, sstd, n = g.stat("images_per_s")
        row["images/s"] = fmt_rate(speed) + (f" ± {fmt_rate(sstd)}" if n > 1 and is_finite_number(sstd) else "")
        row["params"] = fmt_count(g.stat("params")[0])
        row["budget"] = g.budget
        row["device"] = g.joined("device") or DASH
        row["seeds (n)"] = str(len(g.ok))
        if skipping:  # how many samples each row's scores leave out (most over its seeds)
            counts = [num(r.extra.get("skipped_samples")) for r in g.ok if skips(r)]
            counts = [c for c in counts if is_finite_number(c)]
            row["skipped samples"] = str(int(max(counts))) if counts else DASH
        if _compared(s):
            row["vs best"] = g.vs_best or DASH
        if _prior_compared(s):
            row["vs prior"] = g.vs_prior or DASH
        if _reads_tested(s):
            row["reads image"] = g.reads_image or DASH
        rows.append({k: md_cell(v) for k, v in row.items()})
    return pd.DataFrame(rows)


def _class_markdown(t: ClassTable) -> str:
    cell = np.vectorize(lambda x: fmt_pct(x))(t.mean) if t.mean.size else t.mean.astype(str)
    if len(t.classes) > TRANSPOSE_CLASSES:
        df = pd.DataFrame(cell.T, columns=[md_cell(m) for m in t.methods])
        df.insert(0, "class", [md_cell(c) for c in t.classes])
    else:
        df = pd.DataFrame(cell, columns=[md_cell(c) for c in t.classes])
        df.insert(0, "method", [md_cell(m) for m in t.methods])
    return to_markdown(df)


def _versions(v: dict[str, Any]) -> str:
    return ", ".join(f"{k} {val}" for k, val in v.items()) if v else DASH


def _command(command: str | None) -> str:
    return _md_code(str(command or "(no command recorded)"))


def _reproduce_lines(s: Section) -> list[str]:
    return [f"- **{md_cell(g.label)}** — seed {r.seed}, device `{r.device or DASH}`, "
            f"git `{r.git_commit or DASH}`, job `{r.job_id}`; versions: {_versions(r.versions)}  \n"
            f"  {_command(r.command)}"
            for g in s.ranked for r in g.ok]


def _convention_line(s: Section) -> str:
    conv = sorted({str(r.miou_convention) for g in s.ranked for r in g.ok if r.miou_convention})
    if len(conv) == 1:
        return (f"mIoU convention: `{conv[0]}` (see bench/metrics.py; the mIoU of every convention "
                "is in leaderboard.csv, columns `miou_conv_*`).")
    if conv:
        return ("**Warning: mixed mIoU conventions, rows are not comparable:** "
                + "; ".join(f"{md_cell(g.label)}: `{g.joined('miou_convention') or DASH}`" for g in s.ranked))
    return "mIoU convention: not recorded."


def _uncertainty_lines(s: Section) -> list[str]:
    """What the intervals and the `vs best` column mean (nothing when the section has neither)."""
    b = s.bootstrap
    if b is None:
        return []
    level = f"{100 * b['level']:g}%"
    lines = [f"[lo, hi]: {level} interval, basic bootstrap over the {b['n_images']} images (and over the seeds "
             f"when n > 1), {b['resamples']} resamples, seed {b['seed']}; an interval beside its figure says the "
             "figure is biased, typically by classes that few images hold (docs/UNCERTAINTY.md)."]
    if _compared(s):
        n = sum(1 for g in s.ranked if g.vs_best in ("tied", "below"))
        lines.append(f"vs best: `below` = mIoU significantly lower than the best row's (paired bootstrap over the "
                     f"same images, two-sided, level {1 - b['level']:g} after Holm's correction over the section's "
                     f"{n} comparison(s)); `tied` = not significantly lower; – = not compared.")
    if _prior_compared(s):
        n = sum(1 for g in s.ranked if g.vs_prior in ("above", "tied", "below"))
        lines.append("vs prior: the same test against the location-prior row (`prior`: the most frequent training "
                     "class at each place of the frame, whatever the image shows; Holm's correction over its "
                     f"{n} comparison(s)); `above` = mIoU significantly higher than that one fixed map's; `tied` or "
                     "`below` = not.")
    if _reads_tested(s):
        n = sum(1 for g in s.ranked if g.reads_image)
        lines.append("reads image: the same test against the row's own mode map (at each pixel the class it "
                     "predicted most often over these images, the one map it would draw if it ignored them; each seed "
                     "against its own, and a row of several seeds takes its weakest seed's test; Holm's correction over "
                     f"the {n} row(s) tested); `yes` = mIoU significantly higher (in every seed), so its "
                     "predictions follow each image; `no` = not shown to; – = not tested (not every prediction saved, "
                     "images of different sizes, unreadable files; bench/report/photo_gain.py).")
    return lines


def _sharing_lines(s: Section) -> list[str]:
    """A line when some jobs ran side by side (``--workers``): their times were measured on a
    shared machine."""
    shared = sorted({(int(num(r.extra["workers"])), int(num(r.extra["threads"])))  # a worker records both
                     for g in s.ranked for r in g.ok if num(r.extra.get("workers")) > 1})
    if not shared:
        return []
    how = "; ".join(f"{w} jobs at a time, {t} thread(s) each" for w, t in shared)
    return [f"Times (images/s, fit seconds in `budget`) of jobs run with `--workers` ({how}) were measured "
            "while other jobs shared the machine; `python -m bench speed --method NAME` times a method alone."]


def _ranked_markdown(s: Section) -> list[str]:
    md = [_convention_line(s), "Metrics in %; mean ± sample std (ddof=1) over seeds when n > 1; "
          "– = not available.", *_uncertainty_lines(s), *_sharing_lines(s), ""]
    if _skip_notes(s):
        md += ["**Partial scores: some rows marked `--skip-bad-samples` were scored with unreadable samples "
               "left out (their count is in column `skipped samples`); they are not comparable with rows "
               "scored on every sample. Which samples and why: see Notes.**", ""]
    return md + [to_markdown(_display_table(s)), ""]


def _per_class_markdown(s: Section) -> list[str]:
    t = per_class_table(s)
    md = ["### Per-class IoU (%)", ""]
    if t is None:
        return md + ["No per-class IoU recorded.", ""]
    note = " Classes as rows." if len(t.classes) > TRANSPOSE_CLASSES else ""
    return md + [f"Mean over seeds; classes with no IoU for any method are left out.{note}", "",
                 _class_markdown(t), ""]


def section_markdown(s: Section, plots: dict[str, Path]) -> list[str]:
    """The lines of one dataset/split section of leaderboard.md (``plots``: title -> file)."""
    md = [f"## {s.title}", ""]
    if not s.ranked:
        md += ["**No successful jobs for this dataset/split: nothing to rank.**", ""]
    else:
        md += _ranked_markdown(s)
    if s.failed:
        md += ["### Failed jobs", ""]
        md += [f"- **{md_cell(g.label)}** (seed {r.seed}, job `{r.job_id}`): "
               f"{md_cell(r.error or 'no error message recorded')}  \n  {_command(r.command)}"
               for g, r in s.failed]
        md.append("")
    if s.ranked:
        md += ["### How to reproduce", ""] + _reproduce_lines(s) + [""]
        md += _per_class_markdown(s)
    if plots:
        md += ["### Plots", ""] + [f"![{name}]({p.name})" for name, p in plots.items()] + [""]
    notes = _skip_notes(s) + s.notes
    if notes:
        md += ["### Notes", ""] + [f"- {n}" for n in notes] + [""]
    return md


def header_markdown(sections: list[Section], source: str) -> list[str]:
    """The title and summary lines of leaderboard.md."""
    n_ok = sum(len(g.ok) for s in sections for g in s.groups)
    n_failed = sum(len(g.failed) for s in sections for g in s.groups)
    md = ["# segbench leaderboard", "",
          f"{n_ok + n_failed} job records from {source} ({n_ok} ok, {n_failed} failed), "
          f"{len(sections)} dataset/split section(s). Ranked by mIoU within each section.", ""]
    if not sections:
        md += ["**No job records found: nothing to report.**", ""]
    elif n_ok == 0:
        md += ["**No job succeeded: there is nothing to rank; the failed jobs are listed below.**", ""]
    return md


def leaderboard_text(sections: list[Section]) -> str:
    """A compact table per dataset/split (method, mIoU, pixel acc, BF, img/s) for a terminal."""
    parts = []
    for s in sections:
        parts.append(f"== {s.title} ==")
        if s.ranked:
            rows = [{"method": g.label + (f" (n={len(g.ok)})" if len(g.ok) > 1 else ""),
                     "mIoU": fmt_pct(*g.stat("miou")),
                     "pixel acc": fmt_pct(*g.stat("pixel_acc")),
                     "BF": fmt_pct(*g.stat("bf")),
                     "img/s": fmt_rate(g.stat("images_per_s")[0])} for g in s.ranked]
            parts.append(to_markdown(pd.DataFrame(rows), tablefmt="simple"))
        else:
            parts.append("no successful jobs")
        if s.failed:
            parts.append(f"{len(s.failed)} failed: " + "; ".join(
                f"{g.label} (seed {r.seed}): {r.error or 'no error message'}" for g, r in s.failed))
        parts.append("")
    return "\n".join(parts).rstrip()
