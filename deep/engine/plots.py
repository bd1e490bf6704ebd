"""Figures of a training run: ``curves.png`` and ``progress.png``.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend
switch), written atomically by :func:`bench.files.write_atomic`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.datasets.types import DatasetInfo, Sample
from bench.files import write_atomic


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), fsync=False)


def plot_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike, title: str = "") -> None:
    """Training loss and validation mIoU per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    loss = [row["train_loss"] for row in history]
    val = [(row["epoch"], row["val_miou"]) for row in history if not math.isnan(row["val_miou"])]

    fig = Figure(figsize=(9, 3.4))
    ax_loss, ax_miou = fig.subplots(1, 2)
    ax_loss.plot(epochs, loss, marker="o", ms=3)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_loss.grid(alpha=0.3)
    if val:
        ax_miou.plot([e for e, _ in val], [m for _, m in val], marker="o", ms=3, color="tab:green")
        best = max(val, key=lambda em: em[1])
        ax_miou.axvline(best[0], color="grey", ls=":", lw=1)
        ax_miou.set_title(f"validation mIoU (best {best[1]:.3f} at epoch {best[0]})")
    else:
        ax_miou.set_title("validation mIoU (no validation split)")
    ax_miou.set(xlabel="epoch", ylabel="mIoU", ylim=(0, 1))
    ax_miou.grid(alpha=0.3)
    for ax in (ax_loss, ax_miou):
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, Path(path))


def plot_progress(
    samples: Sequence[Sample],
    snapshots: Mapping[int, Sequence[np.ndarray]],
    info: DatasetInfo,
    path: str | os.PathLike,
) -> None:
    """One row per image: the image, its ground truth, and the prediction at each
    snapshot epoch (first, middle, last), coloured with the dataset palette."""
    epochs = sorted(snapshots)
    rows = min(len(samples), *(len(p) for p in snapshots.values())) if snapshots else len(samples)
    cols = 2 + len(epochs)
    if rows == 0:
        return
    fig = Figure(figsize=(2.4 * cols, 2.0 * rows + 0.4))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for r in range(rows):
        panels = [(samples[r].image, "image"), (info.colorize(samples[r].label), "ground truth")]
        panels += [(info.colorize(snapshots[e][r]), f"epoch {e}") for e in epochs]
        for c, (picture, name) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(str(samples[r].id), fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))
