"""Execute one job: fit, predict the evaluation split with honest timing, score. Returns the
record's figures, the per-image data and the predictions to keep; writes nothing itself (the
runner does) besides what the method keeps in its own run folder (checkpoints, fitted state)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.datasets import Dataset, Sample, SkippingSplit, Split, get_dataset
from bench.files import compact_labels, write_json_atomic
from bench.method import FitContext, Method, MethodError, create_method
from bench.metrics import Scorer
from bench.per_image import PerImage
from bench.run.provenance import device_name
from bench.run.outputs import N_SAVED_PREDICTIONS, N_WORST, sample_ids
from bench.run.plan import Job
from bench.seeding import seed_everything
from bench.speed.core import Timing, timed, warm_up


class DataCache:
    """Datasets and splits opened once per runner (a split may keep what it decoded);
    --skip-bad-samples splits probed once."""

    def __init__(self) -> None:
        self._datasets: dict[tuple, Dataset] = {}
        self._splits: dict[tuple, Split] = {}
        self._skipping: dict[tuple, SkippingSplit] = {}

    def dataset(self, job: Job) -> Dataset:
        key = (job.dataset, job.data_root)
        if key not in self._datasets:
            self._datasets[key] = get_dataset(job.dataset, job.data_root)
        return self._datasets[key]

    def split(self, job: Job, name: str) -> Split:
        """Split ``name`` of the job's dataset; without its unreadable samples when the job
        skips bad samples."""
        key = (job.dataset, job.data_root, name)
        if key not in self._splits:
            self._splits[key] = self.dataset(job).split(name)
        split = self._splits[key]
        if not job.skip_bad_samples:
            return split
        if key not in self._skipping:
            self._skipping[key] = SkippingSplit(split)
        return self._skipping[key]


@dataclass
class JobOutput:
    """What one execution produced: record fields, predictions to save (the first images, the
    shared sample, the worst images), per-image data and the worst images' samples."""

    fields: dict[str, Any]
    predictions: list[tuple[str, np.ndarray]] = field(default_factory=list)
    per_image: PerImage | None = None
    samples: list[Sample] = field(default_factory=list)


def execute(job: Job, data: DataCache, run_dir: Path, resume: bool, progress: bool,
            fits_dir: Path | None = None, reuse_fit: bool = True) -> JobOutput:
    """Fit ``job``'s method on train (and val when it uses one), then predict and score the
    evaluation split. Each predict is timed alone (device synchronised) after one untimed
    warm-up call.

    With ``fits_dir``, a method that saves its fitted state is fitted once for all jobs that
    differ only in the evaluation split or mIoU convention (:attr:`Job.fit_id`): the first
    writes ``fits_dir/<fit_id>.json`` naming its job (whose run folder ``runs/<job_id>`` beside
    ``fits_dir`` holds the state), the others load that state. ``reuse_fit=False`` (a forced
    rerun) fits again and makes this job the one the others load."""
    train = data.split(job, "train")
    evaluation = data.split(job, job.eval_split)
    seed_everything(job.seed)
    method = create_method(job.method, job.settings)
    fit_file = fits_dir / f"{job.fit_id}.json" if fits_dir is not None and method.capabilities.save else None
    reused = _reuse_fit(method, fit_file, job) if fit_file is not None and reuse_fit else None
    if reused is not None:
        method, fit_time, fit_extra, source = reused
    else:
        method, fit_time, fit_extra = _fit(job, method, data, train, run_dir, resume, progress)
        if method.capabilities.save:  # runs/<job_id>/: what `bench predict` loads
            method.save(run_dir)
            if fit_file is not None:
                write_json_atomic(fit_file, {"job_id": job.job_id, "fit_time_s": fit_time, "fit_extra": fit_extra})
    scored = _predict_and_score(job, method, evaluation, progress)

    extra = {**fit_extra, **method.extra_metrics()}
    if reused is not None:
        extra["fit_reused_from"] = source
    if scored["oracle_miou"] is not None:
        extra["oracle_miou"] = scored["oracle_miou"]
    if job.skip_bad_samples:  # say which samples the scores leave out (see bench.report)
        splits = [train, evaluation] + ([data.split(job, "val")] if "val" in data.dataset(job).split_names() else [])
        skipped = {s.name: s.skipped for s in splits if isinstance(s, SkippingSplit)}
        extra["skip_bad_samples"] = True
        extra["skipped_samples"] = sum(len(v) for v in skipped.values())
        extra["skipped_sample_list"] = [x.as_dict() for v in skipped.values() for x in v]
    result, per_image = scored["result"], scored["seconds_per_image"]
    fields = {
        "miou": result["miou"], "pixel_acc": result["pixel_acc"], "mean_acc": result["mean_acc"],
        "fwiou": result["fwiou"], "bf": result["bf"], "iou": result["iou"],
        "class_names": list(evaluation.info.class_names), "miou_convention": result["miou_convention"],
        "miou_by_convention": result["miou_by_convention"],
        "n_train": len(train), "n_eval": len(evaluation), "fit_time_s": fit_time,
        "predict_time_per_image_s": per_image, "images_per_s": 1.0 / per_image if per_image > 0 else None,
        "params": method.num_parameters(), "device_name": device_name(job.device),
        "settings": method.settings_dict(), "extra": extra,
    }
    return JobOutput(fields, scored["predictions"], scored["per_image"], scored["worst_samples"])


