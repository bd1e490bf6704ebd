"""`python -m bench compare` and the leaderboard's ties: real runs on the built-in shapes data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.compare import CompareError, compare, format_comparison
from bench.method import Method, register_method
from bench.metrics.bootstrap import Arm, bootstrap
from bench.per_image import PerImage, read_per_image, write_per_image
from bench.record import Record
from bench.report import build_report
from bench.run import Runner, plan_jobs
from bench.store import RecordStore
from bench.suites import Suite, SuiteJob


@dataclasses.dataclass
class ConstantSettings:
    label: int = 0


@register_method("test-constant")
class Constant(Method):
    """Predicts one class everywhere."""

    kind = "classical"
    Settings = ConstantSettings

    def _fit(self, train, val):
        pass

    def predict(self, image):
        self._require_fitted()
        return np.full(image.shape[:2], self.settings.label, np.int32)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """majority (two seeds), test-constant with label 1 and with label 3, on shapes/val (16 images)."""
    out = tmp_path_factory.mktemp("compare")
    suite = Suite("t", "", "shapes", [SuiteJob("majority"), SuiteJob("test-constant", {"label": 1}),
                                      SuiteJob("test-constant", {"label": 3})], Path("t.yaml"))
    runner = Runner(out, progress=False)
    assert runner.run(plan_jobs(suite, None, seeds=[0, 1]))["ok"] == 6
    return out


def _records(out: Path, method: str, **settings) -> list[Record]:
    recs = [r for r in RecordStore(out).records() if r.method == method and all(r.settings.get(k) == v
                                                                                for k, v in settings.items())]
    return sorted(recs, key=lambda r: r.seed)


def test_compare_is_the_paired_bootstrap_of_the_two_jobs(results):
    a = _records(results, "majority")
    b = _records(results, "test-constant", label=1)
    c = compare(results, "majority", "test-constant (label=1)", resamples=500, seed=7)
    assert c["a"]["job_ids"] == [r.job_id for r in a] and c["b"]["seeds"] == [0, 1] and c["n_images"] == 16
    # the same figures as the records, and the difference theirs
    assert c["a"]["miou"]["value"] == pytest.approx(np.mean([r.miou for r in a]))
    assert c["difference"]["miou"]["value"] == pytest.approx(np.mean([r.miou for r in a]) - np.mean([r.miou for r in b]))
    lo, hi = c["a"]["miou"]["ci"]
    assert lo <= c["a"]["miou"]["value"] <= hi
    # and exactly what the bootstrap of their per-image data gives
    data = [[read_per_image(results / r.per_image) for r in recs] for recs in (a, b)]
    ids = sorted(data[0][0].ids)
    arms = [Arm(np.stack([d.ordered(ids).matrices for d in side]), "mmseg", np.stack([d.ordered(ids).bf for d in side]))
            for side in data]
    d = bootstrap(arms, [(0, 1)], resamples=500, seed=7).differences[(0, 1)]
    assert c["difference"]["miou"]["ci"] == [d.lo["miou"], d.hi["miou"]] and c["difference"]["miou"]["p"] == d.p["miou"]
    assert c["bootstrap"]["resamples"] == 500 and c["bootstrap"]["seed"] == 7


def test_cli_md_and_json(results, capsys):
    assert main(["compare", "majority", "test-constant (label=3)", "--out", str(results), "--format", "json",
                 "--resamples", "300"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["a"]["label"] == "majority" and obj["b"]["label"] == "test-constant (label=3)"
    assert set(obj["difference"]["miou"]) == {"value", "ci", "p"}
    assert len(obj["a"]["iou"]) == len(obj["class_names"]) > 1
    assert main(["compare", "majority", "test-constant (label=3)", "--out", str(results)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("## majority vs test-constant (label=3): shapes / val, 16 images")
    assert "| mIoU |" in md and "2000 resamples, seed 0" in md and "### Per-class IoU" in md
    assert "significantly" in md


def test_b_from_another_results_folder_is_compared_the_same_way(results, tmp_path, capsys):
    other = tmp_path / "other"
    suite = Suite("u", "", "shapes", [SuiteJob("test-constant", {"label": 1})], Path("u.yaml"))
    assert Runner(other, progress=False).run(plan_jobs(suite, None, seeds=[0, 1]))["ok"] == 2
    here = compare(results, "majority", "test-constant (label=1)", resamples=300)
    there = compare(results, "majority", "test-constant", resamples=300, out_dir_b=other)
    assert there["b"]["job_ids"] == here["b"]["job_ids"]  # the same jobs, run into another folder
    assert there["difference"] == here["difference"] and there["a"] == here["a"]
    capsys.readouterr()  # the run's log lines
    assert main(["compare", "majority", "test-constant", "--out", str(results), "--out-b", str(other),
                 "--format", "json", "--resamples", "300"]) == 0
    assert json.loads(capsys.readouterr().out)["difference"] == json.loads(json.dumps(here["difference"]))
    assert main(["compare", "test-constant", "majority", "--out", str(other), "--out-b", str(other)]) == 2
    assert f"{other}: no ok job or method named 'majority'" in capsys.readouterr().err


def test_a_job_id_names_one_job(results):
    rec = _records(results, "majority")[1]
    c = compare(results, rec.job_id, "test-constant (label=3)", resamples=200)
    assert c["a"]["job_ids"] == [rec.job_id] and c["a"]["seeds"] == [1]
    assert c["a"]["miou"]["value"] == pytest.approx(rec.miou)


def test_names_that_match_nothing_or_several_rows(results, capsys):
    with pytest.raises(CompareError, match="no ok job or method named 'nope'; methods there: majority, test-constant"):
        compare(results, "nope", "majority")
    with pytest.raises(CompareError, match="'test-constant' names several leaderboard rows; give a job id"):
        compare(results, "majority", "test-constant")
    assert main(["compare", "majority", "test-constant", "--out", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segbench: error:") and err.count("\n") == 1


def _copy_with(tmp_path: Path, results: Path, edit) -> Path:
    """A results folder holding majority (seed 0) and one other record changed by ``edit``."""
    out = tmp_path / "out"
    store = RecordStore(out)
    maj = _records(results, "majority")[0]
    other = _records(results, "test-constant", label=1)[0]
    for r in (maj, other):
        target = out / r.per_image
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((results / r.per_image).read_bytes())
    store.write(maj)
    store.write(edit(out, dataclasses.replace(other)))
    return out


def test_records_without_per_image_data_or_on_other_images(tmp_path, results):
    old = _copy_with(tmp_path / "a", results, lambda out, r: dataclasses.replace(r, per_image=None))
    with pytest.raises(CompareError, match="no per-image data for job test-constant-.*rerun it with `run --force`"):
        compare(old, "majority", "test-constant")

    def fewer_images(out, r):
        d = read_per_image(out / r.per_image)
        write_per_image(out / r.per_image, PerImage(d.ids[:10], d.matrices[:10], d.bf[:10]))
        return r

    other = _copy_with(tmp_path / "b", results, fewer_images)
    with pytest.raises(CompareError, match="not scored on the same images \\(10 in common\\)"):
        compare(other, "majority", "test-constant")


def test_leaderboard_marks_rows_not_significantly_below_the_best(results):
    build_report(results)
    df = pd.read_csv(results / "leaderboard.csv")
    ok = df[df.status == "ok"].set_index("label")
    best = ok.index[0]
    assert ok.loc[best, "vs_best"] == "best" and ok.loc[best, "rank"] == 1
    assert list(ok["vs_best"]) == ["best", "below", "below"]  # 12.4 mIoU against 1.3 and 0.8
    for label, row in ok.iloc[1:].iterrows():
        assert row["vs_best"] == ("below" if row["p_vs_best_holm"] < 0.05 else "tied")
        assert row["p_vs_best"] <= row["p_vs_best_holm"] <= 1
        c = compare(results, best, label)  # the same image draws: the same p-value as the leaderboard's
        assert c["difference"]["miou"]["p"] == pytest.approx(row["p_vs_best"])
    for m in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert (ok[f"{m}_lo"] <= ok[m] + 1e-12).all() and (ok[m] <= ok[f"{m}_hi"] + 1e-12).all()
    assert (ok["ci_resamples"] == 2000).all() and (ok["ci_seed"] == 0).all()
    md = (results / "leaderboard.md").read_text()
    assert "vs best" in md and "Holm's correction over the section's 2 comparison(s)" in md
    for label in ok.index:
        assert f" {ok.loc[label, 'vs_best']} " in next(line for line in md.splitlines() if f"| {label} " in line)


def test_format_rejects_unknown(results):
    with pytest.raises(ValueError, match="unknown format"):
        format_comparison(compare(results, "majority", "test-constant (label=1)", resamples=200), "csv")
