"""The qualitative predictions grid: rows of images, columns image / ground truth / each method."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets.palettes import colorize
from bench.report.aggregate import Section
from bench.report.plots import figure, save_figure

#: rows of the predictions grid
GRID_MAX_IMAGES = 4
GRID_PANEL_IN = 2.4
#: classes named in the grid's legend at most
LEGEND_MAX = 40
#: characters a column title holds in one line at its small font before it wraps (one panel wide)
TITLE_WRAP = 40


@dataclass
class GridInfo:
    """What the predictions grid shows: ``rows`` images x ``columns`` panels."""

    path: Path | None
    image_ids: list[str]
    columns: list[str]  # "image", "ground truth", then method labels
    skipped: list[str]  # methods left out, with why

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.image_ids), len(self.columns)


@dataclass
class _Panels:
    """The arrays of a grid (None where a file is missing) and how to colour them."""

    images: dict[str, np.ndarray | None]
    gts: dict[str, np.ndarray | None]
    preds: dict[tuple[str, str], np.ndarray | None]
    names: list[str]
    palette: np.ndarray
    ignore: int | None

    def label_maps(self) -> list[np.ndarray]:
        return [a for a in list(self.gts.values()) + list(self.preds.values()) if a is not None and a.ndim == 2]


def read_png(path: Path) -> np.ndarray | None:
    """A saved sample image (``*_image.png``, RGB) or label map (any other PNG) through the
    datasets' readers; None when it is missing or unreadable (the panel then says so)."""
    from bench.datasets.decoding import read_index_mask, read_rgb
    from bench.datasets.types import DatasetError

    try:
        return read_rgb(path) if path.name.endswith("_image.png") else read_index_mask(path, formats=("PNG",))
    except DatasetError:
        return None


def load_palette(sample_dir: Path) -> tuple[list[str], np.ndarray | None, int | None, str | None]:
    """Class names, palette and ignore index of ``palette.json``; or a warning why not."""
    p = sample_dir / "palette.json"
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
        names = [str(c) for c in meta.get("class_names") or []]
        pal = np.asarray(meta["palette"], dtype=np.uint8).reshape(-1, 3)
        ign = meta.get("ignore_index")
        return names, pal, (int(ign) if ign is not None else None), None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [], None, None, f"{p} unreadable ({type(e).__name__}); a default palette is used"


