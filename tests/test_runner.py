"""The runner: records with every field, failures recorded, reruns skip, kills lose nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.method import Method, method_class, register_method
from conftest import read_records
from bench.run import Job, Runner, RunError, plan_jobs
from bench.run.outputs import check_output_dir
from bench.suites import Suite, SuiteJob

REPO = Path(__file__).resolve().parents[1]


@register_method("test-crash-in-fit")
class CrashInFit(Method):
    """Raises in fit: stands for any method that breaks."""

    def _fit(self, train, val):
        raise RuntimeError("deliberate failure\nsecond line")

    def predict(self, image):
        return np.zeros(image.shape[:2], np.int32)


@register_method("test-wrong-size")
class WrongSize(Method):
    """Returns a label map of the wrong size."""

    def _fit(self, train, val):
        self.info = train.info

    def predict(self, image):
        return np.zeros((3, 3), np.int32)


def _suite(*methods):
    return Suite("test", "", "shapes", [SuiteJob(m) for m in methods], Path("test.yaml"))


REQUIRED_FIELDS = {
    "job_id", "suite", "method", "method_version", "kind", "dataset", "eval_split", "settings", "seed", "status",
    "miou", "pixel_acc", "mean_acc", "fwiou", "bf", "iou", "class_names", "miou_convention",
    "miou_by_convention", "n_train", "n_eval", "fit_time_s", "predict_time_per_image_s",
    "images_per_s", "params", "device", "device_name", "versions", "git_commit", "command", "predictions",
    "per_image",
}


def test_a_job_record_has_every_field_and_real_numbers(tmp_path):
    jobs = plan_jobs(_suite("majority"), None)
    counts = Runner(tmp_path, progress=False).run(jobs)
    assert counts == {"ok": 1, "failed": 0, "skipped": 0, "busy": 0}
    (rec,) = read_records(tmp_path)
    assert REQUIRED_FIELDS <= set(rec)
    assert rec["status"] == "ok" and rec["kind"] == "classical"
    assert rec["method_version"] == method_class("majority").version
    assert 0 < rec["miou"] < 1 and 0 < rec["pixel_acc"] <= 1
    assert len(rec["iou"]) == len(rec["class_names"])
    assert set(rec["miou_by_convention"]) == {"mmseg", "smp", "per-image"}
    assert rec["images_per_s"] > 0 and rec["fit_time_s"] >= 0
    assert "torch" in rec["versions"] and rec["device_name"].startswith("cpu")
    opencv = rec["versions"]["opencv"]  # the version of whichever wheel provides cv2, and its name
    assert opencv.startswith(cv2.__version__) and opencv.endswith(" (opencv-contrib-python-headless)")
    assert "--only majority" in rec["command"] and "--seeds 0" in rec["command"]
    for p in rec["predictions"]:
        assert (tmp_path / p).is_file()


def test_each_job_keeps_every_images_matrix_and_its_worst_predictions(tmp_path, monkeypatch):
    """per_image/<job>.npz holds each evaluated image's matrix and BF (their pooled figures are
    the record's), the CSV each image's mIoU and pixel accuracy; the job saved the predictions
    (and sample images) of the first images, of the shared sample and of its 4 worst images."""
    import pandas as pd

    from bench.datasets import get_dataset
    from bench.metrics import summarize
    from bench.per_image import read_per_image
    from bench.run.outputs import N_SAVED_PREDICTIONS, sample_ids

    monkeypatch.setattr("bench.run.outputs.SAMPLE_ALL_UP_TO", 4)  # shapes val: a sample, not the whole split
    Runner(tmp_path, progress=False).run(plan_jobs(_suite("majority"), None))
    (rec,) = read_records(tmp_path)
    assert rec["per_image"] == f"per_image/{rec['job_id']}.npz"
    data = read_per_image(tmp_path / rec["per_image"])
    ids = list(get_dataset("shapes").split("val").ids)
    assert data.ids == ids and data.matrices.dtype == np.uint32
    pooled = summarize(data.matrices.sum(0))
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert pooled[key] == pytest.approx(rec[key], rel=1e-12), key
    assert np.nanmean(data.bf) == pytest.approx(rec["bf"])
    csv = pd.read_csv(tmp_path / "per_image" / f"{rec['job_id']}.csv")
    assert list(csv.columns) == ["id", "miou", "pixel_acc", "bf"] and list(csv["id"]) == ids
    saved = {Path(p).stem for p in rec["predictions"]}
    assert set(ids[:N_SAVED_PREDICTIONS]) | set(sample_ids(ids)) <= saved
    fourth = np.sort(csv["miou"])[3]
    worst = csv[csv["miou"] <= fourth + 1e-12]["id"]
    assert len(set(worst) & saved) >= 4 and (csv[~csv["id"].isin(saved)]["miou"] >= fourth - 1e-12).all()
    samples = tmp_path / "samples" / "shapes" / "val"
    for sid in saved:
        assert (samples / f"{sid}_image.png").is_file() and (samples / f"{sid}_gt.png").is_file()
    assert len(saved) < len(ids)


def test_a_small_split_has_every_prediction_and_image_saved(tmp_path):
    """Up to SAMPLE_ALL_UP_TO images, the shared sample is the whole split (exact "disagree most")."""
    from bench.datasets import get_dataset
    from bench.run.outputs import SAMPLE_ALL_UP_TO

    ids = list(get_dataset("shapes").split("val").ids)
    assert len(ids) <= SAMPLE_ALL_UP_TO
    Runner(tmp_path, progress=False).run(plan_jobs(_suite("majority"), None))
    (rec,) = read_records(tmp_path)
    assert sorted(Path(p).stem for p in rec["predictions"]) == sorted(ids)
    samples = tmp_path / "samples" / "shapes" / "val"
    assert all((samples / f"{sid}_image.png").is_file() and (samples / f"{sid}_gt.png").is_file() for sid in ids)


def test_majority_predictor_iou_matches_the_class_frequency(tmp_path):
    """A majority predictor's pixel accuracy is the eval frequency of the majority class."""
    from bench.datasets import get_dataset

    Runner(tmp_path, progress=False).run(plan_jobs(_suite("majority"), None))
    (rec,) = read_records(tmp_path)
    ds = get_dataset("shapes")
    train_counts = sum(np.bincount(s.label.ravel(), minlength=ds.info.num_classes) for s in ds.split("train"))
    majority = int(np.argmax(train_counts[: ds.info.num_classes]))
    labels = np.concatenate([s.label.ravel() for s in ds.split("val")])
    labels = labels[labels != ds.info.ignore_index] if ds.info.ignore_index is not None else labels
    assert rec["pixel_acc"] == pytest.approx(np.mean(labels == majority))


