"""Faults and bad input: kills at random points, a full or read-only disk, corrupt samples,
malformed records and suite files. Each test asserts what a user sees (records, leaderboard,
one clear error line), never how long anything took."""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_camvid, read_records

from bench.cli import build_parser, main
from bench.datasets import DatasetError, InMemorySplit, Sample, SkippingSplit
from bench.datasets.types import DatasetInfo
from bench.method import Method, register_method
from bench.record import Record, RecordsError
from bench.run import Job, RunError, Runner, plan_jobs
from bench.run.outputs import MIN_FREE_MB, check_output_dir, min_free_mb
from bench.store import RecordStore, RecordsWriteError, read_jsonl
from bench.suites import Suite, SuiteJob

REPO = Path(__file__).resolve().parents[1]

#: methods whose fit was called, in order (the spies below append to it)
FIT_CALLS: list[dict] = []


@register_method("faults-spy")
class FitSpy(Method):
    """Reads every training sample in fit and remembers which ids it saw; predicts class 0."""

    def _fit(self, train, val):
        ids = [s.id for s in train]
        FIT_CALLS.append({"method": self.name, "ids": ids, "len": len(train), "split_ids": list(train.ids),
                          "resume_interrupted": self.context.resume})
        self.info = train.info

    def predict(self, image):
        return np.zeros(image.shape[:2], np.int32)


@register_method("faults-no-fit")
class NoFit(Method):
    """Never looks at the training split (stands for a method unaffected by a bad training file)."""

    def _fit(self, train, val):
        FIT_CALLS.append({"method": self.name})
        self.info = train.info

    def predict(self, image):
        return np.zeros(image.shape[:2], np.int32)


def _env(**extra) -> dict:
    # one thread per library: the runs below must give bit-identical numbers run after run
    return dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", **extra)


def _write_suite(path: Path, jobs: list[dict], dataset: str | None = None) -> Path:
    import yaml

    doc = {"description": "faults test", "jobs": jobs}
    if dataset:
        doc["dataset"] = dataset
    path.write_text(yaml.safe_dump(doc))
    return path


# ---------------------------------------------------------------------------------------
# 1. kill -9 at random points, rerun, finish: nothing torn, nothing twice, same leaderboard
# ---------------------------------------------------------------------------------------
KILL_SUITE = [
    {"method": "majority"},
    {"method": "sobel", "settings": {"max_train_images": 4, "n_estimators": 20}},
    # no resume setting: the rerun (the runner) continues the killed training from last.pt
    {"method": "unet", "settings": {"width": 0.125, "scale": 0.25, "epochs": 4, "batch_size": 16}},
]
N_RANDOM_KILLS = 3


def _start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_records_intact(out: Path) -> list[dict]:
    """Every file of the records folder is one whole JSON record named by its job_id; all ok."""
    folder = out / "records"
    if not folder.exists():
        return []
    recs = []
    for path in sorted(folder.glob("*.json")):
        text = path.read_bytes()
        assert text.endswith(b"\n"), f"{path} is not whole"
        rec = json.loads(text)
        assert rec["job_id"] == path.stem
        recs.append(rec)
    assert sorted(r["job_id"] for r in read_records(out)) == [r["job_id"] for r in recs]
    for r in recs:
        assert r["status"] == "ok", r.get("traceback")
    return recs


def _leaderboard_rows(out: Path) -> dict[str, dict]:
    with (out / "leaderboard.csv").open(newline="") as f:
        return {row["job_ids"]: row for row in csv.DictReader(f)}


def _unet_run_dir(out: Path) -> Path | None:
    found = sorted((out / "runs").glob("unet-*")) if (out / "runs").is_dir() else []
    return found[0] if found else None


def _has_checkpoint(out: Path) -> bool:
    """The unet job's training has written last.pt (it is deleted once the training is over)."""
    run_dir = _unet_run_dir(out)
    return run_dir is not None and (run_dir / "last.pt").exists()


