"""Reports from job records: leaderboards, per-class IoU tables and plots.

:func:`build_report` reads the records of a results folder through
:class:`bench.store.RecordStore` (see :mod:`bench.record` for the fields; a previous release's
``records.jsonl`` is read as well) and writes, into the same folder:

- ``leaderboard.csv``: one row per (dataset, eval_split, method, settings) group of ok
  records, ranked by mIoU within each dataset/split, then one row per failed record
  (``status`` "failed", metrics empty, ``error`` set). Metrics are fractions in [0, 1] at
  full precision; ``<metric>_std`` is the sample standard deviation (ddof=1) over seeds
  (empty for one seed). Also ``extra_<key>`` for numeric ``extra`` figures (e.g.
  ``extra_oracle_miou``), ``miou_conv_<name>`` for every ``miou_by_convention`` entry, and
  the provenance (device, git commit, job ids, commands). Rows whose jobs kept per-image
  data also get ``<metric>_lo``/``_hi`` (95% image-bootstrap interval, ``ci_resamples``,
  ``ci_seed``), ``vs_best``/``p_vs_best``/``p_vs_best_holm`` (the paired test against
  the section's best row) and ``vs_prior``/``p_vs_prior``/``p_vs_prior_holm`` (against its
  location-prior row, where it has one; :mod:`bench.report.intervals`).
- ``leaderboard.md``: a section per dataset/split with the ranked table (percentages,
  one decimal, "mean ± std" when several seeds), the failed jobs with their errors, the
  mIoU convention, a "How to reproduce" list (command, seed, device, git commit, versions
  of every record behind every row), the per-class IoU table and the plots. Jobs run with
  ``--skip-bad-samples`` form their own rows, labelled ``[--skip-bad-samples]``, with a
  ``skipped samples`` column, a warning above the table when any sample was left out and a
  note naming each left-out sample and its error.
- ``per_class_iou.csv``: long format, one row per (dataset, eval_split, method, class)
  with the IoU averaged over seeds (and ``iou_lo``/``iou_hi``); classes that are NaN for
  every method are left out.
- ``worst_images.png``, ``disagreement.png``: each method's worst images, and where the best
  classical and the best deep method disagree most (:mod:`bench.report.evidence`).
- ``miou_vs_speed.png``, ``per_class_iou.png``, ``predictions_grid.png``: one set per
  dataset/split, suffixed ``_<dataset>`` (``_<dataset>_<split>`` when a dataset has
  several eval splits) as soon as the records hold more than one dataset/split.
- ``report.html``: all of the above as one self-contained page (sortable tables, the plots
  inline; :mod:`bench.report.html`).

:func:`format_leaderboard_text` gives a compact table for a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from bench.files import write_atomic
from bench.record import Record
from bench.report.aggregate import Section, group_records, leaderboard_frame, per_class_frame, per_class_table
from bench.report.evidence import evidence_plots
from bench.report.grid import plot_predictions_grid
from bench.report.html import write_html_report
from bench.report.intervals import add_intervals
from bench.report.photo_gain import add_photo_gains
from bench.report.plots import plot_miou_vs_speed, plot_per_class
from bench.report.tables import header_markdown, leaderboard_text, section_markdown, write_csv
from bench.store import EXPORT_FILE, RECORDS_DIR, RecordStore

__all__ = ["build_report", "format_leaderboard_text"]


def _section_plots(s: Section, out_dir: Path, keep: Callable[[Path], Path]) -> dict[str, Path]:
    """The plots of one section (title -> file); a plot that fails becomes a note, never an error."""
    plots: dict[str, Path] = {}
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
        plots.update({title: keep(p) for title, p in evidence_plots(s, out_dir).items()})
    except Exception as e:  # a plot must never cost the tables: reported in the section's notes
        s.notes.append(f"Plotting failed: {type(e).__name__}: {e}")
    return plots


def build_report(out_dir: str | Path, records: Iterable[Record] | None = None) -> dict[str, Path]:
    """Write the leaderboards, per-class tables and plots into ``out_dir``.

    ``records`` default to the folder's own (:meth:`bench.store.RecordStore.records`).
    Returns ``{file name: path}`` of every file written. Never raises for missing or
    failed results: they are reported in leaderboard.md instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if records is None:
        store = RecordStore(out_dir)
        source = f"`{RECORDS_DIR}/`" if store.records_dir.is_dir() else f"`{EXPORT_FILE}`"
        records = store.records()
    else:
        source = "the records given"
    sections = group_records(records)
    add_intervals(sections, out_dir)
    add_photo_gains(sections, out_dir)
    written: dict[str, Path] = {}

    def keep(p: Path) -> Path:
        written[p.name] = p
        return p

    leaderboard, per_class = leaderboard_frame(sections), per_class_frame(sections)
    write_csv(leaderboard, keep(out_dir / "leaderboard.csv"))
    write_csv(per_class, keep(out_dir / "per_class_iou.csv"))
    md = header_markdown(sections, source)
    plots = [_section_plots(s, out_dir, keep) if s.ranked else {} for s in sections]
    for s, p in zip(sections, plots):
        md += section_markdown(s, p)
    write_atomic(keep(out_dir / "leaderboard.md"), "\n".join(md).rstrip() + "\n")
    write_html_report(keep(out_dir / "report.html"), sections, plots, leaderboard, per_class, source)
    return written


def format_leaderboard_text(out_dir: str | Path, records: Iterable[Record] | None = None) -> str:
    """A compact table per dataset/split (method, mIoU, pixel acc, BF, img/s) for a terminal."""
    out_dir = Path(out_dir)
    sections = group_records(RecordStore(out_dir).records() if records is None else records)
    if not sections:
        return f"No job records in {out_dir}."
    return leaderboard_text(sections)
