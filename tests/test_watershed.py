"""The compiled marker watershed gives scikit-image's labels, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import watershed as skimage_watershed

from baselines.watershed import watershed


def test_watershed_equals_scikit_image_on_tie_rich_maps():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(1, 30, 2)
        levels = rng.integers(1, 5)  # few elevation levels: many equal priorities
        elevation = (rng.integers(0, levels, (h, w)) / levels - 0.5).astype(np.float32)  # negatives too
        markers = np.zeros((h, w), np.int32)
        seeds = rng.choice(h * w, rng.integers(1, max(2, h * w // 4)), replace=False)
        markers.ravel()[seeds] = rng.integers(1, 6, len(seeds))  # touching markers of other labels too
        got = watershed(elevation, markers)
        expected = skimage_watershed(elevation, markers)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_watershed_splits_a_ridge_and_leaves_unreached_pixels():
    elevation = np.zeros((5, 9), np.float32)
    elevation[:, 4] = 1.0
    markers = np.zeros((5, 9), np.int64)
    markers[2, 0], markers[2, 8] = 1, 2
    labels = watershed(elevation, markers)
    assert (labels[:, :4] == 1).all() and (labels[:, 5:] == 2).all()
    assert (watershed(elevation, np.zeros((5, 9), np.int64)) == 0).all()  # no marker: nothing flooded


def test_watershed_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        watershed(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="integers"):
        watershed(np.zeros((4, 4), np.float32), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="float32 without NaN"):
        watershed(np.zeros((4, 4)), np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="float32 without NaN"):
        watershed(np.full((4, 4), np.nan, np.float32), np.zeros((4, 4), np.int32))


def test_ordered_bits_keep_the_float_order():
    from baselines.watershed import _ordered_bits

    values = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, np.inf], np.float32)
    keys = _ordered_bits(values)
    assert (np.diff(keys.astype(object)) >= 0).all() and keys[3] == keys[4]
    assert (keys & np.uint64(0xFFFFFFFF) == 0).all()  # room for the age
