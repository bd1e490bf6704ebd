"""DeepGlobe Land Cover Classification (satellite images, 6 classes + unknown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.decoding import colour_mask_to_index, read_rgb
from bench.datasets.file_split import FileDataset, PairPool, Triple
from bench.datasets.pairing import pair_files
from bench.datasets.types import DatasetError, DatasetInfo, unknown_split

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
#: how images and masks of one folder pair up: ``ID_sat.jpg`` with ``ID_mask.png``
PAIRING = dict(image_exts=(".jpg", ".jpeg", ".png", ".tif", ".tiff"), mask_exts=(".png",),
               image_suffix="_sat", mask_suffix="_mask")


def decode_landcover_mask(path: Path) -> np.ndarray:
    """Colour mask -> class index. Each channel is thresholded at 128 first (so slightly-off
    colours from lossy re-encoding snap to 0/255), then looked up; black -> 255 (ignored);
    red (255, 0, 0), the one 0/255 colour that is not a class, is an error."""
    rgb = read_rgb(path)
    snapped = np.where(rgb >= 128, np.uint8(255), np.uint8(0))
    return colour_mask_to_index(snapped, PALETTE, path, ignore_colours=[UNKNOWN_COLOUR], ignore_index=IGNORE_INDEX)


class LandCoverDataset(FileDataset):
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

    decode_label = staticmethod(decode_landcover_mask)
    _info = DatasetInfo(
        name="landcover", class_names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX, citation=CITATION
    )

    def __init__(
        self, root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0,
        scale: float = 1.0,
    ):
        super().__init__("landcover", root, scale)
        folders = {SPLIT_FOLDERS[p.name]: p for p in sorted(self.root.iterdir()) if p.is_dir() and p.name in SPLIT_FOLDERS}
        self._dirs: dict[str, Path] = {}
        self._unlabelled: dict[str, Path] = {}
        if folders:
            for split, d in folders.items():
                labelled = any(p.name.endswith(("_mask.png", "_mask.PNG")) for p in d.iterdir())
                (self._dirs if labelled else self._unlabelled)[split] = d
            if not self._dirs:
                raise DatasetError(f"{self.root}: no split folder holds *_mask.png masks")
        else:
            triples = pair_files(self.root, self.root, **PAIRING)
            self.pool = PairPool.held_out(triples, val_fraction, test_fraction, seed, self.where)
    def split_names(self) -> list[str]:
        return self.pool.names() if self.pool is not None else [s for s in ("train", "val", "test") if s in self._dirs]

    def triples(self, name: str) -> list[Triple]:
        if self.pool is not None:
            return self.pool.triples(name)
        if name in self._unlabelled:
            raise DatasetError(f"{self._unlabelled[name]}: split '{name}' has images but no *_mask.png masks")
        if name not in self._dirs:
            raise unknown_split(self.where, name, self.split_names())
        return pair_files(self._dirs[name], self._dirs[name], **PAIRING)
