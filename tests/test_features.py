"""Textons and the histogram features of the region describer: the filter bank, the texton
dictionary (fit, nearest-word assignment, saved and loaded with a method), the per-region
histograms, the working copy and its lost regions."""

from __future__ import annotations

import numpy as np
import pytest

from baseline_data import textured_split
from baselines.features import feature_names, region_features, working_regions
from baselines import textons
from baselines.preprocess import rgb_to_lab
from baselines.textons import N_FILTERS, TextonDictionary, filter_responses, region_histograms, sample_responses
from bench.method import FitContext, MethodError, create_method


def test_filter_responses_of_a_flat_image():
    lab = np.zeros((20, 30, 3), np.float32)
    lab[..., 0], lab[..., 1], lab[..., 2] = 50.0, 10.0, -20.0
    r = filter_responses(lab)
    assert r.shape == (20, 30, N_FILTERS) and r.dtype == np.float32
    # Gaussians keep a flat image's Lab values; LoG and derivatives are zero on it
    np.testing.assert_allclose(r[..., :9], np.tile([50.0, 10.0, -20.0], 3) * np.ones((20, 30, 9)), rtol=1e-5)
    np.testing.assert_allclose(r[..., 9:], 0.0, atol=1e-4)


def test_filter_responses_see_direction():
    ramp = np.zeros((40, 40, 3), np.float32)
    ramp[..., 0] = np.arange(40, dtype=np.float32)[None, :]  # L grows along x by 1 per pixel
    r = filter_responses(ramp)[12:-12, 12:-12]  # away from the reflected borders
    dx_sigma2, dy_sigma2 = r[..., 13], r[..., 14]
    np.testing.assert_allclose(dx_sigma2, 1.0, atol=1e-3)
    np.testing.assert_allclose(dy_sigma2, 0.0, atol=1e-3)


def two_cluster_responses(rng, n=600):
    a = rng.normal(0.0, 0.1, (n, N_FILTERS))
    b = rng.normal(5.0, 0.1, (n, N_FILTERS))
    return np.concatenate([a, b]).astype(np.float32)


