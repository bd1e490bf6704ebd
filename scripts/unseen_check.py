#!/usr/bin/env python
"""Score the fitted rows of a results folder on photos nothing was chosen on.

    python scripts/make_ccp_mini.py --src ../shared/datasets/ccp --out /tmp/ccp-unseen --seed 1 \\
        --n-train 0 --n-val 200 --exclude bench/datasets/data/ccp_mini/splits.json
    python scripts/unseen_check.py results --data-root /tmp/ccp-unseen [--methods fcn8s,unet] [--md FILE]

Every finished job of RESULTS (its lowest seed when there are several; methods that save
their fitted state) is loaded from ``runs/<job>/`` and predicts every image of ``--split``
of its own dataset read from ``--data-root`` instead (for ccp-mini-groups: a folder that
``make_ccp_mini.py --exclude`` wrote). Per row: mIoU [95% CI] on those images, the mIoU of
the row's own mode map over them (what it would score drawing one map for every photo), the
gain over it and over the location-prior row, each with its paired image-bootstrap interval
and Holm-corrected p-value (bench.metrics.bootstrap, bench.report.photo_gain): the
leaderboard's `reads image` and `vs prior` on other photos. The leaderboard was made on val
only; this says whether its verdicts hold where no setting was chosen.
"""

from __future__ import annotations

import argparse
import json
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
from bench.record import id_settings_of  # noqa: E402
from bench.report.photo_gain import mode_map  # noqa: E402
from bench.store import RecordStore  # noqa: E402

PRIOR = "location-prior"


def fitted_records(results: Path, methods: list[str] | None) -> list:
    """The lowest-seed finished record of each row (method and result settings, as the
    leaderboard groups them) whose method saves its fit."""
    chosen: dict[tuple, object] = {}
    for r in sorted(RecordStore(results).records(), key=lambda r: (r.seed is None, r.seed or 0)):
        if not r.ok or (methods and r.method not in methods) or not method_class(r.method).capabilities.save:
            continue
        settings = json.dumps(id_settings_of(r.method, r.settings), sort_keys=True, default=str)
        chosen.setdefault((r.dataset, r.method, settings), r)
    return list(chosen.values())


def row_matrices(results: Path, record, samples, num_classes: int, ignore) -> tuple[np.ndarray, np.ndarray]:
    """Per-image confusion matrices of the row's predictions and of its own mode map."""
    method = load_job_method(results, record)
    preds = np.stack([method.predict(s.image) for s in samples])
    if preds.min() < 0 or preds.max() >= num_classes:
        raise SegbenchError(f"{record.job_id}: predictions outside the {num_classes} classes")
    mode = mode_map(preds.astype(np.int64), num_classes)
    gts = [s.label for s in samples]
    return (np.stack([confusion_matrix(p, g, num_classes, ignore) for p, g in zip(preds, gts)]),
            np.stack([confusion_matrix(mode, g, num_classes, ignore) for g in gts]))


def check(results: Path, data_root: Path, split: str, methods: list[str] | None) -> str:
    records = fitted_records(results, methods)
    if not records:
        raise SegbenchError(f"{results}: no finished job with a saved fit" + (f" among {methods}" if methods else ""))
    datasets = {r.dataset for r in records}
    if len(datasets) > 1:
        raise SegbenchError(f"{results}: jobs of several datasets ({', '.join(sorted(datasets))}); give --methods")
    ds = get_dataset(datasets.pop(), root=data_root)
    samples = list(ds.split(split))
    if len({s.label.shape for s in samples}) > 1:
        raise SegbenchError(f"{data_root}: images of different sizes, so no one mode map; resize them to one size")
    k, ignore = ds.info.num_classes, ds.info.ignore_index
    rows = [(r, *row_matrices(results, r, samples, k, ignore)) for r in tqdm(records, desc="rows", unit="row")]
    prior = next((m for r, m, _ in rows if r.method == PRIOR), None)
    convention = records[0].miou_convention or "mmseg"
    found = []
    for r, mats, mode_mats in rows:
        arms = [Arm(mats, convention), Arm(mode_mats, convention)] + ([Arm(prior, convention)] if prior is not None else [])
        b = bootstrap(arms, pairs=[(0, 1)] + ([(0, 2)] if prior is not None else []))
        found.append((r, b))
    p_mode = holm([b.differences[(0, 1)].p["miou"] for _, b in found])
    p_prior = holm([b.differences[(0, 2)].p["miou"] for _, b in found]) if prior is not None else [None] * len(found)
    lines = [f"{len(samples)} images of {ds.info.name}/{split} at {data_root}; mIoU in %, [95% interval], "
             f"paired image bootstrap, Holm over the {len(found)} rows", "",
             "| method | job | mIoU | own mode map | gain over it | p (Holm) | vs location prior | p (Holm) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    order = sorted(range(len(found)), key=lambda i: -found[i][1].arms[0].value["miou"])
    for i in order:
        r, b = found[i]
        lo, hi = b.arms[0].interval("miou")
        d = b.differences[(0, 1)]
        g_lo, g_hi = d.interval("miou")
        cells = [r.method, f"`{r.job_id}`", f"{100 * b.arms[0].value['miou']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]",
                 f"{100 * b.arms[1].value['miou']:.1f}",
                 f"{100 * d.value['miou']:+.1f} [{100 * g_lo:+.1f}, {100 * g_hi:+.1f}]", f"{p_mode[i]:.3f}"]
        if prior is not None:
            e = b.differences[(0, 2)]
            e_lo, e_hi = e.interval("miou")
            cells += [f"{100 * e.value['miou']:+.1f} [{100 * e_lo:+.1f}, {100 * e_hi:+.1f}]", f"{p_prior[i]:.3f}"]
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
    try:
        text = check(args.results, args.data_root, args.split, args.methods.split(",") if args.methods else None)
    except SegbenchError as e:
        print(f"unseen_check: error: {e}", file=sys.stderr)
        return 2
    print(text)
    if args.md:
        args.md.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
