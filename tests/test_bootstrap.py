"""bench.metrics.bootstrap and bench.per_image: exact figures per resample, agreement with a plain
loop, seeding, and by simulation the coverage of the intervals and the paired test's error rates."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from bench.metrics import Scorer, summarize
from bench.metrics.bootstrap import Arm, BootstrapError, bootstrap, holm, matrix_scores, p_values, sum_scores
from bench.per_image import PerImage, PerImageError, read_per_image, seeds_arm, write_per_image

SCORES = ("mmseg", "smp", "pixel_acc", "mean_acc", "fwiou")


def _leaves(x) -> list:
    if isinstance(x, dict):
        return [v for k in sorted(x, key=str) for v in _leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _leaves(item)]
    return [np.nan if x is None else x]


def same(a, b, rtol: float = 0.0) -> None:
    """Two results (dataclasses of floats) equal (to ``rtol``), NaN equal to NaN."""
    np.testing.assert_allclose(_leaves(dataclasses.asdict(a)), _leaves(dataclasses.asdict(b)), rtol=rtol,
                               atol=0, equal_nan=True)


# -- a population of images and two methods on it --------------------------------------------
def draw_truth(rng: np.random.Generator, n: int, k: int = 5, per_image: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images: ground-truth pixels per class and a difficulty (the accuracy a method has
    on that image, Beta(6, 2)). Each class is in about 60% of the images, or each image holds
    exactly ``per_image`` of the ``k`` classes."""
    if per_image is None:
        present = rng.random((n, k)) < 0.6
        present[np.arange(n), rng.integers(0, k, n)] = True
    else:
        present = np.argsort(rng.random((n, k)), axis=1) < per_image
    props = rng.dirichlet(np.full(k, 0.7), n) * present
    counts = np.floor(rng.integers(500, 3000, n)[:, None] * props / props.sum(1, keepdims=True)).astype(np.int64)
    return counts, rng.beta(6, 2, n)


