"""scripts/gpu_camvid.sh, the one prepared call of a GPU lease: it parses, and it stops at once,
saying what to do, when the packed data it needs were not carried."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_camvid.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_without_the_carried_data_it_stops_and_says_what_to_run(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "CARRY": str(tmp_path / "not-carried")}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "pack_for_device.py" in done.stdout + done.stderr
    assert "pack_for_device.py" in (tmp_path / "log.txt").read_text()  # the log comes back with the call
