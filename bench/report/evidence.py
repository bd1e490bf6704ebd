"""Per-image evidence figures: the images each method gets most wrong, and the images where the
best classical and the best deep method disagree most (image, ground truth, predictions).

They are drawn from what the jobs saved (bench.run.outputs): each job keeps the predictions of
its own worst images, of the first images and of a fixed pseudo-random sample of the split
shared by every method, which is the whole split up to 128 images. "Most wrong" is therefore
exact, and so is "disagree most" on such splits (CamVid val, the default data); on larger
ones it is ranked among the images whose predictions both jobs saved (the shared sample, the
first images, and any of either job's worst images the other also saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets.palettes import colorize
from bench.formatting import is_finite_number
from bench.record import Record
from bench.report.aggregate import Group, Section
from bench.report.grid import GRID_PANEL_IN, default_palette, load_palette, read_png, show_panel
from bench.report.plots import figure, save_figure

#: worst images shown per method, methods shown at most, disagreement rows
WORST_PER_METHOD = 2
WORST_METHODS = 8
DISAGREEMENT_ROWS = 4


@dataclass
class _Row:
    label: str
    panels: list[tuple[np.ndarray | None, str]]  # (RGB array or None, caption)


@dataclass
class _Job:
    """One job's figures for the evidence: per-image mIoU and its saved prediction files."""

    group: Group
    record: Record
    miou: dict[str, float]
    saved: dict[str, Path]


def _job(s: Section, g: Group, out_dir: Path) -> _Job | None:
    """The group's lowest seed with per-image data and saved predictions."""
    for r in g.ok:
        data = s.per_image.get(r.job_id)
        saved = {Path(p).stem: out_dir / p for p in r.predictions if (out_dir / p).is_file()}
        if data is not None and saved:
            scores = data.image_scores()
            return _Job(g, r, dict(zip(scores["id"], scores["miou"])), saved)
    return None


class _Painter:
    """Reads a section's sample images, ground truths and predictions, coloured by its palette."""

    def __init__(self, s: Section, out_dir: Path):
        self.folder = out_dir / "samples" / s.dataset / s.split
        _, self.palette, self.ignore, _ = load_palette(self.folder)

    def has(self, sample_id: str) -> bool:
        return (self.folder / f"{sample_id}_image.png").is_file() and (self.folder / f"{sample_id}_gt.png").is_file()

    def labels(self, path: Path) -> np.ndarray | None:
        a = read_png(path)
        if a is None or a.ndim != 2:
            return None
        if self.palette is None:
            self.palette, self.ignore = default_palette(256), 255
        return colorize(a, self.palette, self.ignore)

    def image(self, sample_id: str) -> np.ndarray | None:
        a = read_png(self.folder / f"{sample_id}_image.png")
        return np.repeat(a.astype(np.uint8)[..., None], 3, axis=2) if a is not None and a.ndim == 2 else a

    def gt(self, sample_id: str) -> np.ndarray | None:
        return self.labels(self.folder / f"{sample_id}_gt.png")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if is_finite_number(x) else "–"


def _draw(title: str, columns: list[str], rows: list[_Row], path: Path) -> Path:
    arrays = [a for row in rows for a, _ in row.panels if a is not None]
    aspect = arrays[0].shape[0] / arrays[0].shape[1] if arrays else 0.75
    pw = GRID_PANEL_IN
    fig = figure(len(columns) * pw, len(rows) * (pw * aspect + 0.45) + 0.7)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        for c, (arr, caption) in enumerate(row.panels):
            show_panel(axes[r][c], arr)
            axes[r][c].set_xlabel(caption, fontsize=7.5)
        axes[r][0].set_ylabel(row.label, fontsize=7.5)
    for c, name in enumerate(columns):
        axes[0][c].set_title(name, fontsize=9 if len(name) < 28 else 7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, metadata={"Description": f"segbench evidence: {len(rows)} rows x {len(columns)} "
                                                           "columns"})


def plot_worst_images(s: Section, out_dir: Path, path: Path) -> list[tuple[str, str]]:
    """Each method's lowest-mIoU images (per-image mIoU): image, ground truth, its prediction.
    Returns the (row label, image id) pairs drawn; none when there is nothing to draw."""
    paint = _Painter(s, out_dir)
    rows, shown_ids = [], []
    for g in s.ranked[:WORST_METHODS]:
        job = _job(s, g, out_dir)
        if job is None:
            continue
        shown = [i for i in job.saved if paint.has(i) and is_finite_number(job.miou.get(i))]
        for i in sorted(shown, key=lambda i: job.miou[i])[:WORST_PER_METHOD]:
            rows.append(_Row(f"{g.label}\n{i}", [(paint.image(i), ""), (paint.gt(i), ""),
                                                 (paint.labels(job.saved[i]), f"image mIoU {_pct(job.miou[i])}")]))
            shown_ids.append((g.label, i))
    if rows:
        _draw(f"{s.title}: each method's worst images (lowest per-image mIoU)", ["image", "ground truth", "prediction"],
              rows, path)
    return shown_ids


def _best_of_kind(s: Section, kind: str, out_dir: Path) -> _Job | None:
    return next((j for g in s.ranked if g.kind == kind and (j := _job(s, g, out_dir)) is not None), None)


def plot_disagreement(s: Section, out_dir: Path, path: Path) -> list[str]:
    """Where the best classical and the best deep row differ most in per-image mIoU, among the
    images whose predictions both saved: image, ground truth, both predictions. Returns the
    image ids drawn; none when there is nothing to draw."""
    classical, deep = _best_of_kind(s, "classical", out_dir), _best_of_kind(s, "deep", out_dir)
    if classical is None or deep is None:
        return []
    paint = _Painter(s, out_dir)
    both = [i for i in classical.saved if i in deep.saved and paint.has(i)
            and is_finite_number(classical.miou.get(i)) and is_finite_number(deep.miou.get(i))]
    if not both:
        s.notes.append(f"Disagreement figure skipped: {classical.group.label} and {deep.group.label} saved no "
                       "prediction of a common image.")
        return []
    gap = {i: deep.miou[i] - classical.miou[i] for i in both}
    chosen = sorted(both, key=lambda i: -abs(gap[i]))[:DISAGREEMENT_ROWS]
    rows = [_Row(f"{i}\ndeep - classical: {100 * gap[i]:+.1f} pts",
                 [(paint.image(i), ""), (paint.gt(i), ""),
                  (paint.labels(classical.saved[i]), f"image mIoU {_pct(classical.miou[i])}"),
                  (paint.labels(deep.saved[i]), f"image mIoU {_pct(deep.miou[i])}")]) for i in chosen]
    _draw(f"{s.title}: largest disagreement, best classical vs best deep (of {len(both)} images both saved)",
          ["image", "ground truth", f"{classical.group.label} (classical)", f"{deep.group.label} (deep)"], rows, path)
    return chosen


def evidence_plots(s: Section, out_dir: str | Path) -> dict[str, Path]:
    """Draw the section's evidence figures (those its data allow); title -> file."""
    out_dir = Path(out_dir)
    out: dict[str, Path] = {}
    p = out_dir / f"worst_images{s.suffix}.png"
    if plot_worst_images(s, out_dir, p):
        out["worst images"] = p
    p = out_dir / f"disagreement{s.suffix}.png"
    if plot_disagreement(s, out_dir, p):
        out["classical vs deep: largest disagreement"] = p
    return out
