"""The Ray executor on a real local Ray instance: the same records and leaderboard as a local
run, worker deaths retried then recorded, and one-line errors when it cannot be used.

The tests that run jobs need Ray (``pip install ".[ray]"``) and are skipped without it; the
error tests run either way (they make ``import ray`` fail themselves).
"""

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.run.executors import RayNotInstalledError, run_with_ray
from conftest import read_records
from bench.report import build_report
from bench.run import Runner, plan_jobs
from bench.suites import Suite, SuiteJob, load_suite

import executor_methods  # noqa: F401  (registers the test-ray-* methods in this process)

TESTS = Path(__file__).resolve().parent
SUITE_YAML = """\
description: two fast methods on the synthetic data
dataset: shapes
jobs:
  - method: majority
  - method: sobel
    settings: {max_train_images: 8}
"""
METRIC_COLUMNS = ["miou", "pixel_acc", "mean_acc", "fwiou", "bf"]
#: what may differ between two runs of the same job: when and where it ran, how fast
RUN_FIELDS = {"started", "finished", "host", "fit_time_s", "predict_time_per_image_s", "images_per_s", "device_name"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance for the module; the executor uses it since it is already up.

    The workers get this folder on their PYTHONPATH so that they can import executor_methods.
    """
    ray = pytest.importorskip("ray")
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield ray
    ray.shutdown()


def _leaderboard(out: Path) -> pd.DataFrame:
    build_report(out)
    df = pd.read_csv(out / "leaderboard.csv")
    conventions = [c for c in df.columns if c.startswith("miou_conv_") and not c.endswith("_std")]
    return df.set_index("job_ids")[["method", "status", *METRIC_COLUMNS, *conventions]].sort_index()


def test_ray_run_writes_the_records_and_leaderboard_of_a_local_run(ray_cluster, tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE_YAML)
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert Runner(local, progress=False).run(plan_jobs(load_suite(str(suite)), None))["ok"] == 2
    args = ["run", "--suite", str(suite), "--out", str(remote), "--no-progress", "--executor", "ray"]
    assert main(args) == 0
    assert "2 done, 0 failed" in capsys.readouterr().out

    pd.testing.assert_frame_equal(_leaderboard(remote), _leaderboard(local))
    by_id = {r["job_id"]: r for r in read_records(local)}
    ray_records = read_records(remote)
    assert {r["job_id"] for r in ray_records} == set(by_id)
    for rec in ray_records:
        mine = {k: v for k, v in rec.items() if k not in RUN_FIELDS and k != "command"}
        theirs = {k: v for k, v in by_id[rec["job_id"]].items() if k not in RUN_FIELDS and k != "command"}
        assert mine == theirs
        assert rec["command"] == by_id[rec["job_id"]]["command"].replace(str(local), str(remote))
        for p in rec["predictions"]:  # written by the task, into the same folder
            assert (remote / p).is_file()

    # a rerun skips both jobs as a local run would (no task at all); --force redoes them
    before = read_records(remote)
    assert main(args) == 0
    assert "0 done, 0 failed, 2 already done" in capsys.readouterr().out
    assert read_records(remote) == before
    assert main([*args, "--force", "--only", "majority"]) == 0
    assert "1 done, 0 failed, 0 already done" in capsys.readouterr().out
    after = {r["job_id"]: r for r in read_records(remote)}
    assert len(after) == 2 and {r["method"] for r in after.values()} == {"majority", "sobel"}


def test_a_killed_worker_is_retried_and_a_job_that_always_kills_it_fails_alone(ray_cluster, tmp_path):
    once, always = tmp_path / "once.txt", tmp_path / "always.txt"
    suite = Suite("kills", "", "shapes", [
        SuiteJob("test-ray-kill-once", {"marker": str(once)}),
        SuiteJob("test-ray-kill-always", {"marker": str(always)}),
        SuiteJob("majority"),
    ], Path("kills.yaml"))
    out = tmp_path / "out"
    counts = run_with_ray(Runner(out, progress=False), plan_jobs(suite, None), max_retries=1,
                          setup_modules=["executor_methods"])
    assert counts == {"ok": 2, "failed": 1, "skipped": 0, "busy": 0}

    recs = {r["method"]: r for r in read_records(out)}
    assert len(recs) == 3
    assert recs["majority"]["status"] == "ok"
    assert recs["test-ray-kill-once"]["status"] == "ok"
    assert len(once.read_text().splitlines()) == 2  # killed once, retried once
    dead = recs["test-ray-kill-always"]
    assert len(always.read_text().splitlines()) == 2  # 1 run + max_retries=1, then no more
    assert dead["status"] == "failed" and dead["miou"] is None
    assert dead["error"].startswith("WorkerCrashedError: the Ray worker running this job died, 2 time(s)")
    assert "\n" not in dead["error"] and dead["job_id"] and dead["command"]

    build_report(out)
    assert "WorkerCrashedError" in (out / "leaderboard.md").read_text()


def _one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_executor_ray_without_ray_is_one_line_saying_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "out"
    assert main(["run", "--suite", "smoke", "--only", "majority", "--dataset", "shapes", "--out", str(out),
                 "--executor", "ray"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("segbench: error: --executor ray needs Ray") and 'pip install ".[ray]"' in line
    assert not out.exists()  # before any work
    with pytest.raises(RayNotInstalledError, match=r'pip install "\.\[ray\]"'):
        run_with_ray(Runner(out, progress=False), [])


@pytest.mark.parametrize("extra, fragment", [
    (["--executor", "spark"], "--executor must be one of local, ray, not 'spark'"),
    (["--max-retries", "3"], "--max-retries: only used with --executor ray"),
])
def test_bad_executor_options_are_one_line(tmp_path, capsys, extra, fragment):
    out = tmp_path / "out"
    assert main(["run", "--suite", "smoke", "--only", "majority", "--dataset", "shapes", "--out", str(out),
                 *extra]) == 2
    assert fragment in _one_line_error(capsys)
    assert not out.exists()


def test_jobs_that_share_a_fit_run_one_after_the_other(ray_cluster, tmp_path):
    """The second job of a fit is submitted when the first has finished, and loads its fit."""
    suite = Suite("test", "", "shapes", [SuiteJob("sobel", {"max_train_images": 8})], Path("test.yaml"))
    val_job, test_job = plan_jobs(suite, None)[0], plan_jobs(suite, None, eval_split="test")[0]
    counts = run_with_ray(Runner(tmp_path, progress=False), [val_job, test_job])
    assert counts["ok"] == 2
    reused = [r["extra"].get("fit_reused_from") for r in read_records(tmp_path)]
    assert reused == [None, val_job.job_id]
