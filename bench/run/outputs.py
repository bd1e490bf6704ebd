"""The files a run writes besides records: the output-folder checks before any work, saved
predictions and the evaluation samples the report's image grid shows. Every file is written
atomically (bench.files), so concurrent runs into one folder never leave a torn one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.datasets import Split
from bench.files import write_json_atomic, write_png_atomic
from bench.run.plan import RunError

#: how many evaluation images get their predictions saved for the report's image grid
N_SAVED_PREDICTIONS = 3
#: free space (MB) the output folder's file system needs before a run starts; the
#: environment variable SEGBENCH_MIN_FREE_MB overrides it (0 turns the check off)
MIN_FREE_MB = 200


def min_free_mb() -> float:
    raw = os.environ.get("SEGBENCH_MIN_FREE_MB")
    if raw is None or not raw.strip():
        return float(MIN_FREE_MB)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also catches NaN
        raise RunError(f"SEGBENCH_MIN_FREE_MB must be a number of megabytes >= 0, got {raw!r}")
    return value


def check_output_dir(out_dir: Path) -> None:
    """Fail before any work when results could not be saved: the folder cannot be created or
    written (read-only, not a folder, no permission) or its file system has less than
    :func:`min_free_mb` MB free."""
    out_dir = Path(out_dir)
    need_mb = min_free_mb()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        free_mb = shutil.disk_usage(out_dir).free / 2**20
        if free_mb < need_mb:
            raise RunError(f"{out_dir}: only {free_mb:,.0f} MB free on its file system, {need_mb:,.0f} MB needed "
                           "(free some space, pick another --out, or set SEGBENCH_MIN_FREE_MB)")
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-") as f:
            f.write(b"x" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunError(f"{out_dir}: cannot write results there ({e.strerror or e})") from None


def save_samples(out_dir: Path, dataset_name: str, split: Split, n: int = N_SAVED_PREDICTIONS) -> None:
    """Images, ground truths and the palette of the first ``n`` evaluation images (for the grid)."""
    folder = out_dir / "samples" / dataset_name / split.name
    info = split.info
    write_json_atomic(folder / "palette.json", {"class_names": list(info.class_names),
                                                "palette": info.palette.tolist(),
                                                "ignore_index": info.ignore_index})
    for i in range(min(n, len(split))):
        s = split[i]
        if not (folder / f"{s.id}_gt.png").exists():
            write_png_atomic(folder / f"{s.id}_image.png", s.image)
            write_png_atomic(folder / f"{s.id}_gt.png", s.label)


def save_predictions(out_dir: Path, job_id: str, predictions: Sequence[tuple[str, np.ndarray]]) -> list[str]:
    """Prediction PNGs of one job under ``predictions/<job_id>/``; their paths relative to ``out_dir``."""
    saved = []
    for sample_id, pred in predictions:
        path = write_png_atomic(out_dir / "predictions" / job_id / f"{sample_id}.png", pred)
        saved.append(str(path.relative_to(out_dir)))
    return saved
