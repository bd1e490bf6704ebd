"""DeepGlobe Land Cover Classification (satellite images, 6 classes + unknown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets import register_dataset
from bench.datasets.types import Dataset, DatasetError, DatasetInfo
from bench.datasets.io import (
    ScaledFileSplit,
    check_scale,
    colour_mask_to_index,
    pair_files,
    read_rgb,
    split_ids,
)

CLASS_NAMES = ("urban_land", "agriculture_land", "rangeland", "forest_land", "water", "barren_land")
PALETTE = np.array(
    [[0, 255, 255], [255, 255, 0], [255, 0, 255], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8
)
UNKNOWN_COLOUR = (0, 0, 0)
IGNORE_INDEX = 255
CITATION = (
    'I. Demir et al., "DeepGlobe 2018: A Challenge to Parse the Earth through Satellite Images", '
    "CVPR Workshops 2018 (Land Cover Classification track). Licence: see the DeepGlobe challenge terms."
)
#: folder name -> split name
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def decode_landcover_mask(path: Path) -> np.ndarray:
    """Colour mask -> class index. Each channel is thresholded at 128 first (so slightly-off
    colours from lossy re-encoding snap to 0/255), then looked up; black -> 255 (ignored);
    red (255, 0, 0), the one 0/255 colour that is not a class, is an error."""
    rgb = read_rgb(path)
    snapped = np.where(rgb >= 128, np.uint8(255), np.uint8(0))
    return colour_mask_to_index(snapped, PALETTE, path, ignore_colours=[UNKNOWN_COLOUR], ignore_index=IGNORE_INDEX)


@register_dataset("landcover")
class LandCoverDataset(Dataset):
    """DeepGlobe Land Cover satellite images, 6 classes from colour masks (unknown ignored).

    Files: ``ID_sat.jpg`` satellite images + ``ID_mask.png`` colour masks.

    Layout of ``root``: either split folders ``train/``, ``val/`` (or ``valid/``) and
    ``test/``, each holding ``ID_sat.jpg`` + ``ID_mask.png`` pairs side by side, or all pairs
    directly in ``root`` (then ``val``/``test`` come from a seeded shuffle: options
    ``val_fraction=0.15``, ``test_fraction=0.15``, ``seed=0``). A split folder with images
    but no mask at all (DeepGlobe's unlabelled ``valid/`` and ``test/``) is not a split.

    Mask colours: urban (0,255,255), agriculture (255,255,0), rangeland (255,0,255), forest
    (0,255,0), water (0,0,255), barren (255,255,255); unknown (0,0,0) is ignored (255).
    Each mask channel is thresholded at 128 before the lookup (the released masks contain
    slightly-off colours). Option ``scale=1.0`` resizes on load (the originals are
    2448x2448).
    """

    def __init__(
        self, root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
        scale: float = 1.0,
    ):
        self.root = Path(root)
        self.scale = check_scale(scale, f"landcover {self.root}")
        self._info = DatasetInfo(
            name="landcover", class_names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX, citation=CITATION
        )
        folders = {SPLIT_FOLDERS[p.name]: p for p in sorted(self.root.iterdir()) if p.is_dir() and p.name in SPLIT_FOLDERS}
        self._dirs: dict[str, Path] = {}
        self._flat: dict[str, tuple[Path, Path]] | None = None
        if folders:
            for split, d in folders.items():
                if any(p.name.endswith(("_mask.png", "_mask.PNG")) for p in d.iterdir()):
                    self._dirs[split] = d
            self._unlabelled = {s: d for s, d in folders.items() if s not in self._dirs}
            if not self._dirs:
                raise DatasetError(f"{self.root}: no split folder holds *_mask.png masks")
        else:
            pairs = pair_files(self.root, self.root, image_exts=IMAGE_EXTS, mask_exts=(".png",), image_suffix="_sat", mask_suffix="_mask")
            self._flat = {i: (a, b) for i, a, b in pairs}
            fr = {"train": 1.0 - val_fraction - test_fraction, "val": float(val_fraction), "test": float(test_fraction)}
            if fr["train"] <= 0 or fr["val"] < 0 or fr["test"] < 0:
                raise DatasetError(f"{self.root}: val_fraction + test_fraction must be below 1")
            self._ids = split_ids(list(self._flat), fr, seed, f"landcover {self.root}")

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def split_names(self) -> list[str]:
        return list(self._ids) if self._flat is not None else [s for s in ("train", "val", "test") if s in self._dirs]

    def split(self, name: str) -> ScaledFileSplit:
        if self._flat is not None:
            if name not in self._ids:
                raise DatasetError(f"{self.root}: landcover has no split '{name}' (splits: {', '.join(self._ids)})")
            ids = self._ids[name]
            pairs = [self._flat[i] for i in ids]
        else:
            if name not in self._dirs:
                if name in self._unlabelled:
                    raise DatasetError(f"{self._unlabelled[name]}: split '{name}' has images but no *_mask.png masks")
                raise DatasetError(f"{self.root / name}: landcover split folder not found")
            d = self._dirs[name]
            triples = pair_files(d, d, image_exts=IMAGE_EXTS, mask_exts=(".png",), image_suffix="_sat", mask_suffix="_mask")
            ids = [i for i, _, _ in triples]
            pairs = [(a, b) for _, a, b in triples]
        return ScaledFileSplit(self._info, name, pairs, decode_landcover_mask, ids=ids, scale=self.scale)