def test_a_crashing_job_is_recorded_and_the_suite_goes_on(tmp_path):
    jobs = plan_jobs(_suite("test-crash-in-fit", "test-wrong-size", "majority"), None)
    counts = Runner(tmp_path, progress=False).run(jobs)
    assert counts == {"ok": 1, "failed": 2, "skipped": 0, "busy": 0}
    recs = {r["method"]: r for r in read_records(tmp_path)}
    crash = recs["test-crash-in-fit"]
    assert crash["status"] == "failed"
    assert crash["error"] == "RuntimeError: deliberate failure second line"
    assert "Traceback" in crash["traceback"] and crash["miou"] is None
    assert "returned a (3, 3) map" in recs["test-wrong-size"]["error"]
    assert recs["majority"]["status"] == "ok"


def test_rerun_skips_done_jobs_retries_failed_and_force_redoes(tmp_path):
    jobs = plan_jobs(_suite("majority", "test-crash-in-fit"), None)
    Runner(tmp_path, progress=False).run(jobs)
    first = {r["method"]: r for r in read_records(tmp_path)}
    counts = Runner(tmp_path, progress=False).run(jobs)
    assert counts == {"ok": 0, "failed": 1, "skipped": 1, "busy": 0}
    again = {r["method"]: r for r in read_records(tmp_path)}
    assert again["majority"] == first["majority"]
    assert len(read_records(tmp_path)) == 2
    counts = Runner(tmp_path, force=True, progress=False).run(jobs)
    assert counts == {"ok": 1, "failed": 1, "skipped": 0, "busy": 0}


def test_job_ids_depend_on_what_defines_the_job():
    base = Job("s", "majority", "shapes")
    assert base.job_id == Job("other-suite", "majority", "shapes").job_id  # the suite name is only a label
    for changed in (Job("s", "majority", "shapes", seed=1), Job("s", "majority", "shapes", eval_split="test"),
                    Job("s", "majority", "camvid", data_root="/x"), Job("s", "majority", "shapes", device="cuda"),
                    Job("s", "majority", "shapes", miou_convention="smp")):
        assert changed.job_id != base.job_id
    unet = Job("s", "unet", "shapes", settings={"epochs": 2, "num_workers": 0})
    assert Job("s", "unet", "shapes", settings={"epochs": 3, "num_workers": 0}).job_id != unet.job_id
    # a runtime setting (workers) does not change the result, so not the id: no rerun when it changes
    assert Job("s", "unet", "shapes", settings={"epochs": 2, "num_workers": 2}).job_id == unet.job_id


