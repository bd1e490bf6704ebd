"""The one dataset interface of segbench.

A *dataset* (e.g. CamVid) has fixed class names, a colour palette and an ignore index
(:class:`DatasetInfo`) and one or more named *splits* (``train``, ``val``, ``test``).
A :class:`Split` is a sequence of :class:`Sample`: an RGB ``uint8`` HxWx3 image and an
integer HxW label map whose values are class indices or the ignore index.

Every reader raises :class:`DatasetError` naming the offending file; nothing is skipped
silently. :class:`SkippingSplit` (``bench run --skip-bad-samples``) leaves unreadable
samples out on request and lists each one with its error, so that the record can say so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from bench.datasets.palettes import colorize
from bench.errors import SegbenchError


class DatasetError(SegbenchError, ValueError):
    """Bad or missing data. The message always names the file or folder at fault."""


def unknown_split(where: str, name: str, known: Iterable[str]) -> DatasetError:
    """The error for a split name a dataset does not have; ``where`` names the dataset and its folder."""
    return DatasetError(f"{where}: no split '{name}' (splits: {', '.join(known)})")


@dataclass(frozen=True)
class DatasetInfo:
    """What every consumer needs to know about a dataset's label space."""

    name: str
    class_names: tuple[str, ...]
    palette: np.ndarray = field(compare=False)  # (num_classes, 3) uint8 RGB, one row a class
    ignore_index: int | None = 255  # label value left out of every metric and loss
    citation: str = ""

    def __post_init__(self) -> None:
        pal = np.asarray(self.palette, dtype=np.uint8)
        if pal.shape != (len(self.class_names), 3):
            raise ValueError(
                f"{self.name}: palette has shape {pal.shape}, expected ({len(self.class_names)}, 3)"
            )
        object.__setattr__(self, "palette", pal)
        if self.ignore_index is not None and 0 <= self.ignore_index < len(self.class_names):
            raise ValueError(f"{self.name}: ignore index {self.ignore_index} is a class index")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """Label map -> RGB image with the palette; the ignore index is drawn black."""
        return colorize(label, self.palette, self.ignore_index)


@dataclass
class Sample:
    image: np.ndarray  # HxWx3 uint8 RGB
    label: np.ndarray  # HxW integer (uint8 when the classes fit, else int32)
    id: str  # stable identifier, usually the file stem


class Split(ABC, Sequence[Sample]):
    """A named, ordered, finite part of a dataset. Indexing loads one sample."""

    def __init__(self, info: DatasetInfo, name: str):
        self.info = info
        self.name = name

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> Sample:
        """Read and validate sample ``index``; raise DatasetError naming the file when bad."""

    @property
    @abstractmethod
    def ids(self) -> list[str]:
        """Sample identifiers in order, available without reading any pixels."""

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.load(index % len(self))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.name}/{self.name}: {len(self)} samples>"


class Dataset(ABC):
    """A dataset family instance bound to a root folder (or to a seed for synthetic data)."""

    #: registry name, set by the dataset registry (bench.datasets) when the class is looked up
    name: str = ""
    #: True when the data ships with segbench or is generated (no --data-root needed)
    builtin: bool = False

    @property
    @abstractmethod
    def info(self) -> DatasetInfo: ...

    @abstractmethod
    def split_names(self) -> list[str]:
        """Splits that exist (on disk or by construction)."""

    @abstractmethod
    def split(self, name: str) -> Split:
        """Return a split; raise DatasetError naming the folder when it is missing or empty."""


class InMemorySplit(Split):
    """A split over arrays already in memory (tests, generated data, subsets)."""

    def __init__(self, info: DatasetInfo, name: str, samples: Sequence[Sample]):
        super().__init__(info, name)
        if not samples:
            raise DatasetError(f"{info.name}: split '{name}' is empty")
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def load(self, index: int) -> Sample:
        return self.samples[index]


@dataclass(frozen=True)
class SkippedSample:
    """A sample left out by :class:`SkippingSplit`: where it was and why it could not be read."""

    split: str
    index: int  # its index in the original split
    id: str
    error: str  # the DatasetError message (it names the file)

    def as_dict(self) -> dict:
        return {"split": self.split, "index": self.index, "id": self.id, "error": self.error}


class SkippingSplit(Split):
    """``split`` without its unreadable samples (``--skip-bad-samples``).

    Every sample is loaded once when the view is made; a sample whose loading raises
    :class:`DatasetError` (a corrupt or truncated file, a label outside the classes, sizes
    that disagree ...) is left out and listed in :attr:`skipped` with the error, which names
    the file. Any other exception is a bug, not bad data, and propagates. Indexing, ``ids``
    and ``len`` are those of the readable samples, in their original order, so a method's
    ``fit`` and the evaluation loop simply never see the bad ones. A split with no readable
    sample at all is an error.
    """

    def __init__(self, split: Split):
        super().__init__(split.info, split.name)
        self.base = split
        ids = list(split.ids)
        self.kept: list[int] = []
        self.skipped: list[SkippedSample] = []
        for i in range(len(split)):
            try:
                split.load(i)
            except DatasetError as e:
                self.skipped.append(SkippedSample(split.name, i, ids[i] if i < len(ids) else str(i), str(e)))
            else:
                self.kept.append(i)
        if not self.kept:
            raise DatasetError(
                f"{split.info.name}: none of the {len(split)} samples of split '{split.name}' can be read "
                f"(first: {self.skipped[0].error})"
            )
        self._ids = [ids[i] for i in self.kept] if len(ids) == len(split) else [str(i) for i in self.kept]

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def load(self, index: int) -> Sample:
        return self.base.load(self.kept[index])

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.info.name}/{self.name}: {len(self)} samples, "
                f"{len(self.skipped)} skipped>")
