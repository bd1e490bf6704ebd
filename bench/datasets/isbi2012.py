"""ISBI 2012 EM segmentation challenge: neuronal membranes in electron microscopy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets import register_dataset
from bench.datasets.types import Dataset, DatasetError, DatasetInfo
from bench.datasets.io import ScaledFileSplit, check_scale, pair_files, read_index_mask, split_ids

CLASS_NAMES = ("membrane", "interior")
PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
CITATION = (
    'I. Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms for '
    'connectomics", Frontiers in Neuroanatomy 9, 2015 (ISBI 2012 challenge); data of A. Cardona et al., '
    "PLoS Biol 2010. Used in O. Ronneberger, P. Fischer, T. Brox, \"U-Net\", MICCAI 2015. Research use."
)


def decode_isbi_label(path: Path) -> np.ndarray:
    """Pixel 0 -> class 0 (membrane), 255 -> class 1 (interior); any other value is an error."""
    m = read_index_mask(path)
    bad = (m != 0) & (m != 255)
    if bad.any():
        vals, counts = np.unique(m[bad], return_counts=True)
        shown = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(vals[:10], counts[:10]))
        raise DatasetError(f"{path}: ISBI labels must be 0 (membrane) or 255 (interior); found {shown}")
    return (m == 255).astype(np.uint8)


@register_dataset("isbi2012")
class ISBI2012Dataset(Dataset):
    """ISBI 2012 EM slices of neuronal tissue, 2 classes: membrane and cell interior.

    Layout of ``root``::

        image/N.png     grayscale EM slice (512x512), returned as 3 equal RGB channels
        label/N.png     0 = membrane (class 0), 255 = cell interior (class 1)

    Ids sort numerically (2 before 10). ``train``/``val`` (and ``test`` if
    ``test_fraction`` > 0) come from a seeded shuffle: options ``val_fraction=0.25``,
    ``test_fraction=0.0``, ``seed=0``; ``scale=1.0`` resizes on load.
    """

    def __init__(
        self, root: str | Path, val_fraction: float = 0.25, test_fraction: float = 0.0, seed: int = 0,
        scale: float = 1.0,
    ):
        self.root = Path(root)
        self.scale = check_scale(scale, f"isbi2012 {self.root}")
        self._info = DatasetInfo(
            name="isbi2012", class_names=CLASS_NAMES, palette=PALETTE, ignore_index=255, citation=CITATION
        )
        triples = pair_files(self.root / "image", self.root / "label", mask_exts=(".png", ".tif", ".tiff"))
        self._pairs = {i: (a, b) for i, a, b in triples}
        fr = {"train": 1.0 - val_fraction - test_fraction, "val": float(val_fraction), "test": float(test_fraction)}
        if fr["train"] <= 0 or fr["val"] < 0 or fr["test"] < 0:
            raise DatasetError(f"{self.root}: val_fraction + test_fraction must be below 1")
        self._ids = split_ids(list(self._pairs), fr, seed, f"isbi2012 {self.root}")

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def split_names(self) -> list[str]:
        return list(self._ids)

    def split(self, name: str) -> ScaledFileSplit:
        if name not in self._ids:
            raise DatasetError(f"{self.root}: isbi2012 has no split '{name}' (splits: {', '.join(self._ids)})")
        ids = self._ids[name]
        return ScaledFileSplit(self._info, name, [self._pairs[i] for i in ids], decode_isbi_label, ids=ids, scale=self.scale)
