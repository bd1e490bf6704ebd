"""`bench predict`: a fitted job's method applied to a folder of images, as index PNGs and
colour overlays.

The job is found in a results folder's records, by job id or by method name when the folder
holds one finished job of that method. Its method is loaded from ``runs/<job_id>/``, where
the runner saved the fitted state (:meth:`bench.method.Method.load`: reading it runs no code
from the folder). Every image of the folder (read by
:func:`bench.datasets.decoding.read_rgb`) gives ``<out>/<stem>.png``, the class index of
each pixel, and ``<out>/<stem>_overlay.png``, the classes' colours (the dataset's palette,
saved with the fitted state) blended over the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bench.datasets.decoding import read_rgb
from bench.datasets.palettes import colorize
from bench.datasets.pairing import IMAGE_EXTS
from bench.datasets.types import DatasetInfo
from bench.errors import SegbenchError
from bench.files import write_png_atomic
from bench.method import FITTED_FILE, Method, make_settings, method_class
from bench.record import Record
from bench.store import RecordStore

#: the name of an overlay is the image's stem followed by this
OVERLAY_SUFFIX = "_overlay"
#: what a job id looks like (``<method>-<hex>``); anything else is looked up as a method name
_JOB_ID = re.compile(r"^[\w.:-]+-[0-9a-f]{12}$")


class PredictError(SegbenchError, ValueError):
    """A job that cannot predict, or image folders that do not fit; the message says why."""


@dataclass
class PredictResult:
    """What :func:`predict_folder` did: the job it used and the files it wrote."""

    record: Record
    masks: list[Path]
    overlays: list[Path]


def find_job(results: str | Path, job: str) -> Record:
    """The finished record of ``job`` (a job id, or a method name with one ok job) in ``results``."""
    results = Path(results)
    if not results.is_dir():
        raise PredictError(f"results folder {results} does not exist (the --out of `python -m bench run`)")
    store = RecordStore(results)
    record = store.get(job) if _JOB_ID.match(job) else None
    if record is None:
        records = store.records()
        mine = [r for r in records if r.method == job]
        ok = [r for r in mine if r.ok]
        if not mine:
            known = ", ".join(sorted({r.job_id for r in records})[:8]) or "none"
            raise PredictError(f"no job {job!r} in {results} (give a job id or a method name; jobs there: {known})")
        if len(ok) > 1:
            raise PredictError(f"{len(ok)} finished jobs of method {job!r} in {results}; give one of their ids: "
                               + ", ".join(r.job_id for r in ok))
        record = ok[0] if ok else mine[-1]
    if not record.ok:
        why = f"failed ({record.error})" if record.status == "failed" else f"did not finish (status {record.status})"
        raise PredictError(f"job {record.job_id} {why}: there is no fitted method to predict with")
    return record


def load_job_method(results: str | Path, record: Record, device: str = "cpu") -> Method:
    """The fitted method of a finished job, loaded from ``runs/<job_id>/`` of ``results`` (of the
    job whose fit it loaded, ``extra.fit_reused_from``, when it shared one), with the job's
    own settings (so a job with test-time augmentation predicts with it)."""
    cls = method_class(record.method)
    if not cls.capabilities.save:
        raise PredictError(f"method {record.method} does not save its fitted state, so it cannot predict here")
    folder = Path(results) / "runs" / str((record.extra or {}).get("fit_reused_from") or record.job_id)
    if not (folder / FITTED_FILE).is_file():
        rerun = f" ({record.command} --force)" if record.command else ""
        raise PredictError(f"job {record.job_id} has no saved fitted state in {folder} (run by an older segbench?): "
                           f"rerun it with --force to save its fitted state{rerun}")
    return cls.load(folder, make_settings(cls, record.settings), device=device)


def image_files(folder: str | Path) -> list[Path]:
    """The images of ``folder`` (by extension, sorted by name; sub-folders are not searched)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(f"image folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise PredictError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def output_paths(images: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """``(mask, overlay)`` paths of each image; PredictError when two outputs would share a
    name (``a.png`` and ``a.jpg``) or an output would overwrite an input image."""
    pairs = [(out / f"{p.stem}.png", out / f"{p.stem}{OVERLAY_SUFFIX}.png") for p in images]
    seen: dict[Path, Path] = {}
    inputs = {p.resolve(): p for p in images}
    for image, pair in zip(images, pairs):
        for path in pair:
            if path in seen:
                raise PredictError(f"{image.name} and {seen[path].name} would both write {path.name}; "
                                   "rename one of them")
            if path.resolve() in inputs:
                raise PredictError(f"{path} would overwrite the image {inputs[path.resolve()].name}; "
                                   "choose another output folder")
            seen[path] = image
    return pairs


def overlay(image: np.ndarray, labels: np.ndarray, info: DatasetInfo, alpha: float = 0.5) -> np.ndarray:
    """The classes' colours blended over an RGB image: ``(1 - alpha) * image + alpha * colour``."""
    colour = colorize(labels, info.palette, info.ignore_index).astype(np.float32)
    return np.rint(image.astype(np.float32) * (1.0 - alpha) + colour * alpha).astype(np.uint8)


def predict_folder(results: str | Path, job: str, images: str | Path, out: str | Path, device: str = "cpu",
                   alpha: float = 0.5, progress: bool = True) -> PredictResult:
    """Predict every image of ``images`` with the fitted method of ``job`` in ``results``;
    write ``<out>/<stem>.png`` (class indices) and ``<out>/<stem>_overlay.png``.

    Everything is checked before the first file is written: the job, its saved state, the
    image names. An unreadable image stops the run with an error naming the file.
    """
    if not 0.0 <= alpha <= 1.0:
        raise PredictError(f"alpha must be in [0, 1], got {alpha}")
    record = find_job(results, job)
    files = image_files(images)
    out = Path(out)
    pairs = output_paths(files, out)
    method = load_job_method(results, record, device)
    result = PredictResult(record, [], [])
    for path, (mask_path, overlay_path) in zip(
            tqdm(files, desc=f"{record.method}: predict", unit="img", disable=not progress), pairs):
        image = read_rgb(path)
        labels = np.asarray(method.predict(image))
        if labels.shape != image.shape[:2]:
            raise PredictError(f"{record.method} returned a {labels.shape} map for {path} of size {image.shape[:2]}")
        result.masks.append(write_png_atomic(mask_path, labels))
        result.overlays.append(write_png_atomic(overlay_path, overlay(image, labels, method.info, alpha)))
    return result
