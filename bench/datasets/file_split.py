"""Splits and datasets read from (image, mask) file pairs: validation and resizing on load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from bench.datasets.decoding import check_label_range, read_index_mask, read_rgb
from bench.datasets.pairing import holdout_splits
from bench.datasets.types import Dataset, DatasetError, DatasetInfo, Sample, Split, unknown_split

#: ``(id, image path, mask path)``, as :func:`bench.datasets.pairing.pair_files` lists them
Triple = tuple[str, Path, Path]


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map (any integer dtype) to ``size`` = (height, width) by nearest
    neighbour at pixel centres."""
    h, w = label.shape
    nh, nw = size
    rows = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(np.int64), w - 1)
    return np.ascontiguousarray(label[rows[:, None], cols[None, :]])


def resize_pair(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (``cv2.INTER_AREA`` down, ``INTER_LINEAR`` up) and its label map
    (:func:`resize_label`) by ``scale``."""
    if scale == 1.0:
        return image, label
    h, w = label.shape
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(image, (nw, nh), interpolation=interp)
    return np.ascontiguousarray(img), resize_label(label, (nh, nw))


def check_scale(scale: float, what: str) -> float:
    """The ``scale`` option as a float in (0, 4]; DatasetError naming ``what`` otherwise."""
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise DatasetError(f"{what}: option scale={scale!r} is not a number") from None
    if not 0 < scale <= 4:
        raise DatasetError(f"{what}: option scale={scale} must be in (0, 4]")
    return scale


class FileSplit(Split):
    """A split backed by ``(id, image path, mask path)`` triples and a mask decoder.

    ``decode_label(path) -> label`` turns a mask file into a label map; it must raise
    :class:`DatasetError` for bad content. Image/mask size agreement and the label range
    are checked here, once, for every file-based dataset; then the sample is resized by
    ``scale`` (:func:`resize_pair`).
    """

    def __init__(self, info: DatasetInfo, name: str, triples: Sequence[Triple],
                 decode_label: Callable[[Path], np.ndarray], scale: float = 1.0):
        super().__init__(info, name)
        if not triples:
            raise DatasetError(f"{info.name}: split '{name}' is empty")
        self._ids = [i for i, _, _ in triples]
        self.pairs = [(Path(a), Path(b)) for _, a, b in triples]
        self._decode_label = decode_label
        self.scale = float(scale)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def ids(self) -> list[str]:
        return self._ids

    def load(self, index: int) -> Sample:
        img_path, mask_path = self.pairs[index]
        image = read_rgb(img_path)
        label = self._decode_label(mask_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"{mask_path}: mask is {label.shape[1]}x{label.shape[0]} but image {img_path.name} "
                f"is {image.shape[1]}x{image.shape[0]} (WxH)"
            )
        check_label_range(label, self.info, mask_path)
        image, label = resize_pair(image, label, self.scale)
        return Sample(image=image, label=label, id=self._ids[index])


@dataclass
class PairPool:
    """Image/mask file pairs by id, and the splits drawn from them as id lists."""

    where: str  # names the dataset and its folder in messages, e.g. "isbi2012 /data/isbi"
    pairs: dict[str, tuple[Path, Path]]
    splits: dict[str, list[str]]

    @classmethod
    def held_out(cls, triples: Sequence[Triple], val_fraction: float, test_fraction: float, seed: int,
                 where: str) -> PairPool:
        """``train``/``val``/``test`` over ``triples`` by :func:`~bench.datasets.pairing.holdout_splits`."""
        pairs = {i: (a, b) for i, a, b in triples}
        return cls(where, pairs, holdout_splits(list(pairs), val_fraction, test_fraction, seed, where))

    def names(self) -> list[str]:
        return list(self.splits)

    def triples(self, name: str) -> list[Triple]:
        if name not in self.splits:
            raise unknown_split(self.where, name, self.splits)
        return [(i, *self.pairs[i]) for i in self.splits[name]]


class FileDataset(Dataset):
    """Base of the datasets read from (image, mask) files under a ``root`` folder.

    A subclass calls ``super().__init__``, sets ``_info``, and either sets ``pool`` (its
    splits are id lists over one :class:`PairPool`) or overrides :meth:`split_names` and
    :meth:`triples` (e.g. its splits are folders). :meth:`decode_label` reads an index mask
    unless overridden.
    """

    pool: PairPool | None = None
    _info: DatasetInfo

    def __init__(self, dataset: str, root: str | Path, scale: float = 1.0):
        self.root = Path(root)
        self.where = f"{dataset} {self.root}"  # names the dataset and its folder in messages
        self.scale = check_scale(scale, self.where)

    @property
    def info(self) -> DatasetInfo:
        return self._info

    def split_names(self) -> list[str]:
        return self.pool.names()

    def triples(self, name: str) -> list[Triple]:
        """``(id, image, mask)`` of split ``name``; DatasetError naming the folder or the name."""
        return self.pool.triples(name)

    def decode_label(self, path: Path) -> np.ndarray:
        """Mask file -> HxW label map; DatasetError naming the file when bad."""
        return read_index_mask(path)

    def split(self, name: str) -> FileSplit:
        return FileSplit(self._info, name, self.triples(name), self.decode_label, scale=self.scale)
