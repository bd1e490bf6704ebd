"""Jobs and the local runner: fit, predict, score, time, record; one job at a time.

A :class:`Job` is one method with its settings on one dataset split, one seed, one device.
Its ``job_id`` is a hash of exactly those things, so a rerun finds the jobs already done
in ``records.jsonl`` and skips them (``force`` redoes them). A job that raises is recorded
as failed with its error and the run goes on; records are written atomically after each
job, so an interrupt loses at most the job under way.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from bench import provenance
from bench.datasets import Dataset, DatasetError, SkippingSplit, get_dataset
from bench.errors import SegbenchError
from bench.methods import Method, create_method, method_class
from bench.metrics import Scorer
from bench.records import RECORDS_FILE, SCHEMA, read_records, upsert_record
from bench.suites import Suite, SuiteError
from bench.timing import timed

#: how many evaluation images get their predictions saved for the report's image grid
N_SAVED_PREDICTIONS = 3


class RunError(SegbenchError, RuntimeError):
    """A run that cannot start (bad output folder, bad job list)."""


@dataclass(frozen=True)
class Job:
    suite: str
    method: str
    dataset: str
    data_root: str | None = None
    eval_split: str = "val"
    seed: int = 0
    device: str = "cpu"
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    miou_convention: str = "mmseg"
    #: leave out samples that cannot be read (DatasetError) instead of failing the job
    skip_bad_samples: bool = False

    @property
    def job_id(self) -> str:
        key = {
            "method": self.method,
            "settings": self.settings,
            "dataset": self.dataset,
            "data_root": str(Path(self.data_root).resolve()) if self.data_root else None,
            "eval_split": self.eval_split,
            "seed": self.seed,
            "device": self.device,
            "miou_convention": self.miou_convention,
        }
        if self.skip_bad_samples:  # only when on, so that the ids of existing records stay valid
            key["skip_bad_samples"] = True
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.method}-{digest}"

    def command(self, out_dir: str | Path) -> str:
        """The command line that reruns exactly this job."""
        parts = ["python", "-m", "bench", "run", "--suite", self.suite, "--dataset", self.dataset]
        if self.data_root:
            parts += ["--data-root", str(self.data_root)]
        parts += ["--eval-split", self.eval_split, "--device", self.device, "--seeds", str(self.seed),
                  "--only", self.method, "--miou-convention", self.miou_convention, "--out", str(out_dir)]
        if self.skip_bad_samples:
            parts.append("--skip-bad-samples")
        return shlex.join(parts)


def plan_jobs(
    suite: Suite,
    dataset: str | None,
    data_root: str | None = None,
    eval_split: str = "val",
    device: str = "cpu",
    seeds: Iterable[int] = (0,),
    only: Iterable[str] | None = None,
    miou_convention: str = "mmseg",
    skip_bad_samples: bool = False,
) -> list[Job]:
    """Expand a suite into jobs, checking every method name and setting before any work."""
    from bench.datasets import DEFAULT_DATASET
    from bench.methods import make_settings

    dataset = dataset or suite.dataset or DEFAULT_DATASET
    only_set = set(only) if only else None
    if only_set:
        unknown = only_set - {j.method for j in suite.jobs}
        if unknown:
            raise RunError(f"--only names method(s) not in suite '{suite.name}': {', '.join(sorted(unknown))}")
    jobs = []
    for seed in seeds:
        for sj in suite.jobs:
            if only_set and sj.method not in only_set:
                continue
            try:
                cls = method_class(sj.method)
                settings = dataclasses.asdict(make_settings(cls, sj.settings))  # full, defaults filled in
            except SegbenchError as e:  # name the suite file and line of the job
                if sj.where:
                    raise SuiteError(f"{sj.where}: {e}") from None
                raise
            jobs.append(Job(suite.name, sj.method, dataset, data_root, eval_split, int(seed), device, settings, miou_convention,
                            skip_bad_samples=bool(skip_bad_samples)))
    return jobs


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _write_png_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def _index_png(label: np.ndarray) -> np.ndarray:
    """Label maps as PNG-storable arrays: uint8 when they fit, else uint16."""
    if label.min(initial=0) >= 0 and label.max(initial=0) < 256:
        return label.astype(np.uint8)
    return label.astype(np.uint16)


def save_samples(out_dir: Path, dataset: Dataset, split, n: int = N_SAVED_PREDICTIONS) -> None:
    """Images, ground truths and the palette of the first ``n`` evaluation images (for the grid plot)."""
    folder = out_dir / "samples" / dataset.name / split.name
    info = split.info
    meta = {"class_names": list(info.class_names), "palette": info.palette.tolist(), "ignore_index": info.ignore_index}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "palette.json").write_text(json.dumps(meta))
    for i in range(min(n, len(split))):
        s = split[i]
        if not (folder / f"{s.id}_gt.png").exists():
            _write_png_atomic(folder / f"{s.id}_image.png", s.image)
            _write_png_atomic(folder / f"{s.id}_gt.png", _index_png(s.label))


class Runner:
    """Runs jobs locally, one after the other, and keeps the records file up to date."""

    def __init__(self, out_dir: str | Path, force: bool = False, progress: bool = True,
                 on_event: Callable[[str], None] | None = None, resume: bool = True):
        self.out_dir = Path(out_dir)
        self.records_path = self.out_dir / RECORDS_FILE
        self.force = force
        #: a job whose earlier attempt was interrupted continues from what it left in its run
        #: folder (out/runs/<job_id>: the id covers settings, data and seed, so it is the same
        #: job's); off with ``resume=False`` and always off with ``force`` (redo means redo)
        self.resume = resume and not force
        self.progress = progress
        self.log = on_event or (lambda msg: tqdm.write(msg))
        self._datasets: dict[tuple, Dataset] = {}
        self._skipping: dict[tuple, SkippingSplit] = {}  # probed splits of --skip-bad-samples jobs

    # -- public -------------------------------------------------------------------------
    def check_data(self, jobs: list[Job]) -> None:
        """Every dataset named by the jobs exists, with a train split and the evaluation split.

        Raises DatasetError before any work, so a typo costs seconds, not a suite.
        """
        for job in jobs:
            dataset = self._dataset(job)
            names = dataset.split_names()
            for needed in ("train", job.eval_split):
                if needed not in names:
                    raise DatasetError(f"dataset '{job.dataset}' ({job.data_root or 'built in'}) has no "
                                       f"'{needed}' split; it has: {', '.join(names) or 'none'}")

    def run(self, jobs: list[Job]) -> dict[str, int]:
        """Run the jobs here, one after the other (the local executor); counts by outcome.

        Other executors (:mod:`bench.executors`) do the same with :meth:`start` and
        :meth:`collect`, running ``run_job`` elsewhere.
        """
        todo, skipped = self.start(jobs)
        return self.collect((self.run_job(job) for job in todo), total=len(jobs), skipped=skipped)

    def start(self, jobs: list[Job]) -> tuple[list[Job], int]:
        """Checks before any work (output folder, data), then the jobs still to run: those
        without an ok record (every job with ``force``). Returns (jobs to run, number skipped)."""
        check_output_dir(self.out_dir)
        self.check_data(jobs)
        done = {r["job_id"] for r in read_records(self.records_path) if r.get("status") == "ok"}
        todo = [job for job in jobs if self.force or job.job_id not in done]
        return todo, len(jobs) - len(todo)

    def collect(self, records: Iterable[dict[str, Any]], total: int, skipped: int = 0) -> dict[str, int]:
        """Write each finished record as it comes (atomic upsert), log it and count it.

        ``records`` may be lazy (the local run computes each one when asked), so every record
        is on disk before the next is waited for.
        """
        counts = {"ok": 0, "failed": 0, "skipped": skipped}
        with tqdm(total=total, initial=skipped, desc="suite", unit="job", disable=not self.progress) as bar:
            for record in records:
                upsert_record(self.records_path, record)
                counts[record["status"]] += 1
                bar.update()
                bar.set_postfix_str(f"{record['method']} on {record['dataset']}")
                where = f"{record['method']:>18s} on {record['dataset']}/{record['eval_split']}"
                if record["status"] == "ok":
                    self.log(f"{where}: mIoU {100 * (record['miou'] or float('nan')):5.1f}  "
                             f"{record['images_per_s']:.2f} img/s")
                else:
                    self.log(f"{where}: FAILED: {record['error']}")
        return counts

    def failed_record(self, job: Job, error: str, traceback_text: str | None = None) -> dict[str, Any]:
        """The record of a job that did not run to its end for a reason outside ``run_job``
        (e.g. its Ray worker died): status "failed", ``error`` on one line."""
        record = self._base_record(job)
        record.update(status="failed", error=" ".join(error.split()), traceback=traceback_text, finished=_now())
        return record

    def run_job(self, job: Job) -> dict[str, Any]:
        """Run one job and return its record; any exception becomes a failed record."""
        record = self._base_record(job)
        try:
            record.update(self._execute(job))
            record["status"] = "ok"
        except Exception as e:  # a job's failure must not stop the suite
            record["status"] = "failed"
            record["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"
            record["traceback"] = traceback.format_exc()
        record["finished"] = _now()
        return record

    # -- internals ----------------------------------------------------------------------
    def _dataset(self, job: Job) -> Dataset:
        key = (job.dataset, job.data_root)
        if key not in self._datasets:
            self._datasets[key] = get_dataset(job.dataset, job.data_root)
        return self._datasets[key]

    def _split(self, job: Job, name: str):
        """Split ``name`` of the job's dataset; without its unreadable samples (probed once per
        runner and split) when the job skips bad samples."""
        split = self._dataset(job).split(name)
        if not job.skip_bad_samples:
            return split
        key = (job.dataset, job.data_root, name)
        if key not in self._skipping:
            self._skipping[key] = SkippingSplit(split)
        return self._skipping[key]

    def _base_record(self, job: Job) -> dict[str, Any]:
        cls = None
        try:
            cls = method_class(job.method)
        except Exception:
            pass
        return {
            "schema": SCHEMA, "job_id": job.job_id, "suite": job.suite, "method": job.method,
            "kind": cls.kind if cls else None, "dataset": job.dataset, "data_root": job.data_root,
            "eval_split": job.eval_split, "settings": job.settings, "seed": job.seed,
            "status": None, "error": None, "traceback": None,
            "miou": None, "pixel_acc": None, "mean_acc": None, "fwiou": None, "bf": None, "iou": None,
            "class_names": None, "miou_convention": None, "miou_by_convention": None,
            "n_train": None, "n_eval": None, "fit_time_s": None, "predict_time_per_image_s": None,
            "images_per_s": None, "params": None,
            "device": job.device, "device_name": None, "versions": provenance.versions(),
            "git_commit": provenance.git_commit(), "command": job.command(self.out_dir),
            "host": platform.node(), "started": _now(), "finished": None, "extra": {}, "predictions": [],
        }

    def _execute(self, job: Job) -> dict[str, Any]:
        dataset = self._dataset(job)
        train = self._split(job, "train")
        evaluation = self._split(job, job.eval_split)
        used = [train, evaluation]
        info = evaluation.info

        seed_everything(job.seed)
        method: Method = create_method(job.method, job.settings, seed=job.seed, device=job.device, progress=self.progress)
        method.run_dir = self.out_dir / "runs" / job.job_id  # where methods may keep curves/checkpoints
        method.resume_interrupted = self.resume
        if hasattr(method, "set_validation") and "val" in dataset.split_names():
            used.append(self._split(job, "val"))
            method.set_validation(used[-1])

        _, fit_time = timed(lambda: method.fit(train), method.sync)

        scorer = Scorer(info.num_classes, info.ignore_index, convention=job.miou_convention)
        oracle = Scorer(info.num_classes, info.ignore_index, boundary=False) if hasattr(method, "partition_oracle") else None
        pred_dir = self.out_dir / "predictions" / job.job_id
        save_samples(self.out_dir, dataset, evaluation)
        saved: list[str] = []
        times: list[float] = []
        warm = False
        for i, sample in enumerate(tqdm(evaluation, desc=f"{job.method}: predict {job.eval_split}",
                                        unit="img", leave=False, disable=not self.progress)):
            if not warm:  # one untimed call: lazy initialisation, caches, kernel selection
                method.predict(sample.image)
                warm = True
            pred, seconds = timed(lambda: method.predict(sample.image), method.sync)
            times.append(seconds)
            pred = np.asarray(pred)
            if pred.shape != sample.label.shape:
                raise ValueError(f"{job.method} returned a {pred.shape} map for image {sample.id} of size {sample.label.shape}")
            scorer.update(pred, sample.label)
            if oracle is not None:
                best = np.asarray(method.partition_oracle(sample.image, sample.label))
                if info.ignore_index is not None:  # all-void regions: their pixels are not scored anyway
                    best = np.where((best == info.ignore_index) & (sample.label == info.ignore_index), 0, best)
                oracle.update(best, sample.label)
            if i < N_SAVED_PREDICTIONS:
                path = pred_dir / f"{sample.id}.png"
                _write_png_atomic(path, _index_png(pred))
                saved.append(str(path.relative_to(self.out_dir)))

        result = scorer.result()
        per_image = float(np.mean(times))
        extra = dict(method.extra_metrics())
        if oracle is not None:
            extra["oracle_miou"] = oracle.result()["miou"]
        if job.skip_bad_samples:  # say which samples the scores leave out (see bench.report)
            skipped = {s.name: s.skipped for s in used if isinstance(s, SkippingSplit)}
            extra["skip_bad_samples"] = True
            extra["skipped_samples"] = sum(len(v) for v in skipped.values())
            extra["skipped_sample_list"] = [x.as_dict() for v in skipped.values() for x in v]
        return {
            "miou": result["miou"], "pixel_acc": result["pixel_acc"], "mean_acc": result["mean_acc"],
            "fwiou": result["fwiou"], "bf": result["bf"], "iou": result["iou"],
            "class_names": list(info.class_names), "miou_convention": result["miou_convention"],
            "miou_by_convention": result["miou_by_convention"],
            "n_train": len(train), "n_eval": len(evaluation), "fit_time_s": fit_time,
            "predict_time_per_image_s": per_image, "images_per_s": 1.0 / per_image if per_image > 0 else None,
            "params": method.num_parameters(), "device_name": provenance.device_name(job.device),
            "settings": method.settings_dict(), "extra": extra, "predictions": saved,
        }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

