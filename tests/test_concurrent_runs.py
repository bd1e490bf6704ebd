"""Several `bench run` processes writing into one results folder at once: no finished job is
lost, no job is recorded twice or torn, a live claim is respected and a dead one taken over,
and the leaderboard equals a one-process run's (issue 13)."""

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_records

REPO = Path(__file__).resolve().parents[1]
N_PROCESSES = 4
JOBS_EACH = 50
SUMMARY = re.compile(r"^(\d+) done, (\d+) failed, (\d+) already done [^\n]*?(?:, (\d+) run by another process[^\n]*)?$",
                     re.MULTILINE)

pytestmark = pytest.mark.slow


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "maj.yaml"
    path.write_text("description: the majority floor, many seeds\ndataset: shapes\njobs:\n  - method: majority\n")
    return path


def _start(suite: Path, out: Path, seeds: range) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    args = ["run", "--suite", str(suite), "--seeds", ",".join(map(str, seeds)), "--out", str(out), "--no-progress"]
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=out.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[dict[str, int]]:
    """Wait for each process; its summary line as counts (done, failed, already, busy)."""
    counts = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-2000:]
        m = SUMMARY.search(stdout)
        assert m, stdout[-2000:]
        counts.append({"done": int(m[1]), "failed": int(m[2]), "already": int(m[3]), "busy": int(m[4] or 0)})
    return counts


def _check_folder(out: Path) -> dict[str, dict]:
    """Every record file whole, named by its job id; one record a job; the export agrees."""
    by_id = {}
    for path in (out / "records").glob("*.json"):
        rec = json.loads(path.read_text())  # a torn file would not parse
        assert rec["job_id"] == path.stem and rec["status"] == "ok"
        by_id[rec["job_id"]] = rec
    seeds = [r["seed"] for r in by_id.values()]
    assert len(seeds) == len(set(seeds)), "a job was recorded twice"
    assert {r["job_id"] for r in read_records(out)} == set(by_id)
    return by_id


def _metric_rows(out: Path) -> list[dict]:
    with (out / "leaderboard.csv").open(newline="") as f:
        keep = ("method", "dataset", "n_seeds", "miou", "pixel_acc", "mean_acc", "fwiou", "bf")
        return [{k: v for k, v in row.items() if k in keep} for row in csv.DictReader(f)]


def test_concurrent_runs_lose_nothing_and_never_compute_a_job_twice(tmp_path):
    suite, out = _suite(tmp_path), tmp_path / "r"
    out.mkdir()

    # 1. four processes, fifty different jobs each, at once: every one of the 200 is recorded
    counts = _finish([_start(suite, out, range(i * JOBS_EACH, (i + 1) * JOBS_EACH)) for i in range(N_PROCESSES)])
    assert [c["done"] for c in counts] == [JOBS_EACH] * N_PROCESSES
    assert len(_check_folder(out)) == N_PROCESSES * JOBS_EACH

    # 2. four processes, the SAME fifty jobs: each job is computed by exactly one of them
    same = range(200, 200 + JOBS_EACH)
    counts = _finish([_start(suite, out, same) for _ in range(N_PROCESSES)])
    assert sum(c["done"] for c in counts) == JOBS_EACH, counts
    for c in counts:
        assert c["done"] + c["already"] + c["busy"] == JOBS_EACH, c
    assert len(_check_folder(out)) == N_PROCESSES * JOBS_EACH + JOBS_EACH

    # 3. overlapping runs, some killed at random moments (SIGKILL: no clean-up at all), then
    #    one rerun of everything: every job exactly once, nothing torn
    rng = random.Random(13)
    for round_ in range(2):
        start = 250 + round_ * JOBS_EACH
        procs = [_start(suite, out, range(start + (i % 2) * 10, start + JOBS_EACH)) for i in range(N_PROCESSES)]
        victims = rng.sample(procs, 2)
        time.sleep(rng.uniform(2.0, 6.0))
        for proc in victims:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        counts = _finish([p for p in procs if p not in victims])
        _check_folder(out)
    total = 250 + 2 * JOBS_EACH
    (final,) = _finish([_start(suite, out, range(total))])
    assert final["failed"] == 0 and final["busy"] == 0
    records = _check_folder(out)
    assert sorted(r["seed"] for r in records.values()) == list(range(total))

    # the leaderboard is the one a single process writes for the same jobs
    ref = tmp_path / "ref"
    ref.mkdir()
    _finish([_start(suite, ref, range(total))])
    assert _metric_rows(out) == _metric_rows(ref)


def test_a_job_claimed_by_a_live_run_is_skipped_and_a_dead_runs_claim_taken_over(tmp_path):
    from bench.store import RecordStore

    suite, out = _suite(tmp_path), tmp_path / "r"
    out.mkdir()
    from bench.run import plan_jobs
    from bench.suites import load_suite

    (job,) = plan_jobs(load_suite(str(suite)), None, seeds=[7])
    # a live holder: another process holding the claim
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from bench.store import RecordStore\n"
        "c = RecordStore(%r).claim(%r); print('held', flush=True); time.sleep(60)") % (str(REPO), str(out), job.job_id)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        (counts,) = _finish([_start(suite, out, range(7, 8))])
        assert counts == {"done": 0, "failed": 0, "already": 0, "busy": 1}
        assert RecordStore(out).get(job.job_id) is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    # the holder died without releasing anything: its claim is free, the job runs
    (counts,) = _finish([_start(suite, out, range(7, 8))])
    assert counts["done"] == 1 and RecordStore(out).get(job.job_id).ok
