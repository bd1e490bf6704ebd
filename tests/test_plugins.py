"""Plugins: the example plugin package (examples/segbench-example-plugin) found by its entry
points, `run --method` with a name or a `module:Class` spec, specs in suite files, broken
entry points that name themselves."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import bench.datasets
import bench.method
from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "segbench-example-plugin"

AD_HOC_MODULE = '''
import dataclasses

import numpy as np

from bench.method import Method


@dataclasses.dataclass
class BrightnessSettings:
    level: int = 128


class Brightness(Method):
    """Class 1 where the image is brighter than ``level`` (a test's ad hoc method)."""

    Settings = BrightnessSettings

    def _fit(self, train, val):
        pass

    def predict(self, image):
        self._require_fitted()
        return (image.mean(-1) > self.settings.level).astype(np.uint8)
'''


def bench_subprocess(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    env.pop("SEGBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segbench: error: "), err
    return err[0]


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


@pytest.fixture
def plugin_installed():
    """The example plugin must be installed: tox.ini installs it, so under tox or in CI a
    missing plugin fails; elsewhere the tests say how to install it and skip."""
    try:
        metadata.distribution(PLUGIN)
    except metadata.PackageNotFoundError:
        message = f"{PLUGIN} is not installed: pip install -e examples/{PLUGIN}"
        if os.environ.get("TOX_ENV_NAME") or os.environ.get("CI"):
            pytest.fail(message + " (tox.ini installs it: check its commands_pre)")
        pytest.skip(message)


@pytest.fixture
def ad_hoc_module(tmp_path, monkeypatch):
    """A module that no package installs, importable from the working directory."""
    (tmp_path / "segbench_adhoc_methods.py").write_text(AD_HOC_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return "segbench_adhoc_methods:Brightness"


# -- the example plugin, installed ------------------------------------------------------------
def test_example_plugin_is_listed(plugin_installed, capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (method,) = [line.split() for line in lines if line.split()[:1] == ["tiny-fcn"]]
    assert method[1] == "deep" and "example plugin" in " ".join(method)
    (dataset,) = [line for line in lines if line.split()[:1] == ["stripes"]]
    assert dataset.endswith("(built in)")
    assert bench.method.method_class("tiny-fcn").__module__ == "segbench_example.network"
    assert bench.datasets.dataset_class("stripes").__module__ == "segbench_example.stripes"


@pytest.mark.slow
def test_example_plugin_runs_through_bench_run_onto_the_leaderboard(plugin_installed, tmp_path):
    out = tmp_path / "out"
    proc = bench_subprocess("run", "--method", "tiny-fcn", "--dataset", "stripes", "--settings",
                            '{"epochs": 1, "batch_size": 8}', "--out", str(out), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = records(out)
    assert (record["status"], record["method"], record["dataset"], record["kind"]) == ("ok", "tiny-fcn", "stripes",
                                                                                       "deep")
    assert record["settings"]["epochs"] == 1 and record["class_names"] == ["background", "hstripes", "vstripes"]
    assert 0.0 <= record["miou"] <= 1.0 and record["params"] > 0
    board = (out / "leaderboard.md").read_text()
    assert "stripes" in board and any(line.startswith("| tiny-fcn ") for line in board.splitlines()), board
    assert "tiny-fcn" in proc.stdout
    assert record["command"].startswith("python -m bench run --method tiny-fcn --settings "
                                        "'{\"batch_size\": 8, \"epochs\": 1}' --dataset stripes ")


# -- ad hoc classes by import spec --------------------------------------------------------------
def test_method_spec_on_the_command_line_runs_and_its_command_reruns_it(ad_hoc_module, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--method", ad_hoc_module, "--settings", '{"level": 90}', "--dataset", "shapes",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert f"| {ad_hoc_module} " in (out / "leaderboard.md").read_text()
    (record,) = records(out)
    assert record["method"] == ad_hoc_module and record["settings"] == {"level": 90}
    assert record["suite"] == "command-line" and record["status"] == "ok"
    command = shlex.split(record["command"])  # the settings not at their defaults
    assert command[:8] == ["python", "-m", "bench", "run", "--method", ad_hoc_module, "--settings", '{"level": 90}']
    capsys.readouterr()
    assert main(command[3:]) == 0  # the recorded command is the same job: already done
    assert "0 done, 0 failed, 1 already done" in capsys.readouterr().out


def test_method_spec_in_a_suite_file_runs(ad_hoc_module, tmp_path, capsys):
    suite = tmp_path / "adhoc.yaml"
    suite.write_text(f"description: an ad hoc method by import spec\ndataset: shapes\njobs:\n"
                     f"  - method: {ad_hoc_module}\n    settings: {{level: 100}}\n  - method: majority\n")
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    by_method = {r["method"]: r for r in records(out)}
    assert set(by_method) == {ad_hoc_module, "majority"}
    record = by_method[ad_hoc_module]
    assert record["settings"] == {"level": 100} and record["suite"] == str(suite)  # a file: its path
    assert f"| {ad_hoc_module} " in (out / "leaderboard.md").read_text()
    capsys.readouterr()
    assert main(shlex.split(record["command"])[3:]) == 0  # the recorded command finds the file again
    assert "0 done, 0 failed, 1 already done" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["run"], "give one of --suite NAME (a suite file) or --method NAME"),
    (["run", "--suite", "smoke", "--method", "majority"], "give one of --suite NAME"),
    (["run", "--suite", "smoke", "--settings", "{}"], "--settings is only used with --method"),
    (["run", "--method", "majority", "--only", "majority"], "--only is only used with --suite"),
    (["run", "--method", "majority", "--settings", "{epochs: 2}"], "--settings is not valid JSON"),
    (["run", "--method", "majority", "--settings", "[2]"], "--settings must be a JSON object"),
    (["run", "--method", "sobel", "--settings", '{"nope": 1}'], "--method: sobel: unknown setting(s) nope"),
    (["run", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--method", "no_such_module_for_segbench:Cls"], "cannot import no_such_module_for_segbench"),
    (["run", "--method", "bench.method:NoSuchClass"], "bench.method has no NoSuchClass"),
    (["run", "--method", "bench.method:FitContext"], "is not a bench.method.Method"),
])
def test_run_method_bad_input_is_one_clear_line(argv, fragment, tmp_path, capsys):
    line = one_error_line(capsys, argv + ["--dataset", "shapes", "--out", str(tmp_path / "out"), "--no-progress"])
    assert fragment in line, line


# -- a broken plugin names itself ----------------------------------------------------------------
@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    """An installed distribution (its metadata on sys.path) whose entry points name a module
    that does not exist; the registries are made to look for entry points again."""
    info = tmp_path / "site" / "segbench_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segbench-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[segbench.methods]\nbroken-method = segbench_no_such_module:Net\n\n"
                                           "[segbench.datasets]\nbroken-data = segbench_no_such_module:Data\n")
    monkeypatch.syspath_prepend(str(info.parent))
    for registry in (bench.method._REGISTRY, bench.datasets._REGISTRY):
        monkeypatch.setattr(registry, "_entry_points", None)


def test_a_broken_entry_point_names_itself(broken_plugin, tmp_path, capsys):
    assert main(["list"]) == 2
    captured = capsys.readouterr()
    (method,) = [line for line in captured.out.splitlines() if "broken-method" in line]
    assert "BROKEN" in method and "(segbench_no_such_module:Net) cannot be loaded: ModuleNotFoundError" in method
    (dataset,) = [line for line in captured.out.splitlines() if "broken-data" in line]
    assert "(segbench_no_such_module:Data) cannot be loaded" in dataset
    assert "majority" in captured.out and "shapes" in captured.out  # the rest is still listed
    assert captured.err.strip() == ("segbench: error: 2 entry point(s) cannot be loaded: broken-method, "
                                    "broken-data (see above)")
    line = one_error_line(capsys, ["run", "--method", "broken-method", "--dataset", "shapes", "--out",
                                   str(tmp_path / "out")])
    assert "method 'broken-method' (segbench_no_such_module:Net) cannot be loaded: ModuleNotFoundError" in line
