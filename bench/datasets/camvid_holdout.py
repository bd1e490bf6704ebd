"""CamVid with one driving sequence held out of train: a check of how much a val figure
owes to val's frames coming from a video that train also samples.

CamVid's val (101 frames) is all sequence 0016E5, of which train holds 204 further frames;
a network can score well on val by remembering that street. ``camvid-holdout`` trains on
the other sequences only and adds the held-out sequence's frames as a split of their own:

- ``train``: CamVid train without the frames of ``sequence`` (0006R0 by default: 266 of 367
  frames left, from 0001TP and 0016E5);
- ``val``: CamVid val, unchanged;
- ``<sequence>`` (``0006R0``): the held-out frames (101), scored with ``--eval-split 0006R0``;
- ``test``: CamVid test when its folders exist.

A method scored on both ``val`` and the held-out split from the same fit (the runner fits
once for several evaluation splits, see :mod:`bench.run.execute`) shows the gap between a
sequence it has seen and one it has not.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets.camvid import CamVidDataset
from bench.datasets.file_split import Triple
from bench.datasets.types import DatasetError, DatasetInfo, unknown_split

DEFAULT_SEQUENCE = "0006R0"


class CamVidHoldOutDataset(CamVidDataset):
    """CamVid (SegNet layout) with the frames of one sequence (a file-name prefix such as
    ``0006R0``) moved out of train into a split of that name; options: ``scale``, ``sequence``."""

    def __init__(self, root: str | Path, scale: float = 1.0, sequence: str = DEFAULT_SEQUENCE):
        self.sequence = str(sequence)  # before the base class, which lists the splits
        super().__init__(root, scale)
        if "train" not in super().split_names():
            raise DatasetError(f"{self.where}: camvid-holdout needs the train split (train/ + trainannot/)")
        train = super().triples("train")
        held = [t for t in train if self._held(t)]
        if not held:
            raise DatasetError(f"{self.where}: no train frame of sequence {self.sequence!r} "
                               "(file names start with the sequence, e.g. 0006R0_f02400.png)")
        if len(held) == len(train):
            raise DatasetError(f"{self.where}: every train frame is of sequence {self.sequence!r}; "
                               "nothing would be left to train on")
        self._info = DatasetInfo(name="camvid-holdout", class_names=self._info.class_names,
                                 palette=self._info.palette, ignore_index=self._info.ignore_index,
                                 citation=self._info.citation + f" Sequence {self.sequence} held out of train by "
                                 "segbench (bench/datasets/camvid_holdout.py).")

    def _held(self, triple: Triple) -> bool:
        return triple[0].startswith(self.sequence)

    def split_names(self) -> list[str]:
        return super().split_names() + [self.sequence]

    def triples(self, name: str) -> list[Triple]:
        if name == self.sequence:
            return [t for t in super().triples("train") if self._held(t)]
        if name not in super().split_names():
            raise unknown_split(self.where, name, self.split_names())
        triples = super().triples(name)
        return [t for t in triples if not self._held(t)] if name == "train" else triples
