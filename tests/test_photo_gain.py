"""Does a method read the image: its mIoU against its own mode map, from real runs on shapes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.method import Method, register_method
from bench.report.photo_gain import mode_map, photo_gain_markdown, photo_gains
from bench.run import Runner, plan_jobs
from bench.store import RecordStore
from bench.suites import Suite, SuiteJob

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class TextureSettings:
    threshold: float = 10.0


@register_method("test-texture")
class Texture(Method):
    """Class 1 where the image is textured (local grey-level deviation above a threshold),
    background elsewhere: a method that reads each image and knows nothing of positions."""

    kind = "classical"
    Settings = TextureSettings

    def _fit(self, train, val):
        pass

    def predict(self, image):
        self._require_fitted()
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        mean = cv2.blur(grey, (7, 7))
        deviation = np.sqrt(np.maximum(cv2.blur(grey * grey, (7, 7)) - mean * mean, 0))
        return (deviation > self.settings.threshold).astype(np.int32)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """majority, location-prior and test-texture on shapes/val (16 images, every prediction saved)."""
    out = tmp_path_factory.mktemp("photo-gain")
    suite = Suite("t", "", "shapes", [SuiteJob("majority"), SuiteJob("location-prior"), SuiteJob("test-texture")],
                  Path("t.yaml"))
    assert Runner(out, progress=False).run(plan_jobs(suite, None))["ok"] == 3
    return out


def test_mode_map_is_the_most_frequent_class_per_pixel_ties_to_the_lower(monkeypatch):
    from bench.report import photo_gain

    preds = np.array([[[0, 2], [1, 1]], [[2, 2], [0, 1]], [[0, 1], [2, 1]]])
    assert mode_map(preds, 3).tolist() == [[0, 2], [0, 1]]  # pixel (1, 0): 1, 0, 2 once each -> 0
    rng = np.random.default_rng(0)
    many = rng.integers(0, 5, (7, 9, 11)).astype(np.uint8)
    counts = np.stack([(many == k).sum(0) for k in range(5)])
    assert (mode_map(many, 5) == counts.argmax(0)).all()
    monkeypatch.setattr(photo_gain, "MODE_MAP_CELLS", 2 * 11 * 5)  # bands of two rows, the last of one
    assert (mode_map(many, 5) == counts.argmax(0)).all()


def test_a_constant_map_gains_nothing_and_a_method_that_reads_the_image_gains(results):
    rows = {r.label: r for r in photo_gains(results)}
    assert set(rows) == {"majority", "location-prior", "test-texture"}
    for constant in ("majority", "location-prior"):  # the same map for every image: its own mode map
        r = rows[constant]
        assert r.gain == 0 and r.mode_miou == pytest.approx(r.miou) and r.verdict == "no"
    r = rows["test-texture"]
    assert r.n_images == 16 and r.gain == pytest.approx(r.miou - r.mode_miou)
    assert r.gain_lo > 0 and r.p_holm < 0.05 and r.verdict == "reads the image"
    # the row's mIoU is the record's
    record = next(x for x in RecordStore(results).records() if x.method == "test-texture")
    assert r.miou == pytest.approx(record.miou)
    # Holm over the split's three rows: the smallest p times three
    assert r.p_holm == pytest.approx(min(1.0, 3 * r.p))


def test_rows_without_every_prediction_say_why(results, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(results, out)
    record = next(x for x in RecordStore(out).records() if x.method == "test-texture")
    (out / record.predictions[0]).unlink()
    rows = {r.label: r for r in photo_gains(out)}
    assert rows["test-texture"].why == "a saved prediction or ground truth is unreadable"
    assert rows["test-texture"].verdict == "-" and rows["majority"].verdict == "no"
    md = photo_gain_markdown(list(rows.values()))
    assert "#### shapes / val" in md
    assert "| test-texture | | | | | a saved prediction or ground truth is unreadable |" in md


def test_images_of_other_sizes_or_classes_are_not_tested(results, tmp_path):
    import shutil

    from bench.datasets.decoding import read_index_mask
    from bench.files import write_png_atomic

    out = tmp_path / "copy"
    shutil.copytree(results, out)
    texture = next(x for x in RecordStore(out).records() if x.method == "test-texture")
    first = out / texture.predictions[0]
    write_png_atomic(first, read_index_mask(first)[:-1])  # one prediction a row short
    majority = next(x for x in RecordStore(out).records() if x.method == "majority")
    other = out / majority.predictions[0]
    write_png_atomic(other, np.full_like(read_index_mask(other), 9))  # class 9 of 6
    rows = {r.label: r for r in photo_gains(out)}
    assert rows["test-texture"].why == "images of different sizes (no one mode map)"
    assert rows["majority"].why == "predictions outside the 6 classes"
    assert rows["location-prior"].verdict == "no" and rows["location-prior"].p_holm == 1.0  # tested alone


def test_the_script_prints_and_writes_the_tables(results, tmp_path):
    md = tmp_path / "gain.md"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "photo_gain.py"), str(results), "--md", str(md)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "| location-prior |" in proc.stdout and md.read_text(encoding="utf-8").strip() == proc.stdout.strip()
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "photo_gain.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no such results folder" in bad.stderr


def test_the_leaderboard_has_a_reads_image_column(results):
    import pandas as pd

    from bench.report import build_report

    paths = build_report(results)
    df = pd.read_csv(paths["leaderboard.csv"]).set_index("label")
    assert df["reads_image"].to_dict() == {"test-texture": "yes", "majority": "no", "location-prior": "no"}
    assert df.loc["test-texture", "photo_gain"] > 0 and df.loc["test-texture", "p_reads_image_holm"] < 0.05
    assert df.loc["majority", "photo_gain"] == 0
    md = paths["leaderboard.md"].read_text(encoding="utf-8")
    header = next(line for line in md.splitlines() if line.startswith("|   rank"))
    assert header.rstrip(" |").endswith("reads image")
    row = next(line for line in md.splitlines() if "| test-texture " in line)
    assert row.rstrip(" |").endswith("yes")
    assert "reads image: the same test against the row's own mode map" in md and "over the 3 row(s) tested" in md
    html = paths["report.html"].read_text(encoding="utf-8")
    assert ">reads image</th>" in html and "over its own mode map, p = " in html


def test_a_row_of_several_seeds_reads_the_image_only_if_every_seed_does(tmp_path):
    """Two seeds of a row: by default the row's figures are its weakest seed's (largest p);
    with every_seed one row a seed, labelled by seed; Holm over the rows tested either way."""
    import shutil

    suite = Suite("t", "", "shapes", [SuiteJob("location-prior"), SuiteJob("test-texture")], Path("t.yaml"))
    assert Runner(tmp_path, progress=False).run(plan_jobs(suite, None, seeds=(0, 1)))["ok"] == 4
    rows = {r.label: r for r in photo_gains(tmp_path, every_seed=True)}
    assert set(rows) == {"test-texture (seed 0)", "test-texture (seed 1)", "location-prior (seed 0)",
                         "location-prior (seed 1)"}
    seed0, seed1 = rows["test-texture (seed 0)"], rows["test-texture (seed 1)"]
    assert seed1.gain == pytest.approx(seed0.gain) and seed0.verdict == "reads the image"  # the method has no randomness
    assert seed0.p_holm == pytest.approx(min(1.0, 4 * min(r.p for r in rows.values())))  # Holm over the four
    default = {r.label: r for r in photo_gains(tmp_path)}
    assert set(default) == {"test-texture (weakest of 2 seeds: seed 0)", "location-prior (weakest of 2 seeds: seed 0)"}
    texture = default["test-texture (weakest of 2 seeds: seed 0)"]
    assert texture.gain == pytest.approx(seed0.gain) and texture.p_holm == pytest.approx(min(1.0, 2 * seed0.p))
    # seed 1 becomes the location prior's fixed map (its per-image data and predictions):
    # the row no longer reads the image, whatever seed 0 does
    records = {(r.method, r.seed): r for r in RecordStore(tmp_path).records()}
    prior, texture = records[("location-prior", 1)], records[("test-texture", 1)]
    shutil.copyfile(tmp_path / prior.per_image, tmp_path / texture.per_image)
    for src, dst in zip(sorted(prior.predictions), sorted(texture.predictions)):
        shutil.copyfile(tmp_path / src, tmp_path / dst)
    weak = {r.label.split(" (")[0]: r for r in photo_gains(tmp_path)}["test-texture"]
    assert weak.label == "test-texture (weakest of 2 seeds: seed 1)" and weak.verdict == "no"
    md = tmp_path / "gain.md"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "photo_gain.py"), str(tmp_path), "--every-seed",
                           "--md", str(md)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "| test-texture (seed 1) |" in md.read_text(encoding="utf-8")


def test_seed_rows_are_named_by_job_where_seeds_repeat_or_are_missing():
    from types import SimpleNamespace

    from bench.report.aggregate import Group
    from bench.report.photo_gain import _seed_label, _seed_records

    def group(*seeds):
        ok = [SimpleNamespace(seed=s, job_id=f"m-{i}") for i, s in enumerate(seeds)]
        return Group("d", "val", "m", {}, ok=ok, label="m")

    assert [which for _, which in _seed_records(group(0, 1))] == ["seed 0", "seed 1"]
    assert [which for _, which in _seed_records(group(0, 0))] == ["m-0", "m-1"]  # two devices
    assert [which for _, which in _seed_records(group(None, 1))] == ["m-0", "m-1"]
    assert [which for _, which in _seed_records(group(3))] == [""]
    assert [_seed_label("m", which) for _, which in _seed_records(group(0, 0))] == ["m (m-0)", "m (m-1)"]
    assert _seed_label("m", "") == "m"


def test_the_weakest_seed_is_one_that_does_not_gain_before_the_least_significant():
    from bench.report.photo_gain import PhotoGain, _row_gain

    def seed(n, gain, p):
        return PhotoGain("d", "val", f"m (seed {n})", gain=gain, p=p, seed=f"seed {n}")

    # seed 1 is significantly worse than its own mode map: the row does not read the image
    assert _row_gain([seed(0, 0.05, 0.001), seed(1, -0.03, 0.001), seed(2, 0.04, 0.01)], "m").label \
        == "m (weakest of 3 seeds: seed 1)"
    assert _row_gain([seed(0, 0.05, 0.001), seed(1, 0.03, 0.2), seed(2, 0.04, 0.01)], "m").label \
        == "m (weakest of 3 seeds: seed 1)"
    assert _row_gain([seed(0, 0.05, 0.001), seed(1, 0.03, 0.001)], "m").label == "m (weakest of 2 seeds: seed 0)"
    failed = PhotoGain("d", "val", "m (seed 1)", why="no per-image data")
    assert _row_gain([seed(0, 0.05, 0.001), failed], "m").why == "m (seed 1): no per-image data"