def default_palette(n: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return (np.asarray(cmap(np.arange(max(n, 1)) % 20))[:, :3] * 255).astype(np.uint8)


def _chosen_predictions(s: Section, out_dir: Path) -> tuple[list[tuple[str, dict[str, Path]]], list[str]]:
    """Per ranked group, the saved predictions of its lowest seed that has them; the groups left out."""
    methods: list[tuple[str, dict[str, Path]]] = []
    skipped: list[str] = []
    for g in s.ranked:
        chosen: dict[str, Path] = {}
        listed = False
        for r in g.ok:  # lowest seed first
            listed = listed or bool(r.predictions)
            found = {Path(p).stem: out_dir / p for p in r.predictions if (out_dir / p).is_file()}
            if found:
                chosen = found
                break
        if chosen:
            methods.append((g.label, chosen))
        else:
            why = "prediction PNGs missing" if listed else "no predictions saved"
            skipped.append(f"{g.label} ({why})")
    return methods, skipped


def _load_panels(s: Section, sample_dir: Path, ids: list[str], methods: list[tuple[str, dict[str, Path]]]) -> _Panels:
    names, palette, ignore, warn = load_palette(sample_dir)
    if warn:
        s.notes.append(f"Predictions grid: {warn}.")
    panels = _Panels(images={i: read_png(sample_dir / f"{i}_image.png") for i in ids},
                     gts={i: read_png(sample_dir / f"{i}_gt.png") for i in ids},
                     preds={(m, i): (read_png(p[i]) if i in p else None) for m, p in methods for i in ids},
                     names=names, palette=palette, ignore=ignore)
    if palette is None:
        top = max([int(a.max()) for a in panels.label_maps()] + [0])
        panels.palette = default_palette(top + 1)
        panels.ignore = 255 if top >= 255 else None
    missing_img = [i for i in ids if panels.images[i] is None]
    if missing_img:
        s.notes.append(f"Predictions grid: sample image/GT missing for {', '.join(missing_img)}.")
    return panels


def show_panel(ax, arr: np.ndarray | None, text: str = "missing") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if arr is None:
        ax.set_facecolor("0.85")
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.3")
    else:
        ax.imshow(arr, interpolation="nearest")


def _draw(s: Section, info: GridInfo, methods: list[str], panels: _Panels, path: Path) -> None:
    ids, (n_rows, n_cols) = info.image_ids, info.shape
    aspect = next((a.shape[0] / a.shape[1] for a in list(panels.images.values()) + list(panels.gts.values())
                   if a is not None), 0.75)
    pw = GRID_PANEL_IN
    ph = pw * aspect
    present = {int(v) for a in panels.label_maps() for v in np.unique(a)}  # a legend of the classes drawn
    legend_ids = [c for c in sorted(present) if c < len(panels.palette) and c != panels.ignore][:LEGEND_MAX]
    leg_cols = max(1, min(6, n_cols * 2))
    leg_h = (math.ceil(len(legend_ids) / leg_cols) * 0.22 + 0.25) if legend_ids else 0.1
    # a long title (a label with its settings) in a smaller font, wrapped to the panel's width
    titles = [(t, 9) if len(t) < 28 else (textwrap.fill(t, TITLE_WRAP), 7) for t in info.columns]
    title_h = 0.42 + 0.13 * max(t.count("\n") + 1 for t, _ in titles)  # suptitle and column titles
    fig_h = n_rows * (ph + 0.15) + title_h + leg_h
    fig = figure(n_cols * pw, fig_h)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, wspace=0.04, hspace=0.08,
                        top=1 - title_h / fig_h, bottom=leg_h / fig_h)
    paint = lambda a: None if a is None else colorize(a, panels.palette, panels.ignore)  # noqa: E731
    for r, i in enumerate(ids):
        img = panels.images[i]
        if img is not None and img.ndim == 2:  # a grey image
            img = np.repeat(img.astype(np.uint8)[..., None], 3, axis=2)
        show_panel(axes[r][0], img, "no image")
        show_panel(axes[r][1], paint(panels.gts[i]), "no ground truth")
        for c, m in enumerate(methods, 2):
            show_panel(axes[r][c], paint(panels.preds[(m, i)]))
        axes[r][0].set_ylabel(i, fontsize=8)
    for c, (title, size) in enumerate(titles):
        axes[0][c].set_title(title, fontsize=size)
    fig.suptitle(f"{s.title}: predictions (ignore = black)", fontsize=11)
    if legend_ids:
        from matplotlib.patches import Patch

        names = panels.names
        handles = [Patch(facecolor=panels.palette[c] / 255.0, edgecolor="black", linewidth=0.3,
                         label=names[c] if c < len(names) else f"class {c}") for c in legend_ids]
        fig.legend(handles=handles, loc="lower center", ncol=leg_cols, fontsize=7.5, frameon=False)
    save_figure(fig, path, metadata={"Description": f"segbench predictions grid: {n_rows} rows x {n_cols} columns"})


def plot_predictions_grid(s: Section, out_dir: Path, path: Path, max_images: int = GRID_MAX_IMAGES) -> GridInfo:
    """Rows: the images with saved predictions of the most methods (first saved first); columns:
    image, GT, each method."""
    out_dir = Path(out_dir)
    methods, skipped = _chosen_predictions(s, out_dir)
    saved = [i for _, preds in methods for i in preds]
    ids = sorted(dict.fromkeys(saved), key=lambda i: -saved.count(i))[:max_images]  # a stable sort
    info = GridInfo(None, ids, ["image", "ground truth"] + [m for m, _ in methods], skipped)
    if not ids:
        s.notes.append("Predictions grid skipped: no saved prediction PNGs found.")
        return info
    for sk in skipped:
        s.notes.append(f"Predictions grid: {sk} left out.")
    panels = _load_panels(s, out_dir / "samples" / s.dataset / s.split, ids, methods)
    _draw(s, info, [m for m, _ in methods], panels, path)
    info.path = path
    return info
