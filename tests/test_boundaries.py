"""BSDS500 boundary benchmark (bench.metrics.boundary_matching, bench.metrics.boundary_pr, bench.boundaries):
matching, counts, ODS/OIS/AP, edge methods from the registry; synthetic + real smoke test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.boundaries import create_edge_method, edge_methods, evaluate_boundaries, format_markdown
from bench.method import MethodError
from bench.metrics.boundary_matching import MATCHINGS, _augment_to_maximum, _match_indices, match_boundaries
from bench.metrics.boundary_pr import image_counts, summarise, threshold_values

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "bsds500"


def square(h=60, w=80, shift=0):
    m = np.zeros((h, w), bool)
    m[10 + shift, 10:70] = True
    m[50 + shift, 10:70] = True
    m[10 + shift:51 + shift, 10] = True
    m[10 + shift:51 + shift, 69] = True
    return m


class FakeSplit:
    def __init__(self, gts_per_image):
        self.gts = gts_per_image

    def __len__(self):
        return len(self.gts)

    def load(self, i):
        class S:
            image = np.zeros(self.gts[i][0].shape + (3,), np.uint8)
        S.index = i
        return S

    def boundaries(self, i):
        return [g.copy() for g in self.gts[i]]


@pytest.mark.parametrize("matching", MATCHINGS)
def test_perfect_prediction(matching):
    from skimage.morphology import thin

    g = thin(square())  # already thin, so thresholding + thinning gives it back
    mp, mg = match_boundaries(g, g, matching=matching)
    assert (mp == g).all() and (mg == g).all()
    c = image_counts(g.astype(np.float32), [g], thresholds=3, matching=matching)
    assert (c[:, 0] == c[:, 1]).all() and (c[:, 2] == c[:, 3]).all()
    res = summarise(c[None], threshold_values(3))
    assert res["ods"] == pytest.approx(1.0) and res["ois"] == pytest.approx(1.0)


@pytest.mark.parametrize("matching", MATCHINGS)
def test_shift_within_tolerance(matching):
    g = np.zeros((60, 80), bool)
    g[20, 5:75] = True
    g[5:55, 40] = True
    p = np.roll(g, 1, axis=1)  # 1 px, radius = 0.0075 * 100 = 0.75 px -> use a larger tolerance
    mp, mg = match_boundaries(p, g, max_dist=0.02, matching=matching)  # 2 px
    # every pixel has a partner within 2 px; greedy/mincost may leave the line ends over
    full = 1.0 if matching == "maximum" else 0.95
    assert mp.sum() >= full * p.sum() and mg.sum() >= full * g.sum() and mp.sum() == mg.sum()
    mp, _ = match_boundaries(p, g, max_dist=0.001, matching=matching)  # 0.1 px: only overlapping pixels
    assert mp.sum() < p.sum()


@pytest.mark.parametrize("matching", MATCHINGS)
def test_one_to_one(matching):
    g = np.zeros((50, 50), bool)
    g[25, 25] = True
    p = np.zeros_like(g)
    p[25, 24] = p[25, 26] = True
    mp, mg = match_boundaries(p, g, max_dist=0.05, matching=matching)
    assert mp.sum() == 1 and mg.sum() == 1


def test_maximum_beats_greedy_trap():
    # p0 is nearest to g0, but g0 is p1's only partner: greedy matches 1, maximum/mincost 2
    g = np.zeros((40, 40), bool)
    p = np.zeros_like(g)
    g[20, 20] = g[20, 18] = True  # g0 at 20, g1 at 18
    p[20, 21] = True  # p0: 1 from g0, 3 from g1
    p[20, 23] = True  # p1: 3 from g0, 5 from g1
    md = 3.5 / np.hypot(40, 40)
    assert match_boundaries(p, g, md, matching="greedy")[0].sum() == 1
    assert match_boundaries(p, g, md, matching="maximum")[0].sum() == 2
    assert match_boundaries(p, g, md, matching="mincost")[0].sum() == 2


def test_any_annotator_counts():
    a = np.zeros((40, 40), bool)
    b = np.zeros_like(a)
    a[10, 5:35] = True
    b[30, 5:35] = True
    pred = a | b
    c = image_counts(pred.astype(np.float32), [a, b], thresholds=[0.5])[0]
    cnt_r, sum_r, cnt_p, sum_p = c
    assert cnt_p == sum_p == pred.sum()  # each pixel matched to one annotator or the other
    assert cnt_r == sum_r == a.sum() + b.sum()


def test_empty_prediction_and_empty_gt():
    g = square()
    c = image_counts(np.zeros(g.shape, np.float32), [g], thresholds=5)
    assert (c[:, 0] == 0).all() and (c[:, 3] == 0).all()
    res = summarise(c[None], threshold_values(5))
    assert res["ods"] == 0 and res["ods_r"] == 0 and res["ap"] == 0
    mp, mg = match_boundaries(g, np.zeros_like(g))
    assert not mp.any() and not mg.any()


def test_ods_ois_ap_on_synthetic_split():
    rng = np.random.default_rng(0)
    gts = [[square(shift=s), square(shift=s + 1)] for s in range(3)]

    def strength(img, _state={"i": 0}):
        i = _state["i"]
        _state["i"] += 1
        g = gts[i][0].astype(np.float32) * (0.3 + 0.3 * i)
        return np.maximum(g, rng.random(g.shape).astype(np.float32) * 0.5 * (rng.random(g.shape) < 0.05))

    res = evaluate_boundaries(strength, FakeSplit(gts), thresholds=9, progress=False)
    assert 0 <= res["ods"] <= 1 and res["ois"] >= res["ods"] - 1e-12
    assert 0 <= res["ap"] <= 1
    assert res["precision"].shape == res["recall"].shape == (9,)
    assert res["counts"].shape == (3, 9, 4)


def test_unknown_matching_is_an_error():
    with pytest.raises(ValueError, match="unknown matching 'hungarian'"):
        match_boundaries(square(), square(), matching="hungarian")


def test_edge_methods_come_from_the_registry():
    names = edge_methods()
    assert {"sobel", "laplacian", "log", "canny"} <= set(names) and "majority" not in names
    strength = create_edge_method("sobel", {"sigma": 0.0}).edge_strength(np.zeros((20, 30, 3), np.uint8))
    assert strength.shape == (20, 30) and strength.dtype == np.float32
    with pytest.raises(MethodError, match="'majority' gives no edge map; edge methods: .*sobel"):
        create_edge_method("majority")


def test_threshold_values():
    t = threshold_values(99)
    assert len(t) == 99 and t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(0.99)
    with pytest.raises(ValueError):
        threshold_values(0)


@pytest.mark.skipif(not REAL.is_dir(), reason="real BSDS500 not present")
def test_real_bsds500_canny_three_images():
    from bench.boundaries import run_boundary_benchmark

    df = run_boundary_benchmark(REAL, methods=("canny",), thresholds=3, limit=3, progress=False)
    row = df.iloc[0]
    # Canny swept over its thresholds: a PR curve, not one point, so AP > 0 (OIS may fall a
    # little below ODS: F of summed per-image optima is not the optimum of summed counts)
    assert row["images"] == 3 and 0.2 < row["ods"] < 0.9 and 0.2 < row["ois"] < 0.9 and row["ap"] > 0.1
    assert "| canny |" in format_markdown(df)


def test_cli_boundaries_matches_the_library_and_checks_its_input(fake_bsds, capsys):
    import json

    from bench.boundaries import run_boundary_benchmark
    from bench.cli import main

    code = main(["boundaries", "--data-root", str(fake_bsds), "--methods", "sobel,canny", "--thresholds", "5",
                 "--format", "json", "--no-progress"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    direct = run_boundary_benchmark(fake_bsds, "val", ("sobel", "canny"), thresholds=5, progress=False)
    assert [r["method"] for r in rows] == ["sobel", "canny"]
    for row, (_, ref) in zip(rows, direct.iterrows()):
        assert row["images"] == 3 and row["thresholds"] == 5
        assert row["ods"] == pytest.approx(ref["ods"]) and row["ap"] == pytest.approx(ref["ap"])
    assert main(["boundaries", "--data-root", str(fake_bsds), "--thresholds", "3", "--no-progress"]) == 0
    assert "Published (BSDS500 test" in capsys.readouterr().out
    for bad, fragment in ((["--methods", "prewitt"], "prewitt"), (["--matching", "hungarian"], "--matching"),
                          (["--thresholds", "0"], "--thresholds")):
        assert main(["boundaries", "--data-root", str(fake_bsds), *bad]) == 2
        assert fragment in capsys.readouterr().err
    assert main(["boundaries", "--data-root", str(fake_bsds / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(40))
def test_augmenting_paths_reach_a_maximum_matching(seed):
    """Greedy seed + augmenting paths: a valid one-to-one matching of scipy's maximum size."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    rng = np.random.default_rng(seed)
    n_p, n_g = int(rng.integers(1, 60)), int(rng.integers(1, 60))
    m = int(rng.integers(1, 4 * (n_p + n_g)))
    pairs = np.unique(np.stack([rng.integers(0, n_p, m), rng.integers(0, n_g, m)], 1), axis=0)
    i, j = pairs[:, 0], pairs[:, 1]
    dist = rng.random(len(i))
    graph = csr_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n_p, n_g))
    best = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())

    mp, mg = _match_indices(n_p, n_g, i, j, dist, "maximum")
    assert mp.sum() == mg.sum() == best
    assert _match_indices(n_p, n_g, i, j, dist, "greedy")[0].sum() <= best

    mate_g = np.full(n_g, -1, np.int64)  # from empty: every matched pair is a candidate edge, once
    _augment_to_maximum(i, j, n_p, n_g, mate_g)
    got = np.flatnonzero(mate_g >= 0)
    assert len(got) == best and len(np.unique(mate_g[got])) == best
    edges = set(map(tuple, pairs.tolist()))
    assert all((int(mate_g[g]), int(g)) in edges for g in got)