def _fit(job: Job, method: Method, data: DataCache, train: Split, run_dir: Path, resume: bool,
         progress: bool) -> tuple[Method, float, dict[str, Any]]:
    """Fit ``method``; returns it, the fit's seconds and its extra figures right after fit."""
    val = None
    if method.capabilities.validation and "val" in data.dataset(job).split_names():
        val = data.split(job, "val")
    context = FitContext(run_dir=run_dir, resume=resume, device=job.device, seed=job.seed, progress=progress)
    _, fit_time = timed(lambda: method.fit(train, val, context), method.sync)
    return method, fit_time, dict(method.extra_metrics())


def _reuse_fit(method: Method, fit_file: Path, job: Job) -> tuple[Method, float, dict[str, Any], str] | None:
    """The fitted state another job of the same fit saved, its fit seconds, fit figures and job
    id (None when there is none or it cannot be loaded: then this job fits itself)."""
    try:
        meta = json.loads(fit_file.read_text())
        source = str(meta["job_id"])
        loaded = type(method).load(fit_file.parent.parent / "runs" / source, method.settings, device=job.device)
        return loaded, float(meta["fit_time_s"]), dict(meta.get("fit_extra") or {}), source
    except (OSError, ValueError, KeyError, TypeError, MethodError):
        return None


def _predict_and_score(job: Job, method: Method, evaluation: Split, progress: bool) -> dict[str, Any]:
    info = evaluation.info
    scorer = Scorer(info.num_classes, info.ignore_index, convention=job.miou_convention)
    oracle = Scorer(info.num_classes, info.ignore_index, boundary=False) \
        if method.capabilities.partition_oracle else None
    ids = list(evaluation.ids)
    keep = set(ids[:N_SAVED_PREDICTIONS]) | set(sample_ids(ids))
    kept: list[tuple[str, np.ndarray]] = []
    worst = _Worst(N_WORST)
    times: list[float] = []
    seen: list[str] = []
    for i, sample in enumerate(tqdm(evaluation, desc=f"{job.method}: predict {job.eval_split}", unit="img",
                                    leave=False, disable=not progress)):
        if i == 0:  # one untimed call: lazy initialisation, caches, kernel selection
            warm_up(method.predict, [sample.image], method.sync)
        pred, seconds = timed(lambda: method.predict(sample.image), method.sync)
        times.append(seconds)
        pred = np.asarray(pred)
        if pred.shape != sample.label.shape:
            raise ValueError(f"{job.method} returned a {pred.shape} map for image {sample.id} "
                             f"of size {sample.label.shape}")
        scorer.update(pred, sample.label)
        seen.append(sample.id)
        if oracle is not None:
            best = np.asarray(method.partition_oracle(sample.image, sample.label))
            if info.ignore_index is not None:  # all-void regions: their pixels are not scored anyway
                best = np.where((best == info.ignore_index) & (sample.label == info.ignore_index), 0, best)
            oracle.update(best, sample.label)
        if sample.id in keep:
            kept.append((sample.id, compact_labels(pred)))  # as it will be saved
        worst.offer(scorer.image_miou[-1], sample, pred)
    kept += [(s.id, p) for s, p in worst.items() if s.id not in keep]
    per_image = PerImage(seen, scorer.image_matrices(), scorer.image_bf if scorer.boundary else None)
    return {"result": scorer.result(), "seconds_per_image": Timing(times).mean,
            "oracle_miou": oracle.result()["miou"] if oracle is not None else None, "predictions": kept,
            "per_image": per_image, "worst_samples": [s for s, _ in worst.items() if s.id not in keep]}


class _Worst:
    """The ``n`` images of lowest per-image mIoU seen so far, with their predictions."""

    def __init__(self, n: int):
        self.n = n
        self._items: list[tuple[float, int, Sample, np.ndarray]] = []  # (mIoU, order seen, ...)
        self._seen = 0

    def offer(self, miou: float, sample: Sample, pred: np.ndarray) -> None:
        self._seen += 1
        if math.isnan(miou):  # an image with no scored pixel is not "wrong"
            return
        self._items.append((miou, self._seen, sample, pred))
        self._items.sort(key=lambda t: t[:2])
        del self._items[self.n:]

    def items(self) -> list[tuple[Sample, np.ndarray]]:
        """Worst first."""
        return [(s, p) for _, _, s, p in self._items]
