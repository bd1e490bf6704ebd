"""Does a method read each image? Its mIoU against that of its own per-pixel-mode map.

The mode map is, at each pixel, the class the method predicted most often over the split's
images: the one picture it would draw for every image if it ignored them. A method that
learned only where things usually are (the location prior, a network stuck on the average
silhouette) scores the same with its mode map as with its predictions; one that follows
each image scores higher. Unlike the `vs prior` column this needs no floor at the method's
own resolution: a stride-32 network is held against its own coarse map.

Read from a results folder alone: the jobs' per-image confusion matrices, their saved
predictions and the saved ground truths (runs save every prediction of splits of up to
``bench.run.outputs.SAMPLE_ALL_UP_TO`` images). The gain's interval and p-value are the
paired image bootstrap of the leaderboard, Holm-corrected over a split's rows as its `vs best`
and `vs prior` families (docs/UNCERTAINTY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.metrics.bootstrap import Arm, bootstrap, holm
from bench.metrics.confusion import confusion_matrix
from bench.per_image import PerImageError, read_per_image
from bench.record import Record
from bench.report.aggregate import Group, Section, group_records
from bench.report.grid import load_palette, read_png
from bench.store import RecordStore

#: the level of the test (after Holm's correction), as the leaderboard's ties
LEVEL = 0.05


@dataclass
class PhotoGain:
    """One leaderboard row's figures (fractions): mIoU, its mode map's mIoU, and the gain
    ``miou - mode_miou`` with its interval, two-sided p-value and that p after Holm's
    correction over the rows of its dataset/split; or ``why`` it has none."""

    dataset: str
    split: str
    label: str
    n_images: int = 0
    miou: float = float("nan")
    mode_miou: float = float("nan")
    gain: float = float("nan")
    gain_lo: float = float("nan")
    gain_hi: float = float("nan")
    p: float = float("nan")
    p_holm: float = float("nan")
    why: str = ""
    #: which of the row's records: "" for a row of one, else "seed n" (or its job id)
    seed: str = ""

    @property
    def verdict(self) -> str:
        """"reads the image" for a gain above 0 at level 0.05 after Holm's correction, else "no"."""
        if self.why:
            return "-"
        return "reads the image" if self.gain > 0 and self.p_holm < LEVEL else "no"


#: class counts held at once by :func:`mode_map` (a band of rows at a time): about 32 MB
MODE_MAP_CELLS = 4_000_000


def mode_map(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) per-pixel most frequent class of ``predictions`` (N, H, W), every value in
    [0, num_classes); ties to the lower class. Counted a band of rows at a time, one
    bincount an image (loops over bands and images, not pixels)."""
    n, h, w = predictions.shape
    rows = max(1, MODE_MAP_CELLS // max(1, w * num_classes))
    out = np.empty((h, w), np.int32)
    for r0 in range(0, h, rows):
        band = predictions[:, r0:r0 + rows].reshape(n, -1)
        cells = band.shape[1]
        offsets = np.arange(cells, dtype=np.int64) * num_classes
        counts = np.zeros(cells * num_classes, np.int64)
        for p in band:
            counts += np.bincount(offsets + p, minlength=counts.size)
        out[r0:r0 + rows] = counts.reshape(cells, num_classes).argmax(axis=1).reshape(-1, w)
    return out


def mode_map_matrices(predictions: np.ndarray, ground_truths, num_classes: int,
                      ignore: int | None) -> np.ndarray:
    """(N, K, K) confusion matrices of the mode map of ``predictions`` (N, H, W) against each
    of the N ground truths: the mode-map arm of the test."""
    mode = mode_map(predictions, num_classes)
    return np.stack([confusion_matrix(mode, t, num_classes, ignore) for t in ground_truths])


class _GroundTruths:
    """A section's saved ground truths, each read once however many rows use it."""

    def __init__(self, folder: Path):
        self.folder, self.read = folder, {}

    def __call__(self, sample_id: str) -> np.ndarray | None:
        if sample_id not in self.read:
            self.read[sample_id] = read_png(self.folder / f"{sample_id}_gt.png")
        return self.read[sample_id]


def _seed_label(label: str, seed: str) -> str:
    return f"{label} ({seed})" if seed else label


def _record_gain(s: Section, out_dir: Path, ignore: int | None, gt: _GroundTruths,
                record: Record, label: str, seed: str) -> PhotoGain:
    """The row's test on one of its records."""
    row = PhotoGain(s.dataset, s.split, _seed_label(label, seed), seed=seed)
    if not record.per_image:
        row.why = "no per-image data"
        return row
    data = s.per_image.get(record.job_id)  # read by bench.report.intervals when the report made it
    if data is None:
        try:
            data = read_per_image(out_dir / record.per_image)
        except PerImageError as e:
            row.why = str(e)
            return row
    saved = {Path(p).stem: out_dir / p for p in record.predictions}
    missing = [i for i in data.ids if i not in saved]
    if missing:
        row.why = f"predictions of {len(missing)} of {data.n_images} images not saved"
        return row
    preds = [read_png(saved[i]) for i in data.ids]
    gts = [gt(i) for i in data.ids]
    if any(a is None for a in preds + gts):
        row.why = "a saved prediction or ground truth is unreadable"
        return row
    if len({a.shape for a in preds + gts}) > 1:
        row.why = "images of different sizes (no one mode map)"
        return row
    k = data.num_classes
    stack = np.stack(preds)
    if stack.min() < 0 or stack.max() >= k:
        row.why = f"predictions outside the {k} classes"
        return row
    mode_matrices = mode_map_matrices(stack, gts, k, ignore)
    convention = record.miou_convention or "mmseg"
    res = bootstrap([Arm(data.matrices, convention), Arm(mode_matrices, convention)], pairs=[(0, 1)])
    diff = res.differences[(0, 1)]
    row.n_images = data.n_images
    row.miou, row.mode_miou = res.arms[0].value["miou"], res.arms[1].value["miou"]
    row.gain, (row.gain_lo, row.gain_hi), row.p = diff.value["miou"], diff.interval("miou"), diff.p["miou"]
    return row


