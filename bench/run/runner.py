"""The runner: which jobs still need running, one claimed job at a time, its record and
files written as soon as it ends, a line logged for each.

A rerun skips jobs with an ok record (``force`` redoes them). A job is run only while this
process holds its claim (:meth:`bench.store.RecordStore.claim`): a job claimed by another
live run is skipped and counted as such, a claim left by a dead run is taken over. A job
that raises is recorded as failed with its error, and the run goes on.
"""

from __future__ import annotations

import datetime as _dt
import platform
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from bench.datasets import DatasetError
from bench.errors import SegbenchError
from bench.method import method_class
from bench.record import SCHEMA, Record
from bench.run.provenance import git_commit, versions
from bench.run.execute import DataCache, execute
from bench.run.outputs import check_output_dir, save_per_image, save_predictions, save_samples
from bench.run.plan import Job
from bench.store import Claim, RecordStore


@dataclass(frozen=True)
class Busy:
    """A job not run here: a live run holds its claim, or it got an ok record meanwhile."""

    job: Job
    reason: str


class Runner:
    """Runs jobs locally, one after the other, and keeps the records folder up to date."""

    def __init__(self, out_dir: str | Path, force: bool = False, progress: bool = True,
                 on_event: Callable[[str], None] | None = None, resume: bool = True):
        self.out_dir = Path(out_dir)
        self.store = RecordStore(self.out_dir)
        self.force = force
        #: a job whose earlier attempt was interrupted continues from what it left in its run
        #: folder (out/runs/<job_id>: the id covers settings, data and seed, so it is the same
        #: job's); off with ``resume=False`` and always off with ``force`` (redo means redo)
        self.resume = resume and not force
        self.progress = progress
        self.log = on_event or (lambda msg: tqdm.write(msg))
        self.data = DataCache()
        #: one file a fit that jobs share (bench.run.execute)
        self.fits_dir = self.out_dir / "fits"

    # -- public -------------------------------------------------------------------------
    def check_data(self, jobs: list[Job]) -> None:
        """Every dataset named by the jobs exists, with a train split and the evaluation split.

        Raises DatasetError before any work, so a typo costs seconds, not a suite.
        """
        for job in jobs:
            names = self.data.dataset(job).split_names()
            for needed in ("train", job.eval_split):
                if needed not in names:
                    raise DatasetError(f"dataset '{job.dataset}' ({job.data_root or 'built in'}) has no "
                                       f"'{needed}' split; it has: {', '.join(names) or 'none'}")

    def run(self, jobs: list[Job]) -> dict[str, int]:
        """Run the jobs here, one after the other (the local executor); counts by outcome.

        Other executors (Ray: :mod:`bench.run.executors`; ``--workers``:
        :mod:`bench.run.processes`) do the same with :meth:`start`, :meth:`hold` and
        :meth:`collect`, running ``run_job`` elsewhere.
        """
        todo, skipped = self.start(jobs)
        return self.collect(self._run_claimed(todo), total=len(jobs), skipped=skipped)

    def start(self, jobs: list[Job]) -> tuple[list[Job], int]:
        """Checks before any work (output folder, data, records readable), then the jobs still
        to run: those without an ok record (every job with ``force``). Returns (jobs to run,
        number skipped)."""
        check_output_dir(self.out_dir)
        self.check_data(jobs)
        self.store.open()
        done = set() if self.force else self.store.done_ids()
        todo = [job for job in jobs if job.job_id not in done]
        return todo, len(jobs) - len(todo)

    def hold(self, job: Job) -> Claim | Busy:
        """This process's claim on ``job``, to hold while it runs elsewhere (another process,
        a Ray task); a :class:`Busy` when a live run holds it or it got an ok record meanwhile."""
        claim = self.store.claim(job.job_id)
        if claim is None:
            return Busy(job, f"claimed by a live run ({self.store.claim_holder(job.job_id)})")
        existing = None if self.force else self.store.get(job.job_id)
        if existing is not None and existing.ok:
            claim.release()
            return Busy(job, "done by another run meanwhile")
        return claim

    def fit_saved(self, job: Job) -> bool:
        """Whether the fit ``job`` shares with others (:attr:`Job.fit_id`) is saved here already,
        so that the jobs of that fit can load it side by side (never with ``force``: each of
        them fits again)."""
        return not self.force and (self.fits_dir / f"{job.fit_id}.json").exists()

    def collect(self, results: Iterable[Record | Busy], total: int, skipped: int = 0) -> dict[str, int]:
        """Write each finished record as it comes, log it and count it.

        ``results`` may be lazy (the local run computes each one when asked), so every record
        is on disk before the next is asked for; ``records.jsonl`` is exported at the end.
        """
        counts = {"ok": 0, "failed": 0, "skipped": skipped, "busy": 0}
        try:
            with tqdm(total=total, initial=skipped, desc="suite", unit="job", disable=not self.progress) as bar:
                for item in results:
                    bar.update()
                    if isinstance(item, Busy):
                        counts["busy"] += 1
                        self.log(f"{item.job.method:>18s} on {item.job.dataset}: not run here, {item.reason}")
                        continue
                    self.store.write(item)
                    counts[item.status] += 1
                    bar.set_postfix_str(f"{item.method} on {item.dataset}")
                    self._log_record(item)
        finally:
            self.store.export()
        return counts

    def run_job(self, job: Job) -> Record:
        """Run one job and return its record (its prediction files written); any exception
        becomes a failed record."""
        record = self.base_record(job)
        try:
            output = execute(job, self.data, self.out_dir / "runs" / job.job_id, self.resume, self.progress,
                             fits_dir=self.fits_dir, reuse_fit=not self.force)
            save_samples(self.out_dir, job.dataset, self.data.split(job, job.eval_split))
            output.fields["predictions"] = save_predictions(self.out_dir, job.job_id, output.predictions)
            output.fields["per_image"] = save_per_image(self.out_dir, job, output.per_image, output.samples)
            for key, value in output.fields.items():
                setattr(record, key, value)
            record.status = "ok"
        except Exception as e:  # a job's failure must not stop the suite
            record.status = "failed"
            record.error = f"{type(e).__name__}: {' '.join(str(e).split())}"
            record.traceback = traceback.format_exc()
        record.finished = _now()
        return record

    def failed_record(self, job: Job, error: str, traceback_text: str | None = None) -> Record:
        """The record of a job that did not run to its end for a reason outside ``run_job``
        (e.g. its Ray worker died): status "failed", ``error`` on one line."""
        record = self.base_record(job)
        record.status, record.error, record.traceback = "failed", " ".join(error.split()), traceback_text
        record.finished = _now()
        return record

    def base_record(self, job: Job) -> Record:
        """A record with the job's identity and provenance filled in, no outcome yet."""
        try:
            cls = method_class(job.method)
            kind, version = cls.kind, cls.version
        except SegbenchError:  # the record says the method is unknown through its error
            kind = version = None
        return Record(
            job_id=job.job_id, method=job.method, method_version=version, kind=kind, dataset=job.dataset,
            suite=job.suite, data_root=job.data_root, eval_split=job.eval_split, settings=dict(job.settings),
            seed=job.seed, device=job.device, versions=versions(), git_commit=git_commit(),
            command=job.command(self.out_dir), host=platform.node(), started=_now(), schema=SCHEMA,
        )

    # -- internals ----------------------------------------------------------------------
    def _run_claimed(self, todo: list[Job]) -> Iterator[Record | Busy]:
        """Each job's record, run with this process's claim held until the collector asks for
        the next one (so until it wrote the record); a :class:`Busy` for a job held elsewhere."""
        for job in todo:
            held = self.hold(job)
            if isinstance(held, Busy):
                yield held
                continue
            with held:
                yield self.run_job(job)

    def _log_record(self, record: Record) -> None:
        where = f"{record.method:>18s} on {record.dataset}/{record.eval_split}"
        if record.ok:
            miou = 100 * record.miou if record.miou is not None else float("nan")
            self.log(f"{where}: mIoU {miou:5.1f}  {record.images_per_s or float('nan'):.2f} img/s")
        else:
            self.log(f"{where}: FAILED: {record.error}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
