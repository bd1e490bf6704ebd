"""BSDS500: natural images with several human segmentations each (boundary benchmark).

Source: Berkeley's BSR_bsds500.tgz (``python -m bench fetch bsds500 --root DIR`` downloads
:data:`SOURCE_URL` and keeps its BSR/BSDS500/data/ folder): train 200, val 100, test 200
images. Licence: research use; cite Arbelaez et al. 2011.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.decoding import read_mat
from bench.datasets.file_split import FileDataset, FileSplit, Triple
from bench.datasets.pairing import pair_files
from bench.datasets.types import DatasetError, DatasetInfo, unknown_split

CLASS_NAMES = ("non-boundary", "boundary")
PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
SPLITS = ("train", "val", "test")
CITATION = (
    'P. Arbelaez, M. Maire, C. Fowlkes, J. Malik, "Contour Detection and Hierarchical Image '
    'Segmentation", IEEE TPAMI 33(5), 2011 (BSDS500). Research use; cite the paper.'
)

#: the archive ``python -m bench fetch bsds500`` downloads (its BSR/BSDS500/data/ folder); project page:
#: https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html
SOURCE_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
#: no published checksum: checked by extracting it and opening every split with this reader;
#: ``bench fetch --sha256`` checks one you trust
SOURCE_SHA256: str | None = None
LICENCE = "research use (Berkeley Computer Vision Group); cite Arbelaez, Maire, Fowlkes, Malik, TPAMI 2011"


def read_bsds_gt(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Parse a BSDS ``groundTruth`` .mat: (segmentations int32, boundaries bool), one per annotator."""
    gt = read_mat(path, "groundTruth")
    segs: list[np.ndarray] = []
    bnds: list[np.ndarray] = []
    try:
        cells = np.asarray(gt, dtype=object).ravel()
        for c in cells:
            rec = c
            while isinstance(rec, np.ndarray) and rec.dtype.names is None and rec.dtype == object and rec.size == 1:
                rec = rec.ravel()[0]
            rec = np.asarray(rec).ravel()[0] if isinstance(rec, np.ndarray) and rec.shape else rec
            seg = np.asarray(_field(rec, "Segmentation"))
            bnd = np.asarray(_field(rec, "Boundaries"))
            segs.append(seg.astype(np.int32))
            bnds.append(bnd.astype(bool))
    except Exception as e:
        raise DatasetError(f"{path}: 'groundTruth' is not a cell array of Segmentation/Boundaries structs: {e}") from None
    if not segs:
        raise DatasetError(f"{path}: 'groundTruth' has no annotator")
    shape = segs[0].shape
    for j, (s, b) in enumerate(zip(segs, bnds)):
        if s.ndim != 2 or s.shape != shape or b.shape != shape:
            raise DatasetError(
                f"{path}: annotator {j} has Segmentation {s.shape} / Boundaries {b.shape}; expected {shape} for all"
            )
    return segs, bnds


def _field(rec, name: str):
    try:
        v = rec[name]
    except (KeyError, ValueError, IndexError, TypeError):
        raise DatasetError(f"no field '{name}'") from None
    while isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        v = v.ravel()[0]
    return v


class BSDSSplit(FileSplit):
    """A BSDS split; ``label`` is 1 where ANY annotator marks a boundary, else 0.

    :meth:`boundaries` and :meth:`segmentations` give every annotator's maps for the
    boundary and region benchmarks.
    """

    def __init__(self, info: DatasetInfo, name: str, triples: list[Triple]):
        self._cache: tuple[Path, list, list] | None = None
        super().__init__(info, name, triples, self._decode)

    def _gt(self, mask_path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if self._cache is None or self._cache[0] != mask_path:
            segs, bnds = read_bsds_gt(mask_path)
            self._cache = (mask_path, segs, bnds)
        return self._cache[1], self._cache[2]

    def _decode(self, mask_path: Path) -> np.ndarray:
        _, bnds = self._gt(mask_path)
        return np.logical_or.reduce(bnds).astype(np.uint8)

    def boundaries(self, index: int) -> list[np.ndarray]:
        """All annotators' boundary maps of sample ``index`` (HxW bool each)."""
        return [b.copy() for b in self._gt(self.pairs[index % len(self)][1])[1]]

    def segmentations(self, index: int) -> list[np.ndarray]:
        """All annotators' region maps of sample ``index`` (HxW int32 region ids, from 1)."""
        return [s.copy() for s in self._gt(self.pairs[index % len(self)][1])[0]]


class BSDS500Dataset(FileDataset):
    """BSDS500 natural images, boundaries of all human annotators (2 classes: boundary or not).

    Layout of ``root``::

        images/{train,val,test}/ID.jpg        RGB, 481x321 or 321x481
        groundTruth/{train,val,test}/ID.mat   key 'groundTruth': 1xN cell of structs with
                                              'Segmentation' (uint16) and 'Boundaries' (uint8)

    A split exists when both of its folders exist. For the common interface the label is
    binary (1 = boundary by any annotator); splits are :class:`BSDSSplit` with
    ``boundaries(i)`` and ``segmentations(i)`` for all annotators. No options.
    """

    _info = DatasetInfo(name="bsds500", class_names=CLASS_NAMES, palette=PALETTE, ignore_index=255, citation=CITATION)

    def __init__(self, root: str | Path):
        super().__init__("bsds500", root)
        if not self.split_names():
            raise DatasetError(f"{self.root}: no BSDS500 split (expected images/<split>/ and groundTruth/<split>/)")

    def split_names(self) -> list[str]:
        return [s for s in SPLITS if (self.root / "images" / s).is_dir() and (self.root / "groundTruth" / s).is_dir()]

    def triples(self, name: str) -> list[Triple]:
        if name not in SPLITS:
            raise unknown_split(self.where, name, SPLITS)
        return pair_files(self.root / "images" / name, self.root / "groundTruth" / name,
                          image_exts=(".jpg", ".jpeg", ".png"), mask_exts=(".mat",))

    def split(self, name: str) -> BSDSSplit:
        return BSDSSplit(self._info, name, self.triples(name))