def _seed_records(g: Group) -> list[tuple[Record, str]]:
    """(record, which) of each finished record of a row: ``which`` is "" when the row has one,
    else ``seed n`` (the job id where seeds repeat or are missing: one row may hold jobs run on
    two devices)."""
    if len(g.ok) == 1:
        return [(g.ok[0], "")]
    seeds = [r.seed for r in g.ok]
    by_seed = None not in seeds and len(set(seeds)) == len(seeds)
    return [(r, f"seed {r.seed}" if by_seed else r.job_id) for r in g.ok]


def _seed_gains(s: Section, g: Group, out_dir: Path, ignore: int | None, gt: _GroundTruths) -> list[PhotoGain]:
    """Each finished record's test; data that do not fit together leave that test's ``why``."""
    if not g.ok:
        return [PhotoGain(s.dataset, s.split, g.label, why="no finished job")]
    gains = []
    for record, seed in _seed_records(g):
        try:
            gains.append(_record_gain(s, out_dir, ignore, gt, record, g.label, seed))
        except Exception as e:  # the row says so, the report goes on
            gains.append(PhotoGain(s.dataset, s.split, _seed_label(g.label, seed),
                                   why=f"{type(e).__name__}: {e}", seed=seed))
    return gains


def _row_gain(seeds: list[PhotoGain], label: str) -> PhotoGain:
    """A row's test from its seeds' (in seed order): the one seed's, or the weakest seed's (one
    whose gain is not above 0 if there is one, else the largest p; the lowest seed on ties), so
    that the row reads the image only where every seed does (an intersection-union test: no
    correction within the row); untested when any seed is."""
    if len(seeds) == 1:
        return seeds[0]
    failed = next((x for x in seeds if x.why), None)
    if failed:
        return PhotoGain(failed.dataset, failed.split, label, why=f"{failed.label}: {failed.why}")
    weakest = max(seeds, key=lambda x: (not x.gain > 0, x.p))
    weakest.label = f"{label} (weakest of {len(seeds)} seeds: {weakest.seed})"
    return weakest


def section_gains(s: Section, out_dir: str | Path, every_seed: bool = False) -> list[PhotoGain]:
    """The section's ranked rows, each tested on every seed it has (a row with several seeds
    gets its weakest seed's figures, :func:`_row_gain`; ``every_seed``: one row a seed, labelled
    ``label (seed n)``), Holm-corrected over the rows tested."""
    out_dir = Path(out_dir)
    folder = out_dir / "samples" / s.dataset / s.split
    _, _, ignore, _ = load_palette(folder)
    gt = _GroundTruths(folder)
    rows = []
    for g in s.ranked:
        seeds = _seed_gains(s, g, out_dir, ignore, gt)
        rows += seeds if every_seed else [_row_gain(seeds, g.label)]
    tested = [r for r in rows if not r.why]
    for r, p in zip(tested, holm([r.p for r in tested]) if tested else []):
        r.p_holm = float(p)
    return rows


def add_photo_gains(sections: list[Section], out_dir: str | Path) -> None:
    """Fill each ranked group's ``reads_image``, ``photo_gain`` and ``p_reads_image_holm``
    (bench.report.aggregate.Group); a group without every prediction saved stays untested."""
    for s in sections:
        for g, r in zip(s.ranked, section_gains(s, out_dir)):
            if not r.why:
                g.reads_image = "yes" if r.verdict == "reads the image" else "no"
                g.photo_gain, g.p_reads_image_holm = r.gain, r.p_holm


def photo_gains(out_dir: str | Path, every_seed: bool = False) -> list[PhotoGain]:
    """Every leaderboard row of the results folder ``out_dir`` (its weakest seed, or each of its
    seeds), ranked as there."""
    return [r for s in group_records(RecordStore(Path(out_dir)).records())
            for r in section_gains(s, out_dir, every_seed)]


def photo_gain_markdown(rows: list[PhotoGain]) -> str:
    """The rows as Markdown tables, one per dataset/split (mIoU in points)."""
    lines: list[str] = []
    for key in dict.fromkeys((r.dataset, r.split) for r in rows):
        lines += [f"#### {key[0]} / {key[1]}", "",
                  "| method | mIoU | own mode map | gain [95% CI] | p (Holm) | |", "|---|---:|---:|---:|---:|---|"]
        for r in (r for r in rows if (r.dataset, r.split) == key):
            if r.why:
                lines.append(f"| {r.label} | | | | | {r.why} |")
                continue
            p = "< 0.001" if r.p_holm < 0.001 else f"{r.p_holm:.3f}"
            lines.append(f"| {r.label} | {100 * r.miou:.1f} | {100 * r.mode_miou:.1f} | "
                         f"{100 * r.gain:+.1f} [{100 * r.gain_lo:+.1f}, {100 * r.gain_hi:+.1f}] | {p} | {r.verdict} |")
        lines.append("")
    return "\n".join(lines)
