"""Clothing Co-Parsing (CCP): the full set (``ccp``) and the shipped sample (``ccp-mini``).

``ccp`` reads the full set in place; ``ccp-mini`` is a small downscaled sample shipped
with segbench, the default dataset.

Yang, Luo, Lin, "Clothing Co-Parsing by Joint Image Segmentation and Labeling",
CVPR 2014. Licence: Apache-2.0. Source: https://github.com/bearpaw/clothing-co-parsing
(``python -m bench fetch ccp --root DIR`` downloads :data:`SOURCE_URL`; 1004 annotated photos).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.datasets.classes import load_classes_file
from bench.datasets.decoding import read_mat
from bench.datasets.file_split import FileDataset, PairPool
from bench.datasets.pairing import list_files, pair_files, read_id_list, split_ids
from bench.datasets.palettes import label_palette
from bench.datasets.types import DatasetError, DatasetInfo

CITATION = (
    'W. Yang, P. Luo, L. Lin, "Clothing Co-Parsing by Joint Image Segmentation and Labeling", '
    "CVPR 2014. Data: https://github.com/bearpaw/clothing-co-parsing, Apache-2.0 licence."
)
IGNORE_INDEX = 255
#: the archive ``python -m bench fetch ccp`` downloads (its clothing-co-parsing-master/ folder)
SOURCE_URL = "https://github.com/bearpaw/clothing-co-parsing/archive/refs/heads/master.zip"
#: no published checksum (GitHub builds the archive on request): checked by extracting it and
#: opening every split with this reader; ``bench fetch --sha256`` checks one you trust
SOURCE_SHA256: str | None = None
LICENCE = "Apache-2.0 (W. Yang, P. Luo, L. Lin); cite the CVPR 2014 paper"

#: where ccp-mini lives inside the package
MINI_DIR = Path(__file__).resolve().parent / "data" / "ccp_mini"


def read_label_list(path: Path) -> list[str]:
    """Class names from ``label_list.mat`` (key ``label_list``: a 1xK cell of strings)."""
    raw = read_mat(path, "label_list")
    try:
        cells = np.asarray(raw, dtype=object).ravel()
        names = []
        for c in cells:
            c = np.asarray(c).ravel()
            names.append(str(c[0]) if c.size else "")
    except Exception as e:
        raise DatasetError(f"{path}: 'label_list' is not a cell array of strings: {e}") from None
    if not names or any(not n for n in names):
        raise DatasetError(f"{path}: 'label_list' has empty class names")
    return names


def decode_ccp_mat(path: Path) -> np.ndarray:
    """A CCP pixel-level annotation: key ``groundtruth``, HxW integer class indices -> uint8."""
    gt = read_mat(path, "groundtruth")
    a = np.asarray(gt)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer) or a.size == 0:
        raise DatasetError(f"{path}: 'groundtruth' is {a.dtype} with shape {a.shape}, expected an HxW integer array")
    if a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise DatasetError(f"{path}: 'groundtruth' values {int(a.min())}..{int(a.max())} do not fit the classes")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


class CCPDataset(FileDataset):
    """Clothing Co-Parsing, pixel-level part (59 classes), read in place.

    Layout of ``root``::

        photos/NNNN.jpg                       RGB photos (any numbering)
        annotations/pixel-level/NNNN.mat      key 'groundtruth': uint8 HxW, 0..58
        label_list.mat                        key 'label_list': 1x59 cell of class names

    Only photos that have an annotation are used (the image-level-only photos of the
    original release have none); an annotation without a photo is an error. Class 0 is
    ``null`` (background); ``ignore_index`` is 255 and normally absent. CCP has no official
    colours: the palette is the VOC one (class 0 black).

    Options:
      ``seed=0`` and ``fractions=(0.7, 0.15, 0.15)``: train/val/test from a seeded shuffle
      of the annotated ids; or ``train_ids``/``val_ids``/``test_ids``: a list of ids or a
      text file with one id per line (then exactly the splits given exist).
      ``scale=1.0``: resize on load (INTER_AREA for photos, nearest for labels).
    """

    decode_label = staticmethod(decode_ccp_mat)

    def __init__(
        self,
        root: str | Path,
        seed: int = 0,
        fractions: Sequence[float] = (0.70, 0.15, 0.15),
        train_ids=None,
        val_ids=None,
        test_ids=None,
        scale: float = 1.0,
    ):
        super().__init__("ccp", root, scale)
        label_list = self.root / "label_list.mat"
        if not label_list.is_file():
            raise DatasetError(f"{label_list}: CCP class list not found (is {self.root} a CCP folder?)")
        names = read_label_list(label_list)
        self._info = DatasetInfo(
            name="ccp", class_names=tuple(names), palette=label_palette(len(names)),
            ignore_index=IGNORE_INDEX, citation=CITATION,
        )
        pairs = self._annotated_pairs()
        lists = {"train": train_ids, "val": val_ids, "test": test_ids}
        if any(v is not None for v in lists.values()):
            splits = self._listed_splits(lists, pairs)
        else:
            fr = list(fractions)
            if len(fr) != 3:
                raise DatasetError(f"{self.where}: fractions must be (train, val, test), got {fractions!r}")
            splits = split_ids(list(pairs), dict(zip(("train", "val", "test"), fr)), seed, self.where)
        self.pool = PairPool(self.where, pairs, splits)

    def _annotated_pairs(self) -> dict[str, tuple[Path, Path]]:
        """(photo, annotation) by id. Photos without annotation are expected (the image-level
        part of CCP); an annotation without a photo is an error."""
        annotations = self.root / "annotations" / "pixel-level"
        triples = pair_files(self.root / "photos", annotations, image_exts=(".jpg", ".jpeg", ".png"),
                             mask_exts=(".mat",), allow_unpaired=True)
        pairs = {i: (img, mask) for i, img, mask in triples}
        orphans = [m for i, m in list_files(annotations, (".mat",), what="annotations").items() if i not in pairs]
        if orphans:
            raise DatasetError(
                f"{orphans[0]}: annotation without a photo in {self.root / 'photos'}"
                + (f" ({len(orphans)} such files)" if len(orphans) > 1 else "")
            )
        return pairs

    def _listed_splits(self, lists: dict, pairs: dict) -> dict[str, list[str]]:
        """The splits given as id lists or id files (options ``<split>_ids``)."""
        splits = {}
        for name, spec in lists.items():
            if spec is None:
                continue
            ids = read_id_list(spec, f"ccp {name} ids")
            missing = [i for i in ids if i not in pairs]
            if missing:
                src = spec if isinstance(spec, (str, Path)) else f"option {name}_ids"
                raise DatasetError(f"{src}: {len(missing)} id(s) have no photo+annotation pair in {self.root}: "
                                   + ", ".join(missing[:5]))
            if not ids:
                raise DatasetError(f"ccp: option {name}_ids is empty")
            splits[name] = ids
        return splits


class CCPMiniDataset(FileDataset):
    """A small downscaled sample of CCP shipped inside segbench (the default dataset).

    Layout of ``bench/datasets/data/ccp_mini/``::

        images/NNNN.jpg     RGB photos, JPEG quality 90
        masks/NNNN.png      single-channel index PNGs, values 0..58
        classes.json        {"classes": [59 names], "ignore_index": 255}
        splits.json         {"train": [ids], "val": [ids]}
        LICENSE, README.md  Apache-2.0 licence; citation and how the sample was made

    Built by ``scripts/make_ccp_mini.py`` from CCP ids 0001-0800 only. Options:
    ``root`` (another folder in this layout; default: the shipped one), ``scale=1.0``.
    """

    builtin = True

    def __init__(self, root: str | Path | None = None, scale: float = 1.0):
        super().__init__("ccp-mini", root if root is not None else MINI_DIR, scale)
        classes_file = self.root / "classes.json"
        splits_file = self.root / "splits.json"
        for f in (classes_file, splits_file):
            if not f.is_file():
                raise DatasetError(f"{f}: not found (ccp-mini is incomplete; rebuild it with scripts/make_ccp_mini.py)")
        classes = load_classes_file(classes_file)
        try:
            splits = {str(k): [str(i) for i in v] for k, v in json.loads(splits_file.read_text()).items()}
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise DatasetError(f"{splits_file}: bad split file: {type(e).__name__}: {e}") from None
        pairs = {i: (self.root / "images" / f"{i}.jpg", self.root / "masks" / f"{i}.png")
                 for ids in splits.values() for i in ids}
        self.pool = PairPool(self.where, pairs, splits)
        self._info = DatasetInfo(
            name="ccp-mini", class_names=tuple(classes.names), palette=label_palette(len(classes.names)),
            ignore_index=classes.ignore_index, citation=CITATION + " ccp-mini: a downscaled sample made by segbench.",
        )
