"""ISBI 2012 EM segmentation challenge: neuronal membranes in electron microscopy.

Source: the challenge's 30 training slices (train-volume.tif and train-labels.tif of
http://brainiac2.mit.edu/isbi_challenge/) as PNGs in the public U-Net mirror
https://github.com/zhixuhao/unet (data/membrane/train/{image,label}/; ``python -m bench fetch
isbi2012 --root DIR`` downloads :data:`SOURCE_URL`). Licence: research use, cite the challenge
paper and Cardona et al. 2010; the mirror's repository is MIT-licensed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.decoding import read_index_mask
from bench.datasets.file_split import FileDataset, PairPool
from bench.datasets.pairing import pair_files
from bench.datasets.types import DatasetError, DatasetInfo

CLASS_NAMES = ("membrane", "interior")
PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
CITATION = (
    'I. Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms for '
    'connectomics", Frontiers in Neuroanatomy 9, 2015 (ISBI 2012 challenge); data of A. Cardona et al., '
    "PLoS Biol 2010. Used in O. Ronneberger, P. Fischer, T. Brox, \"U-Net\", MICCAI 2015. Research use."
)

#: the archive ``python -m bench fetch isbi2012`` downloads (its unet-master/data/membrane/train/ folder)
SOURCE_URL = "https://github.com/zhixuhao/unet/archive/refs/heads/master.tar.gz"
#: no published checksum (GitHub builds the archive on request): checked by extracting it and
#: opening every split with this reader; ``bench fetch --sha256`` checks one you trust
SOURCE_SHA256: str | None = None
LICENCE = ("research use; cite Arganda-Carreras et al. 2015 (ISBI 2012 challenge) and Cardona et al. 2010; "
           "mirror: github.com/zhixuhao/unet (MIT)")


def decode_isbi_label(path: Path) -> np.ndarray:
    """Pixel 0 -> class 0 (membrane), 255 -> class 1 (interior); any other value is an error."""
    m = read_index_mask(path)
    bad = (m != 0) & (m != 255)
    if bad.any():
        vals, counts = np.unique(m[bad], return_counts=True)
        shown = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(vals[:10], counts[:10]))
        raise DatasetError(f"{path}: ISBI labels must be 0 (membrane) or 255 (interior); found {shown}")
    return (m == 255).astype(np.uint8)


class ISBI2012Dataset(FileDataset):
    """ISBI 2012 EM slices of neuronal tissue, 2 classes: membrane and cell interior.

    Layout of ``root``::

        image/N.png     grayscale EM slice (512x512), returned as 3 equal RGB channels
        label/N.png     0 = membrane (class 0), 255 = cell interior (class 1)

    Ids sort numerically (2 before 10). ``train``/``val`` (and ``test`` if
    ``test_fraction`` > 0) come from a seeded shuffle: options ``val_fraction=0.25``,
    ``test_fraction=0.0``, ``seed=0``; ``scale=1.0`` resizes on load.
    """

    decode_label = staticmethod(decode_isbi_label)
    _info = DatasetInfo(name="isbi2012", class_names=CLASS_NAMES, palette=PALETTE, ignore_index=255, citation=CITATION)

    def __init__(
        self, root: str | Path, val_fraction: float = 0.25, test_fraction: float = 0.0, seed: int = 0,
        scale: float = 1.0,
    ):
        super().__init__("isbi2012", root, scale)
        triples = pair_files(self.root / "image", self.root / "label", mask_exts=(".png", ".tif", ".tiff"))
        self.pool = PairPool.held_out(triples, val_fraction, test_fraction, seed, self.where)
