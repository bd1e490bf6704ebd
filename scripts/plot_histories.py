"""Plot validation mIoU and training loss per epoch of several runs on one figure.

    python scripts/plot_histories.py OUT.png NAME-history.csv [...]

Each CSV is a trainer ``history.csv`` (deep/engine/loop.py); the network name is the file name
up to ``-history``. Used for docs/camvid-deep/curves.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main(out: str, paths: list[str]) -> None:
    fig, (ax_miou, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for path in sorted(paths):
        name = Path(path).name.split("-history")[0]
        h = pd.read_csv(path)
        scored = h.dropna(subset=["val_miou"])  # epochs without validation (val_every) have none
        ax_miou.plot(scored["epoch"], 100 * scored["val_miou"], marker="o", label=name)
        ax_loss.plot(h["epoch"], h["train_loss"], marker="o", label=name)
    ax_miou.set(xlabel="epoch", ylabel="val mIoU (%)", title="validation mIoU")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    for ax in (ax_miou, ax_loss):
        ax.grid(alpha=0.3)
    ax_miou.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