def predict(rng: np.random.Generator, counts: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(n, K, K) matrices of a method right with probability ``accuracy`` per pixel, its
    errors spread evenly over the other classes."""
    n, k = counts.shape
    tp = rng.binomial(counts, np.clip(accuracy, 0, 1)[:, None])
    wrong = rng.multinomial(counts - tp, np.full(k - 1, 1 / (k - 1)))  # (n, K, K-1)
    m = np.zeros((n, k, k), np.int64)
    for c in range(k):
        m[:, c, [j for j in range(k) if j != c]] = wrong[:, c]
        m[:, c, c] = tp[:, c]
    return m


def population_scores(rng: np.random.Generator, k: int = 5, per_image: int | None = None) -> dict:
    """The figures of the whole population: of the expected pooled sums (diagonal, ground
    truth, prediction) of :func:`predict` over 200,000 images."""
    counts, accuracy = draw_truth(rng, 200_000, k, per_image)
    right = counts * np.clip(accuracy, 0, 1)[:, None]
    wrong = (counts - right).sum(0)
    tp, gt = right.sum(0), counts.sum(0)
    return sum_scores(tp, gt, tp + (wrong.sum() - wrong) / (k - 1))


def random_matrices(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Matrices with absent classes, only-predicted classes and an empty image."""
    m = rng.integers(0, 50, (n, k, k)) * (rng.random((n, k, k)) < 0.4)
    m[:, np.arange(k), np.arange(k)] += rng.integers(0, 400, (n, k))
    m[:, k - 1, :] = 0  # class K-1 never in the ground truth...
    m[: n // 2, :, k - 1] = 0  # ...and predicted in half of the images only
    m[:, 0, :] = 0
    m[:, :, 0] = 0  # class 0 absent everywhere
    m[1] = 0  # an image with no scored pixel
    return m


# -- exact figures -----------------------------------------------------------------------------
def test_matrix_scores_are_summarize_of_each_matrix():
    m = random_matrices(np.random.default_rng(0), 6, 5)
    got = matrix_scores(m)
    for i in range(len(m)):
        ref = summarize(m[i])
        np.testing.assert_allclose(got["iou"][i], ref["iou"], equal_nan=True, rtol=1e-12)
        for key in SCORES:
            want = ref["miou_by_convention"][key] if key in ("mmseg", "smp") else ref[key]
            np.testing.assert_allclose(got[key][i], want, equal_nan=True, rtol=1e-12, err_msg=key)
    assert np.isnan(got["pixel_acc"][1]) and np.isnan(got["mmseg"][1])  # the empty image


@pytest.mark.parametrize("convention", ["mmseg", "smp", "per-image"])
def test_a_resample_is_the_figures_of_its_weighted_sum(convention):
    """Each resample's figures are summarize() of sum(w_i M_i) (per-image mIoU and BF: their
    w-weighted means), for any draw counts w, zeros included."""
    rng = np.random.default_rng(1)
    m = random_matrices(rng, 9, 6)
    bf = rng.random(9)
    bf[3] = np.nan
    w = rng.multinomial(9, np.full(9, 1 / 9), size=20).astype(float)
    vals = Arm(m, convention, bf).values(w, np.ones((20, 1)))
    for r in range(20):
        per_image = [summarize(x)["miou"] for x in m]
        ref = summarize(np.tensordot(w[r], m, 1), "mmseg", per_image_miou=np.repeat(per_image, w[r].astype(int)))
        miou = ref["miou_by_convention"][convention]
        keep = w[r] > 0
        want = [miou, ref["pixel_acc"], ref["mean_acc"], ref["fwiou"], np.nansum(w[r] * np.nan_to_num(bf)) /
                np.sum(w[r][~np.isnan(bf)])] + ref["iou"]
        assert keep.any()
        np.testing.assert_allclose(vals[r], want, equal_nan=True, rtol=1e-10)


@pytest.mark.parametrize("convention", ["mmseg", "smp", "per-image"])
def test_point_estimate_is_the_scorers_result(convention):
    rng = np.random.default_rng(2)
    scorer = Scorer(5, 255, convention=convention)
    for _ in range(7):
        target = rng.integers(0, 4, (20, 30)).astype(np.uint8)
        target[:3] = 255
        pred = np.where(rng.random(target.shape) < 0.6, target % 255, rng.integers(0, 5, target.shape)).astype(np.uint8)
        scorer.update(pred, target)
    res = scorer.result()
    assert scorer.image_matrices().sum(0).tolist() == res["confusion_matrix"]
    est = bootstrap([Arm(scorer.image_matrices(), convention, scorer.image_bf)], resamples=200).arms[0]
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou", "bf"):
        assert est.value[key] == pytest.approx(res[key], rel=1e-12), key
        assert est.lo[key] <= est.value[key] <= est.hi[key] or key == "bf"
    np.testing.assert_allclose(est.iou, res["iou"], equal_nan=True)


def test_scorer_keeps_each_images_matrix_through_merge_and_reset():
    rng = np.random.default_rng(3)
    a, b = Scorer(3, boundary=False), Scorer(3, boundary=False)
    imgs = [rng.integers(0, 3, (2, 4, 5)).astype(np.uint8) for _ in range(3)]
    a.update(imgs[0][0], imgs[0][1])
    b.update(imgs[1][0], imgs[1][1])
    b.update(imgs[2][0], imgs[2][1])
    a.merge(b)
    m = a.image_matrices()
    assert m.shape == (3, 3, 3) and m.dtype == np.uint32
    for i, (pred, target) in enumerate(imgs):  # rows: ground truth, columns: prediction
        np.testing.assert_array_equal(m[i], np.histogram2d(target.ravel(), pred.ravel(), bins=3, range=[[0, 3]] * 2)[0])
    np.testing.assert_array_equal(m.sum(0), a.cm.matrix)
    a.reset()
    assert a.image_matrices().shape == (0, 3, 3)


# -- agreement and seeding -------------------------------------------------------------------
def _plain_loop(m: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The textbook basic bootstrap: draw N images with replacement, sum, summarize, repeat;
    [2 x estimate - q(97.5%), 2 x estimate - q(2.5%)]."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(m), len(m))
        values.append(summarize(m[idx].sum(0))["miou"])
    q_lo, q_hi = np.percentile(values, [2.5, 97.5])
    estimate = summarize(m.sum(0))["miou"]
    return 2 * estimate - q_hi, 2 * estimate - q_lo


def test_agrees_with_a_plain_loop_bootstrap():
    """Intervals from the vectorised bootstrap and from a slow loop over resamples (another
    seed) agree within Monte Carlo error (4,000 resamples: a few hundredths of the width)."""
    counts, acc = draw_truth(np.random.default_rng(4), 14)
    m = predict(np.random.default_rng(5), counts, acc)
    est = bootstrap([Arm(m)], resamples=4000, seed=0).arms[0]
    lo, hi = _plain_loop(m, 4000, seed=123)
    width = hi - lo
    assert width > 0.02
    assert est.lo["miou"] == pytest.approx(lo, abs=0.08 * width)
    assert est.hi["miou"] == pytest.approx(hi, abs=0.08 * width)


def test_same_seed_same_result_and_the_seed_matters():
    m = predict(np.random.default_rng(6), *draw_truth(np.random.default_rng(7), 30))
    a = bootstrap([Arm(m), Arm(m[::-1])], [(0, 1)], resamples=500, seed=3)
    b = bootstrap([Arm(m), Arm(m[::-1])], [(0, 1)], resamples=500, seed=3)
    c = bootstrap([Arm(m), Arm(m[::-1])], [(0, 1)], resamples=500, seed=4)
    same(a, b)
    assert a.arms[0].lo != c.arms[0].lo
    assert a.settings() == {"method": "basic bootstrap over images", "level": 0.95, "resamples": 500,
                            "seed": 3, "n_images": 30}


def test_image_draws_do_not_depend_on_the_other_arms():
    """An arm's interval is the same alone and next to others (several seeds included): the
    leaderboard, `compare` and `evaluate --ci` show the same figures."""
    rng = np.random.default_rng(8)
    counts, acc = draw_truth(rng, 25)
    one = predict(rng, counts, acc)
    seeds = np.stack([predict(rng, counts, acc) for _ in range(3)])
    alone = bootstrap([Arm(one)], resamples=300).arms[0]
    together = bootstrap([Arm(one), Arm(seeds), Arm(one[::-1] * 2)], [(0, 1), (1, 2)], resamples=300).arms[0]
    same(alone, together)


def test_identical_seeds_change_nothing_and_different_seeds_widen_the_interval():
    rng = np.random.default_rng(9)
    counts, acc = draw_truth(rng, 40)
    m = predict(rng, counts, acc)
    single = bootstrap([Arm(m)], resamples=1000).arms[0]
    seeds = bootstrap([Arm(np.stack([m, m, m]))], resamples=1000).arms[0]
    same(seeds, single, rtol=1e-12)  # the mean of three equal values, to rounding
    worse = predict(rng, counts, acc - 0.3)
    joint = bootstrap([Arm(np.stack([m, worse]))], resamples=1000).arms[0]
    per_seed = [summarize(x.sum(0))["miou"] for x in (m, worse)]
    assert joint.value["miou"] == pytest.approx(np.mean(per_seed))  # the leaderboard's mean over seeds
    width = joint.hi["miou"] - joint.lo["miou"]
    assert width > 2 * (single.hi["miou"] - single.lo["miou"])  # seed variation counts


def test_a_class_absent_from_some_resamples_gets_the_interval_where_it_is_defined():
    m = random_matrices(np.random.default_rng(10), 12, 5)
    m[:, 2, :] = 0
    m[:, :, 2] = 0
    m[4, 2, 2] = 300  # class 2 in one image only
    m[4, 2, 3] = 100
    m[7, 3, 2] = 50  # and predicted in another
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = bootstrap([Arm(m)], resamples=500).arms[0]
    assert np.isnan(est.iou[0]) and np.isnan(est.iou_lo[0]) and np.isnan(est.iou_hi[0])  # never present
    # resamples without image 4 but with image 7: IoU 0; with image 4 only: 300 / 400; so the
    # basic interval is [2 x 2/3 - 0.75, 2 x 2/3 - 0], clipped to 1
    assert est.iou[2] == pytest.approx(300 / 450)
    assert est.iou_lo[2] == pytest.approx(4 / 3 - 0.75) and est.iou_hi[2] == 1.0
    assert math.isfinite(est.lo["miou"])


def test_identical_methods_differ_by_nothing():
    m = predict(np.random.default_rng(11), *draw_truth(np.random.default_rng(12), 20))
    d = bootstrap([Arm(m), Arm(m.copy())], [(0, 1)], resamples=500).differences[(0, 1)]
    assert d.value["miou"] == 0 and d.lo["miou"] == 0 and d.hi["miou"] == 0 and d.p["miou"] == 1


def test_p_values_and_holm():
    dist = np.array([[1.0] * 95 + [3.0] * 5, [0.0] * 100, [-1.0] * 100, [np.nan] * 100])
    p = p_values(dist, np.array([1.0, 0.0, -1.0, 0.5]))
    # 5 resamples beyond 2 x 1; none beyond 2 x -1 = -2; the null row: all ties
    assert p[0] == pytest.approx(2 * 6 / 101) and p[1] == 1 and p[2] == pytest.approx(2 / 101) and np.isnan(p[3])
    adj = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02, np.nan])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_bad_inputs_are_one_line_errors():
    m = np.ones((5, 3, 3), np.int64)
    with pytest.raises(BootstrapError, match="at least 2 images"):
        bootstrap([Arm(m[:1])])
    with pytest.raises(BootstrapError, match="share their images and classes"):
        bootstrap([Arm(m), Arm(np.ones((5, 4, 4)))])
    with pytest.raises(BootstrapError, match="resamples"):
        bootstrap([Arm(m)], resamples=10)
    with pytest.raises(BootstrapError, match="shape"):
        Arm(np.ones((3, 3)))
    with pytest.raises(BootstrapError, match="2 per-image BF values for 5 images"):
        Arm(m, bf=[0.1, 0.2])


# -- by simulation ------------------------------------------------------------------------------
N_IMAGES, REPLICATIONS, RESAMPLES = 100, 400, 1000


@pytest.mark.parametrize("k, per_image", [(5, None), (30, 4)], ids=["5-frequent-classes", "30-classes-4-an-image"])
def test_intervals_cover_the_true_value_about_95_percent_of_the_time(k, per_image):
    """Draw many evaluation sets of 100 images from one population: the 95% interval holds the
    population's pooled mIoU and pixel accuracy in 91-98.5% of them (400 sets: the Monte Carlo
    standard error of a coverage of 95% is 1.1 points). With 30 classes spread four an image
    the percentile interval of mIoU holds it in about 62% only (measured)."""
    rng = np.random.default_rng(13)
    truth = population_scores(rng, k, per_image)
    covered = {"miou": 0, "pixel_acc": 0}
    for r in range(REPLICATIONS):
        m = predict(rng, *draw_truth(rng, N_IMAGES, k, per_image))
        est = bootstrap([Arm(m)], resamples=RESAMPLES, seed=r).arms[0]
        covered["miou"] += est.lo["miou"] <= truth["mmseg"] <= est.hi["miou"]
        covered["pixel_acc"] += est.lo["pixel_acc"] <= truth["pixel_acc"] <= est.hi["pixel_acc"]
    for key, n in covered.items():
        assert 0.91 <= n / REPLICATIONS <= 0.985, (key, n / REPLICATIONS)


def _rejections(gap: float, seed: int) -> float:
    """Share of evaluation sets on which the paired test rejects "same mIoU" at 0.05, for two
    methods on the same images, each image's accuracy its difficulty plus each method's own
    noise (sd 0.05), B's ``gap`` above A's."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for r in range(REPLICATIONS):
        counts, acc = draw_truth(rng, N_IMAGES)
        a = predict(rng, counts, acc + rng.normal(0, 0.05, N_IMAGES))
        b = predict(rng, counts, acc + gap + rng.normal(0, 0.05, N_IMAGES))
        d = bootstrap([Arm(a), Arm(b)], [(0, 1)], resamples=RESAMPLES, seed=r).differences[(0, 1)]
        rejected += d.p["miou"] < 0.05
    return rejected / REPLICATIONS


def test_paired_test_false_positive_rate_is_about_5_percent():
    """Two methods that differ only by noise: rejected in 2.5-9% of 400 evaluation sets
    (binomial standard error 1.1 points around 5%; measured: 5.5-6.3% over seeds)."""
    assert 0.025 <= _rejections(0.0, 14) <= 0.09


def test_paired_test_finds_a_real_gap():
    """B right on 3% more pixels of each image on average (3.9 mIoU points): found in >= 90%
    of sets (measured: 95-98%; a 1-point accuracy gap is found in about a quarter)."""
    assert _rejections(0.03, 15) >= 0.9


# -- per-image files ----------------------------------------------------------------------------
def test_per_image_file_round_trip_and_csv(tmp_path):
    rng = np.random.default_rng(16)
    counts, acc = draw_truth(rng, 1000, k=59)
    m = predict(rng, counts, acc).astype(np.uint32)
    bf = rng.random(1000)
    bf[5] = np.nan
    data = PerImage([f"img{i:04d}" for i in range(1000)], m, bf)
    path = write_per_image(tmp_path / "per_image" / "job.npz", data)
    assert path.stat().st_size < 3 * 2**20  # 59 classes x 1,000 images: a few MB at most
    back = read_per_image(path)
    assert back.ids == data.ids and back.matrices.dtype == np.uint32
    np.testing.assert_array_equal(back.matrices, m)
    np.testing.assert_array_equal(back.bf, bf)
    import pandas as pd

    csv = pd.read_csv(tmp_path / "per_image" / "job.csv")
    assert list(csv.columns) == ["id", "miou", "pixel_acc", "bf"] and len(csv) == 1000
    assert csv["pixel_acc"].iloc[3] == pytest.approx(np.trace(m[3]) / m[3].sum())
    assert csv["miou"].iloc[3] == pytest.approx(summarize(m[3])["miou"])
    arm = seeds_arm([back.ordered(sorted(back.ids, reverse=True))])
    assert arm.seeds == 1 and arm.n_images == 1000


def test_unreadable_per_image_files_name_the_file(tmp_path):
    with pytest.raises(PerImageError, match="nope.npz: cannot read"):
        read_per_image(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(PerImageError, match="bad.npz: not a readable per-image file"):
        read_per_image(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(PerImageError, match="other.npz: not a segbench per-image file"):
        read_per_image(tmp_path / "other.npz")
    with pytest.raises(PerImageError, match="one id each"):
        PerImage(["a"], np.zeros((2, 3, 3), np.int64))
    with pytest.raises(PerImageError, match="unique"):
        PerImage(["a", "a"], np.zeros((2, 3, 3), np.int64))