def test_kill9_at_random_points_then_rerun_gives_the_uninterrupted_leaderboard(tmp_path):
    suite = _write_suite(tmp_path / "killsuite.yaml", KILL_SUITE, dataset="shapes")

    def args(out):
        return ("run", "--suite", str(suite), "--out", str(out), "--no-progress")

    # the reference: one uninterrupted run
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    proc = _start(args(ref), tmp_path)
    _, err = proc.communicate(timeout=600)
    full_run_s = time.monotonic() - t0
    assert proc.returncode == 0, err
    ref_recs = {r["job_id"]: r for r in _check_records_intact(ref)}
    assert len(ref_recs) == len(KILL_SUITE)

    out = tmp_path / "out"
    records = out
    rng = random.Random(20240607)
    kills = []  # (what, was the process still running when killed)
    history_at_kill: list[dict] = []
    epoch_at_kill = 0

    # first a kill in the middle of training, as soon as the first epoch's checkpoint is written;
    # then kills at random points in the life of a run: import, planning, any job, the report
    for k in range(1 + N_RANDOM_KILLS):
        proc = _start(args(out), tmp_path)
        if k == 0:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline and not _has_checkpoint(out):
                time.sleep(0.01)
            what = "mid-training"
        else:
            delay = rng.uniform(0.15, 0.7) * full_run_s
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
            what = f"after {delay:.1f}s"
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills.append((what, alive))
        if alive:
            assert proc.returncode == -signal.SIGKILL
        recs = _check_records_intact(records)  # after every kill: whole lines, no duplicates
        assert len(recs) <= len(KILL_SUITE)
        if k == 0:
            assert alive, "the run ended before its training wrote a checkpoint"
            ckpt = torch.load(_unet_run_dir(out) / "last.pt", map_location="cpu", weights_only=True)  # whole
            epoch_at_kill = int(ckpt["epoch"])
            history_at_kill = ckpt["history"]
            assert 1 <= epoch_at_kill < KILL_SUITE[2]["settings"]["epochs"]
            assert {r["method"] for r in recs} == {"majority", "sobel"}

    # the last run: to the end
    proc = _start(args(out), tmp_path)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    final = {r["job_id"]: r for r in _check_records_intact(records)}
    assert set(final) == set(ref_recs), "every job of the suite has exactly one record"
    for job_id, r in final.items():
        want = ref_recs[job_id]
        assert r["miou"] == want["miou"], (r["method"], kills)
        assert r["pixel_acc"] == want["pixel_acc"] and r["iou"] == want["iou"], r["method"]

    # the leaderboard is the uninterrupted run's: same rows, same numbers
    got, want = _leaderboard_rows(out), _leaderboard_rows(ref)
    assert set(got) == set(want)
    for job_ids, row in got.items():
        for col in ("rank", "method", "miou", "pixel_acc", "mean_acc", "fwiou", "bf"):
            assert row[col] == want[job_ids][col], (col, row["method"])

    # the training killed after a checkpoint went on from there instead of starting over: the
    # epochs done before the kill keep their history rows (their timings would differ if redone)
    epochs = KILL_SUITE[2]["settings"]["epochs"]
    with (_unet_run_dir(out) / "history.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
    assert len(history_at_kill) == epoch_at_kill
    for row, before in zip(rows, history_at_kill):
        for col in ("train_loss", "val_miou", "train_time_s", "val_time_s"):
            assert float(row[col]) == before[col], (row["epoch"], col)


@pytest.mark.parametrize("flags, resumes", [((), True), (("--no-resume",), False), (("--force",), False)])
def test_the_runner_lets_interrupted_jobs_continue_unless_told_otherwise(tmp_path, flags, resumes):
    from bench.cli import main

    suite = _write_suite(tmp_path / "spy.yaml", [{"method": "faults-spy"}], dataset="shapes")
    FIT_CALLS.clear()
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--no-progress", *flags]) == 0
    assert [c["resume_interrupted"] for c in FIT_CALLS] == [resumes]


def test_checkpoint_write_is_atomic_and_a_torn_temp_file_does_not_stop_resume(tmp_path, monkeypatch):
    """The trainer (deep.engine) writes last.pt/best.pt to a temp file, fsyncs it and renames it: an interrupt
    in the middle of a write leaves the previous checkpoint whole, and resume works."""
    from torch import nn

    from bench.method import FitContext
    from deep.engine.checkpoint import load_checkpoint
    from deep.engine.config import TrainConfig
    from deep.engine.loop import train

    info = DatasetInfo("tiny", ("a", "b", "c"), np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]]), 255)
    rng = np.random.default_rng(0)
    samples = [Sample(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), rng.integers(0, 3, (12, 16)).astype(np.uint8),
                      f"s{i}") for i in range(6)]
    train_split, val_split = InMemorySplit(info, "train", samples[:4]), InMemorySplit(info, "val", samples[4:])

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))

    cfg = TrainConfig(epochs=3, batch_size=2, lr=1e-2, hflip=False, checkpoint_every_s=0)  # a checkpoint each epoch
    straight = train(model(), train_split, val_split, cfg, FitContext(run_dir=tmp_path / "straight", progress=False),
                     model_name="tiny")

    # an "interrupt" while the epoch-2 checkpoint is being written: half the bytes, then gone
    run = tmp_path / "killed"
    real_save = torch.save
    calls = {"n": 0}

    def torn_save(obj, f, *a, **kw):
        calls["n"] += 1
        if isinstance(obj, dict) and obj.get("epoch") == 2 and "optimizer" in obj:
            import io

            buf = io.BytesIO()
            real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            raise KeyboardInterrupt  # what SIGINT would raise here
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        train(model(), train_split, val_split, cfg, FitContext(run_dir=run, progress=False), model_name="tiny")
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(run / "last.pt", model_name="tiny", num_classes=3)["epoch"] == 1  # the old one, whole
    assert not list(run.glob(".*.tmp")), "the torn temp file is removed"

    # a torn temp file left by a SIGKILL (no cleanup possible) is ignored by resume
    (run / ".last.pt.999999.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    resumed = train(model(), train_split, val_split, cfg, FitContext(run_dir=run, resume=True, progress=False),
                    model_name="tiny")
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for key, value in straight.final_state.items():
        assert torch.equal(value, resumed.final_state[key]), key


