"""``python -m bench run --workers N``: jobs in N worker processes give the records and the
leaderboard of a serial run, each worker with its share of the threads; a worker that dies
fails its own job only and is replaced; claims held by other runs are respected."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report import build_report
from bench.run import Runner, plan_jobs
from bench.run.processes import run_with_workers, threads_per_worker
from bench.store import RecordStore
from bench.suites import Suite, SuiteJob, load_suite
from conftest import read_records

import executor_methods  # noqa: F401  (registers the test-* methods in this process)

REPO = Path(__file__).resolve().parent.parent

SUITE_YAML = """\
description: three fast methods on the synthetic data
dataset: shapes
jobs:
  - method: majority
  - method: sobel
    settings: {max_train_images: 8}
  - method: laplacian
    settings: {max_train_images: 8}
"""
METRIC_COLUMNS = ["miou", "pixel_acc", "mean_acc", "fwiou", "bf"]
#: what may differ between two runs of the same job: when and where it ran, how fast, how
RUN_FIELDS = {"started", "finished", "host", "fit_time_s", "predict_time_per_image_s", "images_per_s",
              "device_name", "command", "extra"}
#: what a worker adds to ``extra`` (the rest of it, such as regions per image, must match)
WORKER_EXTRA = {"workers", "threads"}


def _leaderboard(out: Path) -> pd.DataFrame:
    build_report(out)
    df = pd.read_csv(out / "leaderboard.csv")
    return df.set_index("job_ids")[["method", "status", *METRIC_COLUMNS]].sort_index()


def test_workers_write_the_records_and_leaderboard_of_a_serial_run(tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE_YAML)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert Runner(serial, progress=False).run(plan_jobs(load_suite(str(suite)), None))["ok"] == 3
    args = ["run", "--suite", str(suite), "--out", str(parallel), "--no-progress", "--workers", "2"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "3 done, 0 failed" in out.out and "2 job(s) at a time" in out.out

    pd.testing.assert_frame_equal(_leaderboard(parallel), _leaderboard(serial))
    by_id = {r["job_id"]: r for r in read_records(serial)}
    records = read_records(parallel)
    assert {r["job_id"] for r in records} == set(by_id)
    for rec in records:
        assert {k: v for k, v in rec.items() if k not in RUN_FIELDS} == \
            {k: v for k, v in by_id[rec["job_id"]].items() if k not in RUN_FIELDS}
        assert rec["extra"]["workers"] == 2 and rec["extra"]["threads"] == threads_per_worker(2)
        assert {k: v for k, v in rec["extra"].items() if k not in WORKER_EXTRA} == by_id[rec["job_id"]]["extra"]
        assert "workers" not in by_id[rec["job_id"]]["extra"]
        for p in rec["predictions"]:  # written by the worker, into the same folder
            assert (parallel / p).is_file()
    assert "were measured while other jobs shared the machine" in (parallel / "leaderboard.md").read_text()
    assert "shared the machine" not in (serial / "leaderboard.md").read_text()

    # a rerun skips every job (no worker started); --force redoes the ones asked for
    before = read_records(parallel)
    assert main(args) == 0
    assert "0 done, 0 failed, 3 already done" in capsys.readouterr().out
    assert read_records(parallel) == before
    assert main([*args, "--force", "--only", "majority"]) == 0
    assert "1 done, 0 failed, 0 already done" in capsys.readouterr().out


def test_each_worker_runs_with_its_share_of_the_threads_in_its_own_process(tmp_path):
    suite = Suite("threads", "", "shapes", [SuiteJob("test-report-threads", {"marker": str(i)}) for i in range(4)],
                  Path("threads.yaml"))
    out = tmp_path / "out"
    counts = run_with_workers(Runner(out, progress=False), plan_jobs(suite, None), workers=2, threads=3,
                              setup_modules=["executor_methods"])
    assert counts == {"ok": 4, "failed": 0, "skipped": 0, "busy": 0}
    recs = read_records(out)
    assert {r["extra"]["torch_threads"] for r in recs} == {3}
    pids = {r["extra"]["pid"] for r in recs}
    assert len(pids) == 2  # two workers, each started once and given every job it ran


def test_networks_are_handed_out_first_so_short_jobs_fill_the_end(tmp_path):
    suite = Suite("mixed", "", "shapes", [
        SuiteJob("majority"),
        # a DataLoader worker inside a job's worker: job workers must be able to have children
        SuiteJob("segnet-basic", {"width": 0.0625, "epochs": 1, "batch_size": 4, "crop": [32, 32], "num_workers": 1}),
        SuiteJob("sobel", {"max_train_images": 4}),
    ], Path("mixed.yaml"))
    log: list[str] = []
    out = tmp_path / "out"
    counts = run_with_workers(Runner(out, progress=False, on_event=log.append), plan_jobs(suite, None), workers=1)
    assert counts["ok"] == 3, [r["error"] for r in read_records(out) if r["status"] != "ok"]
    started = [line.split()[0] for line in log if ": started (worker" in line]
    assert started == ["segnet-basic", "majority", "sobel"]


def test_a_worker_that_dies_fails_its_own_job_and_is_replaced(tmp_path):
    marker = tmp_path / "always.txt"
    suite = Suite("kills", "", "shapes", [
        SuiteJob("test-ray-kill-always", {"marker": str(marker)}),
        SuiteJob("majority"),
        SuiteJob("sobel", {"max_train_images": 4}),
    ], Path("kills.yaml"))
    out = tmp_path / "out"
    # one worker: the jobs after the killed one can only run if the worker was replaced
    counts = run_with_workers(Runner(out, progress=False), plan_jobs(suite, None), workers=1,
                              setup_modules=["executor_methods"])
    assert counts == {"ok": 2, "failed": 1, "skipped": 0, "busy": 0}
    recs = {r["method"]: r for r in read_records(out)}
    dead = recs["test-ray-kill-always"]
    assert len(marker.read_text().splitlines()) == 1  # not retried
    assert dead["status"] == "failed" and dead["miou"] is None
    assert dead["error"].startswith("WorkerDied: the worker process running this job died (killed by SIGKILL")
    assert "\n" not in dead["error"] and dead["command"]
    assert recs["majority"]["status"] == "ok" and recs["sobel"]["status"] == "ok"
    # every claim was released: another run can take each job now
    store = RecordStore(out)
    for rec in recs.values():
        claim = store.claim(rec["job_id"])
        assert claim is not None
        claim.release()


def test_a_worker_found_dead_before_its_job_is_replaced_and_the_job_runs(tmp_path, monkeypatch):
    from bench.run import processes

    real, started = processes._Pool._start, []

    def start(pool):
        worker = real(pool)
        started.append(worker)
        if len(started) == 1:  # the first worker dies while idle, before it is sent a job
            worker.process.kill()
            worker.process.join()
        return worker

    monkeypatch.setattr(processes._Pool, "_start", start)
    suite = Suite("one", "", "shapes", [SuiteJob("majority")], Path("one.yaml"))
    out = tmp_path / "out"
    assert run_with_workers(Runner(out, progress=False), plan_jobs(suite, None), workers=1)["ok"] == 1
    assert len(started) == 2 and [r["status"] for r in read_records(out)] == ["ok"]


def test_a_job_claimed_by_a_live_run_is_left_to_it(tmp_path):
    suite = Suite("two", "", "shapes", [SuiteJob("majority"), SuiteJob("sobel", {"max_train_images": 4})],
                  Path("two.yaml"))
    jobs = plan_jobs(suite, None)
    out = tmp_path / "out"
    runner = Runner(out, progress=False)
    runner.store.open()
    with RecordStore(out).claim(jobs[1].job_id):  # as another live run would
        counts = run_with_workers(runner, jobs, workers=2)
    assert counts == {"ok": 1, "failed": 0, "skipped": 0, "busy": 1}
    assert [r["method"] for r in read_records(out)] == ["majority"]


def test_a_killed_driver_takes_its_workers_with_it(tmp_path):
    """Killed (no clean-up in the driver), its busy worker exits too: the driver's claim is
    gone then, and a worker running on could collide with another run taking the job."""
    settings = json.dumps({"width": 0.0625, "epochs": 200, "batch_size": 4, "crop": [32, 32]})
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "bench", "run", "--method", "segnet-basic", "--settings", settings,
           "--dataset", "shapes", "--workers", "2", "--out", str(tmp_path / "out"), "--no-progress"]
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        worker = None
        for line in driver.stdout:
            found = re.search(r": started \(worker (\d+)\)", line)
            if found:
                worker = int(found.group(1))
                break
        assert worker is not None, "the driver never started a job"
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 60  # a bound on waiting, not a speed assertion
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker)
    finally:
        driver.kill()
        driver.wait()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("extra, fragment", [
    (["--workers", "0"], "--workers must be 1 or more"),
    (["--workers", "2", "--executor", "ray"], "--workers: only used with the local executor"),
])
def test_bad_workers_options_are_one_line(tmp_path, capsys, extra, fragment):
    assert main(["run", "--suite", "smoke", "--out", str(tmp_path / "o"), "--no-progress", *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert fragment in err[-1] and "Traceback" not in "\n".join(err)


def test_threads_per_worker_is_an_even_share_of_at_least_one():
    assert threads_per_worker(2, cpus=16) == 8
    assert threads_per_worker(3, cpus=16) == 5
    assert threads_per_worker(4, cpus=2) == 1


def test_jobs_that_share_a_fit_do_not_fit_side_by_side(tmp_path):
    """Two jobs of one fit (here: two evaluation splits) and two free workers: the second waits
    for the first and loads its saved fit instead of fitting the same thing beside it."""
    suite = Suite("test", "", "shapes", [SuiteJob("sobel", {"max_train_images": 8})], Path("test.yaml"))
    val_job, test_job = plan_jobs(suite, None)[0], plan_jobs(suite, None, eval_split="test")[0]
    counts = run_with_workers(Runner(tmp_path, progress=False), [val_job, test_job], workers=2)
    assert counts["ok"] == 2
    reused = [r["extra"].get("fit_reused_from") for r in read_records(tmp_path)]
    assert reused == [None, val_job.job_id]