def test_plan_rejects_unknown_methods_settings_and_only(tmp_path):
    from bench.method import MethodError

    with pytest.raises(MethodError, match="unknown method 'nope'"):
        plan_jobs(_suite("nope"), None)
    bad = Suite("t", "", "shapes", [SuiteJob("majority", {"colour": 1})], Path("t.yaml"))
    with pytest.raises(MethodError, match="unknown setting"):
        plan_jobs(bad, None)
    with pytest.raises(RunError, match="not in suite"):
        plan_jobs(_suite("majority"), None, only=["sobel"])
    jobs = plan_jobs(_suite("majority"), None, seeds=[0, 1, 2])
    assert [j.seed for j in jobs] == [0, 1, 2]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_folder_fails_before_any_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(RunError, match="cannot write results"):
            check_output_dir(ro)
    finally:
        ro.chmod(0o700)


def test_output_path_that_is_a_file_fails_before_any_work(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunError, match="cannot write results"):
        check_output_dir(f / "sub")


def _cli(*args, cwd, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_killed_run_resumes_without_redoing_finished_jobs(tmp_path):
    """SIGKILL part way, run again: every job ends with exactly one record, finished ones untouched."""
    out = tmp_path / "out"
    seeds = ",".join(str(s) for s in range(8))
    args = ("run", "--suite", "smoke", "--only", "majority", "--dataset", "shapes", "--seeds", seeds, "--out", str(out),
            "--no-progress")
    proc = _cli(*args, cwd=tmp_path)
    records = out
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and len(read_records(records)) >= 2:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = {r["job_id"]: r for r in read_records(records)}
    assert killed and 2 <= len(before) < 8, "the run should have been killed part way"

    proc = _cli(*args, cwd=tmp_path)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    after = read_records(records)
    assert len(after) == 8 and len({r["job_id"] for r in after}) == 8
    assert sorted(r["seed"] for r in after) == list(range(8))
    for r in after:
        if r["job_id"] in before:
            assert r == before[r["job_id"]]  # not redone
    assert f"{len(before)} already done" in stdout
    assert (out / "leaderboard.md").exists()


def test_one_fit_serves_every_evaluation_split(tmp_path):
    """Jobs that differ only in the evaluation split share one fit: the second loads the first's
    saved state and scores exactly what a fresh fit would (sobel is deterministic)."""
    suite = Suite("test", "", "shapes", [SuiteJob("sobel", {"max_train_images": 8})], Path("test.yaml"))
    val_job, test_job = plan_jobs(suite, None)[0], plan_jobs(suite, None, eval_split="test")[0]
    assert val_job.fit_id == test_job.fit_id and val_job.job_id != test_job.job_id
    Runner(tmp_path / "shared", progress=False).run([val_job, test_job])
    recs = {r["eval_split"]: r for r in read_records(tmp_path / "shared")}
    assert "fit_reused_from" not in recs["val"]["extra"]
    assert recs["test"]["extra"]["fit_reused_from"] == val_job.job_id
    assert recs["test"]["fit_time_s"] == recs["val"]["fit_time_s"]
    assert recs["test"]["extra"]["train_regions_per_image"] == recs["val"]["extra"]["train_regions_per_image"]
    Runner(tmp_path / "alone", progress=False).run([test_job])  # a fit of its own
    (alone,) = read_records(tmp_path / "alone")
    assert alone["iou"] == recs["test"]["iou"] and alone["miou"] == recs["test"]["miou"]


def test_a_forced_rerun_fits_again(tmp_path):
    """--force redoes the fit too, not only the scoring: its record has its own fit."""
    suite = Suite("test", "", "shapes", [SuiteJob("sobel", {"max_train_images": 4})], Path("test.yaml"))
    val_job, test_job = plan_jobs(suite, None)[0], plan_jobs(suite, None, eval_split="test")[0]
    Runner(tmp_path, progress=False).run([val_job])
    Runner(tmp_path, force=True, progress=False).run([test_job])
    rec = next(r for r in read_records(tmp_path) if r["eval_split"] == "test")
    assert rec["status"] == "ok" and "fit_reused_from" not in rec["extra"]
    assert json.loads((tmp_path / "fits" / f"{test_job.fit_id}.json").read_text())["job_id"] == test_job.job_id


def test_a_lost_shared_fit_is_fitted_again(tmp_path):
    suite = Suite("test", "", "shapes", [SuiteJob("majority")], Path("test.yaml"))
    val_job, test_job = plan_jobs(suite, None)[0], plan_jobs(suite, None, eval_split="test")[0]
    Runner(tmp_path, progress=False).run([val_job])
    for f in (tmp_path / "runs" / val_job.job_id).iterdir():  # the saved state is gone
        f.unlink()
    Runner(tmp_path, progress=False).run([test_job])
    rec = next(r for r in read_records(tmp_path) if r["eval_split"] == "test")
    assert rec["status"] == "ok" and "fit_reused_from" not in rec["extra"]