def test_the_atomic_writer_fsyncs_before_the_rename(tmp_path, monkeypatch):
    import bench.files as files

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    files.write_atomic(tmp_path / "last.pt", lambda f: torch.save({"w": torch.ones(2)}, f))
    assert events[:3] == ["fsync", "replace", "fsync"]  # the file, the rename, the folder
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ---------------------------------------------------------------------------------------
# 2. read-only output folder, too little free space, ENOSPC while writing records
# ---------------------------------------------------------------------------------------
def _can_write(folder: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into: chmod, and for root (who ignores modes) chattr +i."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    immutable = False
    if _can_write(ro) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(ro)], capture_output=True, check=False).returncode == 0
    try:
        if _can_write(ro):
            pytest.skip("cannot make a read-only folder here (root without chattr +i)")
        yield ro
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], capture_output=True, check=False)
        ro.chmod(0o755)


def _tiny_suite_file(tmp_path: Path, *methods: str) -> Path:
    return _write_suite(tmp_path / "tiny.yaml", [{"method": m} for m in methods], dataset="shapes")


def test_read_only_output_folder_is_one_clear_error_before_any_work(tmp_path, read_only_dir, capsys):
    with pytest.raises(RunError, match=f"{read_only_dir}: cannot write results there"):
        check_output_dir(read_only_dir)
    FIT_CALLS.clear()
    rc = main(["run", "--suite", str(_tiny_suite_file(tmp_path, "faults-spy")), "--out", str(read_only_dir),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"segbench: error: {read_only_dir}: cannot write results there" in err and "Traceback" not in err
    assert FIT_CALLS == []  # nothing was fitted
    assert not (read_only_dir / "records").exists()


def test_too_little_free_space_is_one_clear_error_before_any_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    need = int(free_mb) + 10_000_000
    monkeypatch.setenv("SEGBENCH_MIN_FREE_MB", str(need))
    assert min_free_mb() == need
    with pytest.raises(RunError, match=rf"{out}: only [\d,]+ MB free on its file system, {need:,} MB needed"):
        check_output_dir(out)
    FIT_CALLS.clear()
    rc = main(["run", "--suite", str(_tiny_suite_file(tmp_path, "faults-spy")), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "MB free on its file system" in err and str(out) in err and "Traceback" not in err
    assert FIT_CALLS == [] and not (out / "records").exists()

    monkeypatch.setenv("SEGBENCH_MIN_FREE_MB", "0")  # off
    check_output_dir(out)
    monkeypatch.setenv("SEGBENCH_MIN_FREE_MB", "lots")
    with pytest.raises(RunError, match="SEGBENCH_MIN_FREE_MB must be a number"):
        check_output_dir(out)
    monkeypatch.delenv("SEGBENCH_MIN_FREE_MB")
    assert min_free_mb() == MIN_FREE_MB


@pytest.fixture
def records_tmp_on_dev_full(monkeypatch):
    """Make the temporary file of every record write a link to /dev/full: each write to it
    fails with ENOSPC, like a full disk, while everything else writes normally."""
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is not available")
    import bench.files as files_mod

    real_mkstemp = tempfile.mkstemp
    made = []

    def mkstemp(*a, prefix=None, dir=None, **kw):
        if Path(dir).name != "records":
            return real_mkstemp(*a, prefix=prefix, dir=dir, **kw)
        link = Path(dir) / f"{prefix}full-{len(made)}.tmp"
        link.symlink_to("/dev/full")
        made.append(link)
        return os.open(link, os.O_WRONLY), str(link)

    monkeypatch.setattr(files_mod.tempfile, "mkstemp", mkstemp)
    return made


def test_a_full_disk_while_writing_a_record_names_the_file_and_keeps_the_old_one(tmp_path, records_tmp_on_dev_full):
    store = RecordStore(tmp_path).open()
    path = tmp_path / "records" / "a.json"
    path.write_text('{"job_id": "a", "method": "m", "dataset": "d", "miou": 0.5}\n')
    before = path.read_bytes()
    with pytest.raises(RecordsWriteError) as ei:
        store.write(Record(job_id="a", method="m", dataset="d", miou=0.25))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: cannot write the record: ")
    assert os.strerror(errno.ENOSPC) in msg and "is the disk full?" in msg
    assert path.read_bytes() == before  # untouched
    assert records_tmp_on_dev_full and not any(p.is_symlink() or p.exists() for p in records_tmp_on_dev_full)
    assert os.path.exists("/dev/full")  # the link was removed, not its target


def test_a_full_disk_during_a_run_is_one_clear_line_not_a_traceback(tmp_path, records_tmp_on_dev_full, capsys):
    out = tmp_path / "out"
    rc = main(["run", "--suite", str(_tiny_suite_file(tmp_path, "majority")), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"segbench: error: {out / 'records'}/majority-" in err
    assert f".json: cannot write the record: {os.strerror(errno.ENOSPC)}" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------
# 3. a corrupt file in the middle of a split; --skip-bad-samples
# ---------------------------------------------------------------------------------------
def _camvid_with_bad_files(root: Path) -> tuple[Path, Path, Path]:
    """CamVid tree (train 5, val 3) with a truncated training image and a garbage val mask in
    the middle of their splits; returns (root, bad image, bad mask)."""
    make_camvid(root, splits={"train": 5, "val": 3}, size=(24, 32), seed=3)
    bad_image = root / "train" / "0001TP_train_002.png"
    data = bad_image.read_bytes()
    bad_image.write_bytes(data[: len(data) // 2])
    bad_mask = root / "valannot" / "0001TP_val_001.png"
    bad_mask.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    return root, bad_image, bad_mask


def _camvid_suite(*methods, **settings):
    return Suite("faults", "", "camvid", [SuiteJob(m, settings.get(m, {})) for m in methods], Path("faults.yaml"))


def test_a_corrupt_file_mid_split_fails_its_jobs_naming_it_and_the_others_finish(tmp_path):
    root, bad_image, bad_mask = _camvid_with_bad_files(tmp_path / "camvid")
    bad_mask.write_bytes((root / "valannot" / "0001TP_val_000.png").read_bytes())  # only the train image is bad here
    FIT_CALLS.clear()
    jobs = plan_jobs(_camvid_suite("majority", "faults-no-fit", "faults-spy"), "camvid", str(root))
    counts = Runner(tmp_path / "out", progress=False).run(jobs)
    assert counts == {"ok": 1, "failed": 2, "skipped": 0, "busy": 0}
    recs = {r["method"]: r for r in read_records(tmp_path / "out")}
    for m in ("majority", "faults-spy"):
        assert recs[m]["status"] == "failed"
        assert recs[m]["error"].startswith(f"DatasetError: {bad_image}: ")
        assert "truncated" in recs[m]["error"]
    assert recs["faults-no-fit"]["status"] == "ok" and recs["faults-no-fit"]["n_eval"] == 3


def test_skip_bad_samples_leaves_them_out_names_them_and_scores_the_rest(tmp_path):
    root, bad_image, bad_mask = _camvid_with_bad_files(tmp_path / "camvid")
    # the same data without the two bad samples: what a skipping run must score exactly like
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    for p in (clean / "train" / bad_image.name, clean / "trainannot" / bad_image.name,
              clean / "val" / bad_mask.name, clean / "valannot" / bad_mask.name):
        p.unlink()

    FIT_CALLS.clear()
    suite = _camvid_suite("majority", "faults-spy", "unet",
                          unet={"width": 0.125, "epochs": 1, "batch_size": 4})
    jobs = plan_jobs(suite, "camvid", str(root), skip_bad_samples=True)
    assert all(j.skip_bad_samples for j in jobs)
    out = tmp_path / "out"
    counts = Runner(out, progress=False).run(jobs)
    assert counts == {"ok": 3, "failed": 0, "skipped": 0, "busy": 0}, [r.get("error") for r in read_records(out)]
    recs = {r["method"]: r for r in read_records(out)}

    # methods' fit got the filtered split
    (spy,) = [c for c in FIT_CALLS if c["method"] == "faults-spy"]
    assert spy["len"] == 4 and "0001TP_train_002" not in spy["ids"] and spy["ids"] == spy["split_ids"]

    for m, r in recs.items():
        assert r["n_train"] == 4 and r["n_eval"] == 2, m
        extra = r["extra"]
        assert extra["skip_bad_samples"] is True and extra["skipped_samples"] == 2
        listed = {(x["split"], x["id"]): x["error"] for x in extra["skipped_sample_list"]}
        assert set(listed) == {("train", "0001TP_train_002"), ("val", "0001TP_val_001")}
        assert listed[("train", "0001TP_train_002")].startswith(str(bad_image))
        assert listed[("val", "0001TP_val_001")].startswith(str(bad_mask))
        assert "--skip-bad-samples" in r["command"]

    # the scores are those of the data without the bad samples
    ref_out = tmp_path / "ref"
    Runner(ref_out, progress=False).run(plan_jobs(_camvid_suite("majority"), "camvid", str(clean)))
    (ref,) = read_records(ref_out)
    assert recs["majority"]["miou"] == ref["miou"] and recs["majority"]["iou"] == ref["iou"]

    # the reproduce command asks for skipping again
    argv = shlex.split(recs["majority"]["command"])
    assert argv[:4] == ["python", "-m", "bench", "run"]
    assert build_parser().parse_args(argv[3:]).skip_bad_samples is True

    # the leaderboard says so: tagged rows, a count column, a warning, the files in the notes
    from bench.report import build_report

    build_report(out)
    md = (out / "leaderboard.md").read_text()
    assert "majority [--skip-bad-samples]" in md
    assert "skipped samples" in md and "Partial scores" in md
    assert str(bad_image) in md and str(bad_mask) in md
    with (out / "leaderboard.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {float(r["extra_skipped_samples"]) for r in rows} == {2.0}


def test_skipping_is_part_of_the_job_identity():
    base = Job("s", "majority", "shapes")
    skipping = Job("s", "majority", "shapes", skip_bad_samples=True)
    assert skipping.job_id != base.job_id
    assert "--skip-bad-samples" in skipping.command("out") and "--skip-bad-samples" not in base.command("out")
    # a record of the previous release (schema 1) gets the id today's plan gives its job
    old = {"schema": 1, "job_id": "majority-0123456789ab", "method": "majority", "dataset": "shapes", "seed": 0,
           "settings": {}, "device": "cpu", "eval_split": "val", "miou_convention": "mmseg",
           "extra": {"skip_bad_samples": True}}
    assert Record.from_dict(old).job_id == skipping.job_id
    assert Record.from_dict({**old, "extra": {}}).job_id == base.job_id


def test_the_cli_flag_reaches_the_jobs(tmp_path, capsys):
    root, bad_image, _ = _camvid_with_bad_files(tmp_path / "camvid")
    suite = _write_suite(tmp_path / "s.yaml", [{"method": "majority"}], dataset="camvid")
    out = tmp_path / "out"
    base = ["run", "--suite", str(suite), "--data-root", str(root), "--out", str(out), "--no-progress"]
    assert main(base) == 1  # without the flag the job fails, naming the file
    captured = capsys.readouterr()
    assert str(bad_image) in captured.out
    assert main(base + ["--skip-bad-samples"]) == 0
    captured = capsys.readouterr()
    recs = read_records(out)
    assert sorted(r["status"] for r in recs) == ["failed", "ok"]
    assert "[--skip-bad-samples]" in captured.out


def test_skipping_split_view():
    info = DatasetInfo("t", ("a", "b"), np.zeros((2, 3)), 255)

    class Flaky(InMemorySplit):
        def load(self, index):
            if self.samples[index].id in ("s1", "s3"):
                raise DatasetError(f"/data/{self.samples[index].id}.png: corrupt")
            return super().load(index)

    samples = [Sample(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), f"s{i}") for i in range(5)]
    view = SkippingSplit(Flaky(info, "train", samples))
    assert len(view) == 3 and view.ids == ["s0", "s2", "s4"] and [s.id for s in view] == view.ids
    assert view[-1].id == "s4" and view[1].id == "s2"
    assert [(s.index, s.id) for s in view.skipped] == [(1, "s1"), (3, "s3")]
    assert view.skipped[0].error == "/data/s1.png: corrupt" and view.info is info and view.name == "train"

    all_bad = [Sample(samples[0].image, samples[0].label, i) for i in ("s1", "s3")]
    with pytest.raises(DatasetError, match=r"none of the 2 samples of split 'val' can be read \(first: /data/s1.png"):
        SkippingSplit(Flaky(info, "val", all_bad))

    class Buggy(InMemorySplit):
        def load(self, index):
            raise ZeroDivisionError("a bug, not bad data")

    with pytest.raises(ZeroDivisionError):  # only DatasetError means "bad sample"
        SkippingSplit(Buggy(info, "train", samples))


# ---------------------------------------------------------------------------------------
# 5. malformed records and suite files: one line naming the file and the line
# ---------------------------------------------------------------------------------------
A_RECORD = b'{"job_id": "a", "method": "majority", "dataset": "shapes"}'


@pytest.mark.parametrize(
    "content, message",
    [
        (A_RECORD + b'\n{"job_id": "b", "miou": 0.', r"records.jsonl:2: not a JSON record"),  # torn last line
        (A_RECORD + b'\n\n{"job_id": "\xff"}\n', r"records.jsonl:3: not a JSON record \(bytes that are not UTF-8"),
        (b'{"job_id": 7}\n', r"records.jsonl:1: a record must be a JSON object with a job_id"),
        (b'{"miou": 0.5}\n', r"records.jsonl:1: a record must be a JSON object with a job_id"),
    ],
)
def test_malformed_records_name_the_line(tmp_path, content, message):
    path = tmp_path / "records.jsonl"
    path.write_bytes(content)
    with pytest.raises(RecordsError, match=message):
        read_jsonl(path)


def test_malformed_records_stop_run_and_report_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text(A_RECORD.decode() + '\n{"job_id": "b", "stat\n')
    FIT_CALLS.clear()
    rc = main(["run", "--suite", str(_tiny_suite_file(tmp_path, "faults-spy")), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and f"segbench: error: {out / 'records.jsonl'}:2: not a JSON record" in err
    assert "Traceback" not in err and FIT_CALLS == []
    assert main(["report", "--out", str(out)]) == 2
    assert f"{out / 'records.jsonl'}:2:" in capsys.readouterr().err


def test_malformed_suite_file_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\njobs:\n  - method: majority\n  - method: [unclosed\n")
    rc = main(["run", "--suite", str(bad), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"segbench: error: {bad}:" in err and "not valid YAML" in err
    line = int(err.split(f"{bad}:")[1].split(":")[0])
    assert line in (4, 5)  # the unclosed flow sequence (YAML reports where it noticed)
    bad.write_text("jobs:\n  - method: majority\n    setings: {}\n")
    assert main(["run", "--suite", str(bad), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "job 1 (majority): unknown key(s) setings" in capsys.readouterr().err
