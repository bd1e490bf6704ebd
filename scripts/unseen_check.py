#!/usr/bin/env python
"""Score the fitted rows of a results folder on photos nothing was chosen on.

    python scripts/make_ccp_mini.py --src ../shared/datasets/ccp --out /tmp/ccp-unseen --seed 1 \\
        --n-train 0 --n-val 200 --exclude bench/datasets/data/ccp_mini/splits.json
    python scripts/unseen_check.py results --data-root /tmp/ccp-unseen [--methods fcn8s,unet] [--md FILE]

Every leaderboard row of RESULTS (grouped as the leaderboard groups its records; the row's
lowest seed; methods that save their fitted state) is loaded from ``runs/<job>/`` and
predicts every image of ``--split`` of its own dataset read from ``--data-root`` instead
(for ccp-mini-groups: a folder that ``make_ccp_mini.py --exclude`` wrote). Per row: mIoU
[95% CI] on those images, the mIoU of the row's own mode map over them (what it would score
drawing one map for every photo), the gain over it and over the location-prior row (always
scored when the folder has one), each with its paired image-bootstrap interval and
Holm-corrected p-value (bench.metrics.bootstrap, bench.report.photo_gain): the leaderboard's
`reads image` and `vs prior` on other photos. The leaderboard was made on one split; this
says whether its verdicts hold where no setting was chosen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datasets import get_dataset  # noqa: E402
from bench.errors import SegbenchError  # noqa: E402
from bench.method import method_class  # noqa: E402
from bench.metrics.bootstrap import Arm, bootstrap, holm  # noqa: E402
from bench.metrics.confusion import confusion_matrix  # noqa: E402
from bench.predict import load_job_method  # noqa: E402
from bench.report.aggregate import Group, group_records  # noqa: E402
from bench.report.photo_gain import mode_map_matrices  # noqa: E402
from bench.store import RecordStore  # noqa: E402

PRIOR = "location-prior"


def fitted_rows(results: Path, methods: list[str] | None) -> list[Group]:
    """The leaderboard's rows (``methods`` and the location prior, or all) whose method saves
    its fit and that have a finished record; an error naming any method asked for without one."""
    rows = [g for s in group_records(RecordStore(results).records()) for g in s.ranked
            if g.ok and method_class(g.method).capabilities.save
            and (methods is None or g.method in methods or g.method == PRIOR)]
    missing = sorted(set(methods or ()) - {g.method for g in rows})
    if missing:
        raise SegbenchError(f"{results}: no finished job with a saved fit of {', '.join(missing)}")
    if not rows:
        raise SegbenchError(f"{results}: no finished job with a saved fit")
    datasets = {g.dataset for g in rows}
    if len(datasets) > 1:
        raise SegbenchError(f"{results}: rows of several datasets ({', '.join(sorted(datasets))}); give --methods")
    return rows


def row_matrices(results: Path, g: Group, samples, num_classes: int, ignore) -> tuple[np.ndarray, np.ndarray]:
    """Per-image confusion matrices of the row's predictions (its lowest seed) and of its own mode map."""
    method = load_job_method(results, g.ok[0])
    preds = np.stack([method.predict(s.image) for s in samples])
    if preds.min() < 0 or preds.max() >= num_classes:
        raise SegbenchError(f"{g.ok[0].job_id}: predictions outside the {num_classes} classes")
    gts = [s.label for s in samples]
    return (np.stack([confusion_matrix(p, t, num_classes, ignore) for p, t in zip(preds, gts)]),
            mode_map_matrices(preds.astype(np.int64), gts, num_classes, ignore))


def _cells(est, lo_hi) -> str:
    return f"{100 * est:+.1f} [{100 * lo_hi[0]:+.1f}, {100 * lo_hi[1]:+.1f}]"


def check(results: Path, data_root: Path, split: str, methods: list[str] | None) -> str:
    rows = fitted_rows(results, methods)
    ds = get_dataset(rows[0].dataset, root=data_root)
    samples = list(ds.split(split))
    if len({s.label.shape for s in samples}) > 1:
        raise SegbenchError(f"{data_root}: images of different sizes, so no one mode map; resize them to one size")
    k, ignore = ds.info.num_classes, ds.info.ignore_index
    mats = [row_matrices(results, g, samples, k, ignore) for g in tqdm(rows, desc="rows", unit="row")]
    prior = next((m for g, (m, _) in zip(rows, mats) if g.method == PRIOR), None)
    convention = rows[0].ok[0].miou_convention or "mmseg"
    shown = [i for i, g in enumerate(rows) if methods is None or g.method in methods]
    found = {}
    for i in shown:
        row, mode = mats[i]
        arms = [Arm(row, convention), Arm(mode, convention)] + ([Arm(prior, convention)] if prior is not None else [])
        found[i] = bootstrap(arms, pairs=[(0, 1)] + ([(0, 2)] if prior is not None else []))
    p_mode = dict(zip(shown, holm([found[i].differences[(0, 1)].p["miou"] for i in shown])))
    vs_prior = [i for i in shown if prior is not None and rows[i].method != PRIOR]  # the prior is no test of itself
    p_prior = dict(zip(vs_prior, holm([found[i].differences[(0, 2)].p["miou"] for i in vs_prior]) if vs_prior else []))
    lines = [f"{len(samples)} images of {ds.info.name}/{split} at {data_root}; mIoU in %, [95% interval], "
             f"paired image bootstrap, Holm over the rows of each column", "",
             "| method | job | mIoU | own mode map | gain over it | p (Holm) | vs location prior | p (Holm) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for i in sorted(shown, key=lambda i: -found[i].arms[0].value["miou"]):
        b, d = found[i], found[i].differences[(0, 1)]
        lo, hi = b.arms[0].interval("miou")
        cells = [rows[i].label, f"`{rows[i].ok[0].job_id}`", f"{100 * b.arms[0].value['miou']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]",
                 f"{100 * b.arms[1].value['miou']:.1f}", _cells(d.value["miou"], d.interval("miou")), f"{p_mode[i]:.3f}"]
        if i in p_prior:
            e = b.differences[(0, 2)]
            cells += [_cells(e.value["miou"], e.interval("miou")), f"{p_prior[i]:.3f}"]
        else:
            cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results folder (bench run --out)")
    parser.add_argument("--data-root", type=Path, required=True, help="the dataset's folder of other photos")
    parser.add_argument("--split", default="val")
    parser.add_argument("--methods", help="comma-separated method names (default: every row that saved its fit)")
    parser.add_argument("--md", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"{args.results}: no such results folder")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        text = check(args.results, args.data_root, args.split, methods)
    except SegbenchError as e:
        print(f"unseen_check: error: {e}", file=sys.stderr)
        return 2
    print(text)
    if args.md:
        args.md.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
