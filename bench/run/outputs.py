"""The files a run writes besides records: the output-folder checks before any work, saved
predictions, each job's per-image data and the evaluation samples the report's figures show.
Every file is written atomically (bench.files), so concurrent runs into one folder never
leave a torn one."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.datasets import Sample, Split
from bench.files import write_json_atomic, write_png_atomic
from bench.per_image import PerImage, relative_path, write_per_image
from bench.run.plan import Job, RunError

#: how many evaluation images get their predictions saved for the report's image grid
N_SAVED_PREDICTIONS = 3
#: images of a fixed pseudo-random sample of the split (by a hash of their ids, the same for
#: every method) whose predictions each job saves too: the report shows two methods side by
#: side on those where they disagree most
N_SAMPLE = 12
#: splits of at most this many images are "sampled" whole: every job saves every prediction
#: (CamVid val, 101 images: about 1 MB a job, and the images once, about 25 MB), so that the
#: report's "disagree most" is ranked over the whole split
SAMPLE_ALL_UP_TO = 128
#: each job also saves the predictions of its worst images (lowest per-image mIoU)
N_WORST = 4
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


def sample_ids(ids: Sequence[str], n: int = N_SAMPLE) -> list[str]:
    """Every id of a split of at most :data:`SAMPLE_ALL_UP_TO` images, else the ``n`` ids whose
    SHA-1 comes first: a pseudo-random sample that depends on the ids only."""
    if len(ids) <= SAMPLE_ALL_UP_TO:
        return list(ids)
    return sorted(ids, key=lambda i: hashlib.sha1(str(i).encode()).hexdigest())[:n]


def _samples_folder(out_dir: Path, dataset_name: str, split_name: str) -> Path:
    return out_dir / "samples" / dataset_name / split_name


def _write_sample(folder: Path, s: Sample) -> None:
    if not (folder / f"{s.id}_gt.png").exists():
        write_png_atomic(folder / f"{s.id}_image.png", s.image)
        write_png_atomic(folder / f"{s.id}_gt.png", s.label)


def save_samples(out_dir: Path, dataset_name: str, split: Split, n: int = N_SAVED_PREDICTIONS) -> None:
    """Images, ground truths and the palette of the first ``n`` evaluation images (for the grid)
    and of the :func:`sample_ids` sample (for the report's figures); those saved are kept."""
    folder = _samples_folder(out_dir, dataset_name, split.name)
    info = split.info
    write_json_atomic(folder / "palette.json", {"class_names": list(info.class_names),
                                                "palette": info.palette.tolist(),
                                                "ignore_index": info.ignore_index})
    ids = list(split.ids)
    position = {sid: k for k, sid in enumerate(ids)}
    for sid in dict.fromkeys(ids[:n] + sample_ids(ids)):
        if not (folder / f"{sid}_gt.png").exists():
            _write_sample(folder, split[position[sid]])


def save_predictions(out_dir: Path, job_id: str, predictions: Sequence[tuple[str, np.ndarray]]) -> list[str]:
    """Prediction PNGs of one job under ``predictions/<job_id>/``; their paths relative to ``out_dir``."""
    saved = []
    for sample_id, pred in predictions:
        path = write_png_atomic(out_dir / "predictions" / job_id / f"{sample_id}.png", pred)
        saved.append(str(path.relative_to(out_dir)))
    return saved


def save_per_image(out_dir: Path, job: Job, per_image: PerImage | None, samples: Sequence[Sample] = ()) -> str | None:
    """A job's per-image data (``per_image/<job_id>.npz`` and ``.csv``) and the image and ground
    truth of ``samples`` (its worst images); the .npz path relative to ``out_dir``, None without data."""
    if per_image is None:
        return None
    folder = _samples_folder(out_dir, job.dataset, job.eval_split)
    for s in samples:
        _write_sample(folder, s)
    write_per_image(out_dir / relative_path(job.job_id), per_image)
    return relative_path(job.job_id)
