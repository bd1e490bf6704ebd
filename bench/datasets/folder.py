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

from pathlib import Path

import numpy as np

from bench.datasets.classes import load_classes_file
from bench.datasets.decoding import colour_mask_to_index, read_index_mask, read_rgb
from bench.datasets.file_split import FileDataset, PairPool, Triple
from bench.datasets.pairing import IMAGE_EXTS, pair_files
from bench.datasets.palettes import label_palette
from bench.datasets.types import DatasetError, DatasetInfo, unknown_split

CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json")
_SPLIT_ORDER = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


class FolderDataset(FileDataset):
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
        super().__init__("folder", root, scale)
        self.images_dir, self.masks_dir = self.root / "images", self.root / "masks"
        for d in (self.images_dir, self.masks_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder not found (a 'folder' dataset needs images/ and masks/)")
        subdirs = self._split_folders()
        self._split_dirs = {s: (self.images_dir / s, self.masks_dir / s) for s in subdirs}
        if not subdirs:
            self.pool = PairPool.held_out(pair_files(self.images_dir, self.masks_dir), val_fraction, test_fraction,
                                          seed, self.where)
        self._colours: tuple | None = None  # (class colours, ignore colours, ignore index) for colour masks
        found = [self.root / f for f in CLASS_FILES if (self.root / f).is_file()]
        if len(found) > 1:
            raise DatasetError(f"{self.root}: more than one class file ({', '.join(p.name for p in found)}); keep one")
        self.class_file: Path | None = found[0] if found else None
        if self.class_file is not None:
            spec = load_classes_file(self.class_file)
            names, ign = spec.names, spec.ignore_index
            if spec.masks == "color":
                self._colours = (spec.colors, spec.ignore_colors, ign)
            palette = spec.colors if spec.colors is not None else label_palette(len(names))
        else:
            ign = int(ignore_index) if ignore_index is not None else None
            num_classes = int(num_classes if num_classes is not None else self._scan_num_classes(ign))
            if num_classes < 1:
                raise DatasetError(f"{self.root}: num_classes={num_classes} must be >= 1")
            names = [f"class{k}" for k in range(num_classes)]
            palette = label_palette(num_classes)
        try:
            self._info = DatasetInfo(
                name="folder", class_names=tuple(names), palette=palette, ignore_index=ign,
                citation=f"User data in {self.root}.",
            )
        except ValueError as e:
            raise DatasetError(f"{self.class_file or self.root}: {e}") from None

    def _split_folders(self) -> list[str]:
        """Sub-folders of images/ (train, val, test first); an error when loose images sit beside them."""
        subdirs = sorted(
            (p.name for p in self.images_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda n: (_SPLIT_ORDER.get(n, 9), n),
        )
        loose = [p.name for p in self.images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if subdirs and loose:
            raise DatasetError(
                f"{self.images_dir}: has both split sub-folders ({', '.join(subdirs)}) and loose images "
                f"({', '.join(sorted(loose)[:3])}{' ...' if len(loose) > 3 else ''}); use one layout"
            )
        return subdirs

    def _scan_num_classes(self, ignore_index: int | None) -> int:
        """One more than the largest label value in all masks, the ignore index left out."""
        if self.pool is not None:
            masks = [m for _, m in self.pool.pairs.values()]
        else:
            masks = [m for s in self._split_dirs for _, _, m in pair_files(*self._split_dirs[s])]
        top = -1
        for p in masks:
            vals = np.unique(read_index_mask(p))
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

    def split_names(self) -> list[str]:
        return self.pool.names() if self.pool is not None else list(self._split_dirs)

    def triples(self, name: str) -> list[Triple]:
        if self.pool is not None:
            return self.pool.triples(name)
        if name not in self._split_dirs:
            raise unknown_split(self.where, name, self._split_dirs)
        return pair_files(*self._split_dirs[name])

    def decode_label(self, path: Path) -> np.ndarray:
        if self._colours is None:
            return read_index_mask(path)
        colors, ignore_colors, ignore_index = self._colours
        return colour_mask_to_index(read_rgb(path), colors, path, ignore_colors, ignore_index)
