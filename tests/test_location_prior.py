"""The location prior: per relative position the most frequent training class."""

from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.types import DatasetInfo, InMemorySplit, Sample
from bench.method import FitContext, MethodError, create_method

INFO = DatasetInfo("halves", ("a", "b", "c", "d"), np.zeros((4, 3), np.uint8), 255)


def halves(h: int, w: int, left: int, right: int, top_ignore: bool = False) -> Sample:
    """A frame whose left half is class ``left`` and right half ``right``."""
    label = np.full((h, w), right, np.uint8)
    label[:, : w // 2] = left
    if top_ignore:
        label[: h // 4] = 255
    return Sample(np.zeros((h, w, 3), np.uint8), label, f"{h}x{w}")


def fitted(samples, **settings):
    method = create_method("location-prior", settings)
    method.fit(InMemorySplit(INFO, "train", samples), None, FitContext(seed=0, progress=False))
    return method


def test_predicts_the_training_layout_at_any_size():
    # two of three training frames put class 1 left and 2 right; frames of other sizes share the grid
    method = fitted([halves(40, 60, 1, 2), halves(90, 30, 1, 2), halves(50, 50, 3, 0)])
    for h, w in [(40, 60), (33, 77), (200, 100)]:
        pred = method.predict(np.zeros((h, w, 3), np.uint8))
        assert pred.shape == (h, w) and pred.dtype == np.int32
        # one grid cell of slack at the seam (nearest-neighbour resizing)
        assert (pred[:, : int(w * 0.45)] == 1).all() and (pred[:, int(w * 0.55):] == 2).all()


def test_ignored_pixels_are_not_counted_and_empty_cells_take_the_majority():
    method = fitted([halves(40, 40, 1, 2, top_ignore=True), halves(40, 40, 1, 1, top_ignore=True)], grid=[8, 8])
    pred = method.predict(np.zeros((40, 40, 3), np.uint8))
    assert (pred[:10] == 1).all()  # no label ever reached the top rows: overall majority (1)
    assert (pred[10:, :20] == 1).all() and (pred[10:, 20:] != 0).all()
    assert method.num_parameters() == 64


def test_bad_settings_and_unlabelled_training_raise():
    with pytest.raises(MethodError, match="grid"):
        create_method("location-prior", {"grid": [0, 4]})
    blank = Sample(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 255, np.uint8), "blank")
    with pytest.raises(MethodError, match="no labelled pixel"):
        fitted([blank])
    with pytest.raises(MethodError, match="fit"):
        create_method("location-prior").predict(np.zeros((4, 4, 3), np.uint8))