def test_texton_dictionary_separates_clusters_and_assigns_nearest():
    rng = np.random.default_rng(0)
    x = two_cluster_responses(rng)
    d = TextonDictionary.fit(x, k=2, seed=0)
    ids = d.assign(x)
    assert len(set(ids[:600])) == 1 and len(set(ids[600:])) == 1 and ids[0] != ids[-1]
    d8 = TextonDictionary.fit(x, k=8, seed=0)
    q = rng.normal(2.5, 3.0, (50, N_FILTERS)).astype(np.float32)
    white = (q - d8.mean) / d8.scale
    brute = ((white[:, None, :] - d8.centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    np.testing.assert_array_equal(d8.assign(q), brute)
    assert d8.assign(q.reshape(5, 10, N_FILTERS)).shape == (5, 10)


def test_texton_assign_in_blocks_equals_one_product():
    rng = np.random.default_rng(6)
    d = TextonDictionary.fit(rng.normal(size=(4000, N_FILTERS)).astype(np.float32), k=64, seed=0)
    for n in (textons.ASSIGN_BLOCK * 2 + 37, 5, 0):
        r = rng.normal(size=(n, N_FILTERS)).astype(np.float32)
        whole = r @ d._w
        whole += d._b
        np.testing.assert_array_equal(d.assign(r), whole.argmin(axis=1))
        planes_view = np.ascontiguousarray(r.T).T  # how filter_responses lays its planes out
        np.testing.assert_array_equal(d.assign(planes_view), whole.argmin(axis=1))
    lab = rgb_to_lab(np.random.default_rng(7).integers(0, 256, (61, 83, 3), dtype=np.uint8))
    responses = filter_responses(lab)
    np.testing.assert_array_equal(d.assign(responses), d.assign(np.ascontiguousarray(responses)))


def test_texton_dictionary_bad_input():
    with pytest.raises(ValueError, match="training pixels"):
        TextonDictionary.fit(np.zeros((3, N_FILTERS), np.float32), k=8)
    with pytest.raises(ValueError, match="centres"):
        TextonDictionary(np.zeros((4, 5)), np.zeros(N_FILTERS), np.ones(N_FILTERS))
    with pytest.raises(ValueError, match="positive scales"):
        TextonDictionary(np.zeros((4, N_FILTERS)), np.zeros(N_FILTERS), np.zeros(N_FILTERS))


def test_sample_responses_is_seeded_and_capped():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(3)]
    a = sample_responses(images, per_image=100, seed=4)
    assert a.shape == (300, N_FILTERS)
    np.testing.assert_array_equal(a, sample_responses(images, per_image=100, seed=4))
    assert sample_responses(images[:1], per_image=5000).shape == (1200, N_FILTERS)
    with pytest.raises(ValueError, match="no image"):
        sample_responses([])


def test_region_histograms():
    regions = np.array([[0, 0, 1], [0, 1, 1]])
    values = np.array([[2, 2, 0], [1, 0, 0]])
    h = region_histograms(values, regions, 3, 3)
    np.testing.assert_allclose(h, [[0, 1 / 3, 2 / 3], [1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    weighted = region_histograms(values, regions, 2, 3, weights=np.array([[1.0, 3.0, 1.0], [4.0, 1.0, 1.0]]))
    np.testing.assert_allclose(weighted[0], [0, 0.5, 0.5])


def test_histogram_columns_of_region_features():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)  # red, flat
    stripes = (np.arange(20) // 2 % 2 * 255).astype(np.uint8)
    image[:, 20:] = stripes[None, :, None]  # vertical stripes: the gradient is horizontal
    regions = np.zeros((20, 40), np.int32)
    regions[:, 20:] = 1
    rng = np.random.default_rng(0)
    d = TextonDictionary.fit(rng.normal(size=(500, N_FILTERS)).astype(np.float32), k=5)
    f = region_features(image, regions, textons=d)
    names = feature_names(5)
    assert f.shape == (2, len(names)) and f.dtype == np.float32
    col = {n: i for i, n in enumerate(names)}
    assert f[0, col["hist_hue_0"]] == pytest.approx(1.0)  # red: hue 0
    orientation = f[1, [col[f"orientation_{k}"] for k in range(8)]]
    assert orientation.argmax() == 0 and orientation[0] > 0.9  # angle 0 (mod 180)
    for prefix in ("orientation_", "hist_L_", "hist_a_", "hist_b_", "hist_hue_", "texton_"):
        cols = [i for i, n in enumerate(names) if n.startswith(prefix)]
        np.testing.assert_allclose(f[:, cols].sum(axis=1), 1.0, rtol=1e-5)
    lab = rgb_to_lab(image)
    assert f[0, col["hist_L_" + str(int(lab[0, 0, 0] * 8 / 100))]] == pytest.approx(1.0)
    # spread of x over the left half (columns 0..19 of 0..39) and no x-y covariance
    np.testing.assert_allclose(f[0, col["spread_x"]], np.arange(20).std() / 39, rtol=1e-4)
    assert abs(f[0, col["cov_xy"]]) < 1e-6


def test_working_copy_and_lost_regions():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    regions = np.zeros((360, 480), np.int32)
    regions[:, 240:] = 1
    small, small_regions = working_regions(image, regions, 240)
    assert small.shape == (180, 240, 3) and small_regions.shape == (180, 240)
    regions[101, 51] = 2  # one pixel on an odd row: not on the 2x working copy
    assert 2 not in working_regions(image, regions, 240)[1]
    f = region_features(image, regions)
    names = feature_names()
    area_cols = [names.index("log_area"), names.index("area_fraction")]
    others = [i for i in range(len(names)) if i not in area_cols]
    np.testing.assert_array_equal(f[2, others], f[0, others])  # the region covering its place
    assert f[2, names.index("log_area")] == pytest.approx(np.log(2.0))
    full = region_features(image, regions, work_size=None)
    assert full.shape == f.shape and not np.allclose(full[:2], f[:2])


def fitted_sobel(settings):
    m = create_method("sobel", {"max_train_images": 4, "n_estimators": 10, **settings})
    m.fit(textured_split(4, 0), None, FitContext(seed=0, progress=False))
    return m


def test_textons_are_learned_saved_and_loaded(tmp_path):
    m = fitted_sobel({"textons": 6})
    assert m.textons is not None and m.textons.k == 6
    image = textured_split(1, 3)[0].image
    m.save(tmp_path)
    loaded = type(m).load(tmp_path, m.settings)
    np.testing.assert_array_equal(loaded.textons.centres, m.textons.centres)
    np.testing.assert_array_equal(loaded.predict(image), m.predict(image))
    t = m.textons
    np.savez(tmp_path / "textons.npz", centres=t.centres[:5], mean=t.mean, scale=t.scale)
    with pytest.raises(MethodError, match="5 textons, settings say 6"):
        type(m).load(tmp_path)
    np.savez(tmp_path / "textons.npz", centres=np.zeros((6, 3)), mean=t.mean, scale=t.scale)
    with pytest.raises(MethodError, match="textons.npz"):
        type(m).load(tmp_path)
    off = fitted_sobel({"textons": 0})
    assert off.textons is None and off.predict(image).shape == image.shape[:2]


def test_bad_texton_setting():
    with pytest.raises(ValueError, match="textons"):
        create_method("sobel", {"textons": -1})


def test_pixel_statistics_equal_the_bincount_sums():
    """The compiled per-region sums give, bit for bit, what np.bincount over each map gives;
    a region id with no pixel gets zeros."""
    from baselines.features import _pixel_statistics
    from baselines.preprocess import gaussian_blur, sobel_xy
    from baselines.textons import gaussian_stack

    rng = np.random.default_rng(4)
    lab = rgb_to_lab(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    regions = rng.integers(0, 40, (37, 53))
    regions[regions == 7] = 8  # id 7 left empty
    n = 42  # and two past the largest id
    flat = regions.ravel().astype(np.intp)
    area = np.bincount(flat, minlength=n).astype(np.float64)
    safe = np.maximum(area, 1.0)
    stack = gaussian_stack(lab)
    cols, position = _pixel_statistics(lab, stack, flat, n, safe)

    def mean(v):
        return np.bincount(flat, weights=np.asarray(v).ravel(), minlength=n) / safe

    def spread(v, mu):
        return np.sqrt(np.maximum(mean(np.asarray(v, np.float64) ** 2) - mu**2, 0.0))

    light = np.ascontiguousarray(lab[:, :, 0])
    gx, gy = sobel_xy(light)
    grad = np.sqrt(gx * gx + gy * gy)
    blur1, blur3 = stack[1.0][:, :, 0], gaussian_blur(light, 3.0)
    means = [mean(lab[:, :, c]) for c in range(3)]
    expected = means + [spread(lab[:, :, c], means[c]) for c in range(3)]
    expected += [mean(grad), spread(grad, mean(grad)), mean(np.abs(gx)), mean(np.abs(gy)),
                 mean(np.abs(light - blur1)), mean(np.abs(blur1 - blur3))]
    yy, xx = np.indices(regions.shape, dtype=np.float64)
    yy, xx = yy / (regions.shape[0] - 1), xx / (regions.shape[1] - 1)
    cy, cx = mean(yy), mean(xx)
    expected_position = [cy, cx, spread(yy, cy), spread(xx, cx), mean(yy * xx) - cy * cx]
    assert len(cols) == len(expected) and len(position) == 5
    for got, want in zip(cols + position, expected + expected_position):
        np.testing.assert_array_equal(got, want)
    assert all(c[[7, 40, 41]].tolist() == [0.0, 0.0, 0.0] for c in cols + position)
