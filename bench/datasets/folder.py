"""``folder``: any dataset laid out as images + masks folders.

Layout of ``root`` -- either with split sub-folders::

    images/train/NAME.jpg   masks/train/NAME.png
    images/val/NAME.jpg     masks/val/NAME.png
    images/<split>/...      masks/<split>/...      (any split names)
    classes.yaml            optional, see below

or flat, one pool::

    images/NAME.jpg         masks/NAME.png
    classes.yaml            optional

Images and masks are matched by file stem (any image extension; masks must be lossless:
PNG, BMP, TIFF or PGM). In the flat layout the splits are drawn from the pool by a seeded
shuffle: ``train`` gets what is left after ``val`` (``val_fraction``, default 0.2) and
``test`` (``test_fraction``, default 0, i.e. no test split); the same ``seed`` (default 0)
and files always give the same splits.

**Masks.** Without a class file, masks are single-channel index PNGs (one class index a
pixel); the number of classes is the option ``num_classes`` or, when not given, one more
than the largest value found in all masks (a scan of every mask at start-up, ignoring
``ignore_index``, option, default 255). Classes are then named ``class0``, ``class1`` ...

**Class file** ``classes.yaml`` (or ``classes.yml`` / ``classes.json``, same content; only
one may exist)::

    classes:                      # in index order: entry k is class k
      - {name: road, color: [128, 64, 128]}
      - {name: car,  color: [64, 0, 128]}
    ignore_index: 255             # label of ignored pixels (default 255; null for none)
    ignore_colors: [[0, 0, 0]]    # mask colours mapped to ignore_index (optional)
    masks: color                  # "color" (default when classes have colours) or "index"

With colours, masks are RGB colour PNGs mapped through the colours (exact match; an
unknown colour is an error naming the file and the colour). With ``masks: index`` (or
classes given as plain names, ``classes: [road, car]``) masks stay index PNGs and the
colours, if any, are only the display palette.

Options: ``val_fraction=0.2``, ``test_fraction=0.0``, ``seed=0`` (flat layout only),
``num_classes=None``, ``ignore_index=255`` (no class file only), ``scale=1.0`` (resize on
load: INTER_AREA for images, nearest for labels).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from bench.datasets import register_dataset
from bench.datasets.types import Dataset, DatasetError, DatasetInfo
from bench.datasets.io import (
    IMAGE_EXTS,
    ScaledFileSplit,
    check_scale,
    colour_mask_to_index,
    label_palette,
    load_classes_file,
    pair_files,
    read_index_mask,
    read_rgb,
    split_ids,
)

CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json")
_SPLIT_ORDER = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


def decode_colour_mask(path: Path, colors: np.ndarray, ignore_colors, ignore_index) -> np.ndarray:
    return colour_mask_to_index(read_rgb(path), colors, path, ignore_colors, ignore_index)


@register_dataset("folder")
class FolderDataset(Dataset):
    """Images + masks folders, with or without split sub-folders (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        seed: int = 0,
        num_classes: int | None = None,
        ignore_index: int | None = 255,
        scale: float = 1.0,
    ):
        self.root = Path(root)
        self.scale = check_scale(scale, f"folder {self.root}")
        self.images_dir, self.masks_dir = self.root / "images", self.root / "masks"
        for d in (self.images_dir, self.masks_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder not found (a 'folder' dataset needs images/ and masks/)")
        subdirs = sorted(
            (p.name for p in self.images_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda n: (_SPLIT_ORDER.get(n, 9), n),
        )
        self.layout = "splits" if subdirs else "flat"
        if subdirs:
            loose = [p.name for p in self.images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
            if loose:
                raise DatasetError(
                    f"{self.images_dir}: has both split sub-folders ({', '.join(subdirs)}) and loose images "
                    f"({', '.join(sorted(loose)[:3])}{' ...' if len(loose) > 3 else ''}); use one layout"
                )
        if self.layout == "splits":
            self._split_dirs = {s: (self.images_dir / s, self.masks_dir / s) for s in subdirs}
            self._flat = None
        else:
            pairs = pair_files(self.images_dir, self.masks_dir)
            self._flat = {i: (a, b) for i, a, b in pairs}
            fr = {"train": 1.0 - float(val_fraction) - float(test_fraction), "val": float(val_fraction), "test": float(test_fraction)}
            if not 0 <= fr["val"] < 1 or not 0 <= fr["test"] < 1 or fr["train"] <= 0:
                raise DatasetError(
                    f"{self.root}: val_fraction={val_fraction} and test_fraction={test_fraction} must leave a train split"
                )
            self._split_ids = split_ids(list(self._flat), fr, seed, f"folder {self.root}")

        found = [self.root / f for f in CLASS_FILES if (self.root / f).is_file()]
        if len(found) > 1:
            raise DatasetError(f"{self.root}: more than one class file ({', '.join(p.name for p in found)}); keep one")
        if found:
            spec = load_classes_file(found[0])
            self.class_file: Path | None = found[0]
            names, colors, ign = spec["names"], spec["colors"], spec["ignore_index"]
            if spec["masks"] == "color":
                self._decode = partial(
                    decode_colour_mask, colors=colors, ignore_colors=spec["ignore_colors"], ignore_index=ign
                )
            else:
                self._decode = read_index_mask
            palette = colors if colors is not None else label_palette(len(names))
        else:
            self.class_file = None
            if ignore_index is not None:
                ignore_index = int(ignore_index)
            if num_classes is None:
                num_classes = self._scan_num_classes(ignore_index)
            num_classes = int(num_classes)
            if num_classes < 1:
                raise DatasetError(f"{self.root}: num_classes={num_classes} must be >= 1")
            names = [f"class{k}" for k in range(num_classes)]
            ign = ignore_index
            palette = label_palette(num_classes)
            self._decode = read_index_mask
        try:
            self._info = DatasetInfo(
                name="folder", class_names=tuple(names), palette=palette, ignore_index=ign,
                citation=f"User data in {self.root}.",
            )
        except ValueError as e:
            raise DatasetError(f"{self.class_file or self.root}: {e}") from None

    def _all_mask_paths(self) -> list[Path]:
        if self._flat is not None:
            return [b for _, b in self._flat.values()]
        out = []
        for s in self._split_dirs:
            out += [b for _, _, b in pair_files(*self._split_dirs[s])]
        return out

    def _scan_num_classes(self, ignore_index: int | None) -> int:
        top = -1
        for p in self._all_mask_paths():
            m = read_index_mask(p)
            vals = np.unique(m)
            if ignore_index is not None:
                vals = vals[vals != ignore_index]
            if vals.size:
                if vals[0] < 0:
                    raise DatasetError(f"{p}: negative label value {int(vals[0])}")
                top = max(top, int(vals[-1]))
                if ignore_index is not None and top > ignore_index:
                    # the class count would include the ignore index: name the file, not the folder
                    raise DatasetError(
                        f"{p}: label value {top} is above the ignore index {ignore_index}, so the number of "
                        "classes cannot be taken from the masks; give the options num_classes and "
                        "ignore_index, or a class file"
                    )
        if top < 0:
            raise DatasetError(f"{self.masks_dir}: every mask is entirely ignore_index={ignore_index}")
        return top + 1

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def split_names(self) -> list[str]:
        if self._flat is not None:
            return list(self._split_ids)
        return list(self._split_dirs)

    def split(self, name: str) -> ScaledFileSplit:
        if name not in self.split_names():
            where = self.images_dir / name if self._flat is None else self.root
            raise DatasetError(f"{where}: folder dataset has no split '{name}' (splits: {', '.join(self.split_names())})")
        if self._flat is not None:
            ids = self._split_ids[name]
            pairs = [self._flat[i] for i in ids]
        else:
            img_dir, mask_dir = self._split_dirs[name]
            if not mask_dir.is_dir():
                raise DatasetError(f"{mask_dir}: mask folder for split '{name}' not found")
            triples = pair_files(img_dir, mask_dir)
            ids = [i for i, _, _ in triples]
            pairs = [(a, b) for _, a, b in triples]
        return ScaledFileSplit(self._info, name, pairs, self._decode, ids=ids, scale=self.scale)
