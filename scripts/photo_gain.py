"""Does each method of a results folder read the image? Its mIoU against its own mode map.

    python scripts/photo_gain.py RESULTS_DIR [--every-seed] [--md FILE]

Prints, per dataset/split, every leaderboard row's (its lowest seed's; ``--every-seed``: each
seed's, Holm's correction then over every seed tested) mIoU, the mIoU of its per-pixel-mode map
over the split (the one map it would draw for every image), the gain with its 95% paired
bootstrap interval and p-value (bench.report.photo_gain, docs/UNCERTAINTY.md).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from bench.metrics.bootstrap import RESAMPLES
from bench.report.photo_gain import LEVEL, photo_gain_markdown, photo_gains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results folder (bench run --out)")
    parser.add_argument("--every-seed", action="store_true", help="test each seed of a row, not only its lowest")
    parser.add_argument("--md", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    if not args.results.is_dir():
        parser.error(f"{args.results}: no such results folder")
    rows = photo_gains(args.results, every_seed=args.every_seed)
    text = photo_gain_markdown(rows)
    print(text)
    tested = Counter((r.dataset, r.split) for r in rows if not r.why)
    for (dataset, split), m in tested.items():
        floor = m * 2 / (RESAMPLES + 1)  # the smallest two-sided bootstrap p, after Holm over m rows
        if floor >= LEVEL:
            print(f"note: {dataset}/{split}: {m} rows tested, so after Holm's correction no p is below {floor:.3f} "
                  f"with {RESAMPLES} resamples and no row can read 'yes'; test fewer rows at once", file=sys.stderr)
    if args.md:
        args.md.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
