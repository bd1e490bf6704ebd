"""The check on photos nothing was chosen on: make_ccp_mini.py --exclude builds a set without
ccp-mini's ids, scripts/unseen_check.py scores a results folder's fitted rows on it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from bench.run import Runner, plan_jobs
from bench.store import RecordStore
from bench.suites import Suite, SuiteJob

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "bench" / "datasets" / "data" / "ccp_mini"
TINY_NET = {"width": 0.0625, "scale": 0.25, "epochs": 1, "batch_size": 8, "num_workers": 0}


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exclude_leaves_out_every_id_of_a_splits_file(fake_ccp, tmp_path, capsys):
    (fake_ccp / "LICENSE").write_text("Apache-2.0\n")
    taken = tmp_path / "taken.json"
    taken.write_text(json.dumps({"train": ["0001", "0002", "0003"], "val": ["0004", "0005", "0006"]}))
    out = tmp_path / "unseen"
    args = ["--src", str(fake_ccp), "--out", str(out), "--seed", "1", "--n-train", "0", "--n-val", "6",
            "--width", "12", "--min-classes", "1", "--exclude", str(taken)]
    assert script("make_ccp_mini").main(args) == 0
    splits = json.loads((out / "splits.json").read_text())
    # 12 annotated photos, 6 excluded: the other 6 and only they
    assert splits["train"] == [] and splits["val"] == ["0007", "0008", "0009", "0010", "0011", "0012"]
    assert f"--out {out} --seed 1" in (out / "README.md").read_text()  # the command that made this folder
    for bad in ("[1, 2]", '{"val": [7, 8]}', '{"val": "0007"}', "{"):  # not a splits object of id strings
        taken.write_text(bad)
        with pytest.raises(SystemExit) as stop:
            script("make_ccp_mini").main(args)
        assert stop.value.code == 2 and f"--exclude {taken}: not a" in capsys.readouterr().err


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """majority, location-prior and a one-epoch SegNet-Basic on ccp-mini-groups/val."""
    out = tmp_path_factory.mktemp("unseen")
    jobs = [SuiteJob("majority"), SuiteJob("location-prior"), SuiteJob("segnet-basic", dict(TINY_NET))]
    suite = Suite("t", "", "ccp-mini-groups", jobs, Path("t.yaml"))
    assert Runner(out, progress=False).run(plan_jobs(suite, None))["ok"] == 3
    return out


def test_on_the_photos_of_the_leaderboard_the_check_gives_its_figures(results, tmp_path, capsys):
    """Pointed at a copy of the shipped sample, every row scores what its record says."""
    root = tmp_path / "copy"
    shutil.copytree(MINI, root)
    md = tmp_path / "check.md"
    assert script("unseen_check").main([str(results), "--data-root", str(root), "--md", str(md)]) == 0
    text = md.read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    assert text.startswith("16 images of ccp-mini-groups/val")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")
            and not line.startswith("| method") and not line.startswith("|---")}
    assert set(rows) == {"majority", "location-prior", "segnet-basic"}
    for record in RecordStore(results).records():
        cells = rows[record.method]
        assert cells[2].startswith(f"{100 * record.miou:.1f} [")
    # one map for every photo: no gain over its own mode map, the prior nothing over itself
    for constant in ("majority", "location-prior"):
        assert rows[constant][4].startswith("+0.0 [+0.0, +0.0]")
    assert rows["location-prior"][6] == "–"  # the prior is no test of itself
    assert rows["majority"][6].startswith("-")


def test_methods_filter_and_clear_errors(results, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(MINI, root)
    check = script("unseen_check")
    assert check.main([str(results), "--data-root", str(root), "--methods", " majority, "]) == 0
    out = capsys.readouterr().out
    # the prior is scored for the comparison, not shown as a row of its own
    assert "| majority |" in out and "| location-prior |" not in out and "| –" not in out
    majority = next(line for line in out.splitlines() if line.startswith("| majority |")).split(" | ")
    assert majority[6].startswith("-") and float(majority[7].rstrip(" |")) < 0.05  # one test: no correction
    assert check.main([str(results), "--data-root", str(root), "--methods", "majority,unet,sobel"]) == 2
    assert "no finished job with a saved fit of sobel, unet" in capsys.readouterr().err
    assert check.main([str(results), "--data-root", str(tmp_path / "none")]) == 2
    assert "data root does not exist" in capsys.readouterr().err
