"""The local parallel executor: ``python -m bench run --workers N`` runs N jobs at a time,
each in a worker process of its own with ``cpus // N`` threads.

On a CPU, small networks use more than one thread poorly (a training step of the default
suite's FCN-8s takes 608 ms on one thread and 462 ms on two, docs/BENCHMARKS.md), so two
one-thread jobs side by side do more work than one two-thread job. The standard library's
``ProcessPoolExecutor`` is not used because the death of one worker breaks its whole pool
and fails every job running in it; here a dead worker fails its own job only (a failed
record naming the exit code) and is replaced.

Each worker is started once (``spawn``: a fresh interpreter, no state copied from this one)
and runs jobs one after the other with its own :class:`Runner`, so a dataset is decoded
once per worker, not once per job. The driver (this process) holds each job's claim from
the moment it hands the job out until its record is written, writes every record itself
as it arrives (the same atomic write as a serial run) and logs it; so the records, the
leaderboard and a rerun's skips are exactly those of a serial run. The timing differs: jobs
share the machine, so each record says how many workers there were (``extra.workers``, at
most that many jobs ran side by side) and how many threads each had; ``bench speed`` times a
method alone. So may a network's last digits: fewer threads sum floats in another order.
Each worker decodes its own copy of the data, and with ``--device cuda`` all share the GPU.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

from bench.errors import SegbenchError
from bench.method import method_class
from bench.record import Record
from bench.run.plan import Job
from bench.run.runner import Busy, Runner
from bench.threads import limit_threads

#: seconds to wait for a worker to exit once told to stop, before it is terminated
STOP_TIMEOUT_S = 10.0


class WorkersError(SegbenchError):
    """A bad ``--workers`` value."""


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Threads for each of ``workers`` processes on ``cpus`` cores (default: this machine's,
    as far as this process may use them): an even share, at least one."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // workers)


def run_with_workers(runner: Runner, jobs: list[Job], workers: int, threads: int | None = None,
                     setup_modules: Sequence[str] = ()) -> dict[str, int]:
    """Run ``jobs`` in ``workers`` worker processes of ``threads`` threads each (default
    :func:`threads_per_worker`), writing their records through ``runner``; counts by outcome.

    ``setup_modules`` are imported in each worker before its first job (methods registered
    in code rather than by an installed package, as with the Ray executor).
    """
    if workers < 1:
        raise WorkersError(f"--workers must be 1 or more, not {workers}")
    if threads is not None and threads < 1:
        raise WorkersError(f"threads per worker must be 1 or more, not {threads}")
    todo, skipped = runner.start(jobs)
    size = min(workers, len(todo))  # fewer jobs than workers: fewer workers, more threads each
    threads = threads_per_worker(max(size, 1)) if threads is None else threads
    if todo:
        runner.log(f"segbench: {size} job(s) at a time, each in a worker process with {threads} thread(s)")
    pool = _Pool(runner, size, threads, tuple(setup_modules))
    todo = sorted(todo, key=_short_last)
    try:
        return runner.collect(pool.results(todo), total=len(jobs), skipped=skipped)
    finally:
        pool.close()


def _short_last(job: Job) -> int:
    """Sort key that hands out the networks first (stable otherwise): training takes minutes,
    a classical fit seconds, so short jobs left for the end fill the workers evenly instead of
    one long training running alone at the end (longest-first scheduling, with the kind of
    method as the estimate of its length)."""
    try:
        return 0 if method_class(job.method).kind == "deep" else 1
    except SegbenchError:  # an unknown method fails fast in its worker, with its record
        return 1


def _next_job(queue: list[Job], running: list[Job], runner: Runner) -> Job | None:
    """Take the first job of ``queue`` that shares no fit (:attr:`Job.fit_id`) with a running
    job, or whose fit is saved already (None when there is none): a job that shares an
    unsaved fit waits and then loads it instead of fitting the same thing again beside it."""
    fitting = {job.fit_id for job in running}
    for i, job in enumerate(queue):
        if job.fit_id not in fitting or runner.fit_saved(job):
            return queue.pop(i)
    return None


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    job: Job | None = None


class _Pool:
    """Worker processes that each run one job at a time; the driver's side of the protocol:
    send a :class:`Job`, receive its :class:`Record`; send None to stop."""

    def __init__(self, runner: Runner, size: int, threads: int, setup_modules: tuple[str, ...]):
        self.runner = runner
        self.size = size
        self.threads = threads
        self.setup_modules = setup_modules
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.claims: dict[str, object] = {}

    def results(self, todo: list[Job]) -> Iterator[Record | Busy]:
        """A :class:`Busy` for each job another run holds, and each job's record in the order
        they finish; a job's claim is released when the collector asks for the next item
        (so after it wrote the record)."""
        queue = list(todo)
        for _ in range(self.size):  # one by one: an interrupt half way leaves each started one to close()
            self.workers.append(self._start())
        while queue or any(w.job is not None for w in self.workers):
            for i, worker in enumerate(self.workers):
                if worker.job is None and queue and not worker.process.is_alive():  # died while idle
                    worker = self._replace(i)
                while worker.job is None and queue:
                    job = _next_job(queue, [w.job for w in self.workers if w.job is not None], self.runner)
                    if job is None:  # each job left shares a fit with a running one: wait for it
                        break
                    held = self.runner.hold(job)
                    if isinstance(held, Busy):
                        yield held
                        continue
                    self.claims[job.job_id] = held
                    worker.job = job
                    try:
                        worker.conn.send(job)
                    except OSError:  # it died since the check above: a fresh one takes the job
                        worker = self._replace(i)
                        worker.job = job
                        worker.conn.send(job)
                    self.runner.log(f"{job.method:>18s} on {job.dataset}/{job.eval_split}: started "
                                    f"(worker {worker.process.pid})")
            busy = [w for w in self.workers if w.job is not None]
            if not busy:
                continue
            ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            worker = next(w for w in busy if w.conn in ready or w.process.sentinel in ready)
            job, worker.job = worker.job, None
            record = self._receive(worker)
            if record is None:  # the worker died with this job; it is replaced when a job needs it
                self._discard(worker)
                record = self.runner.failed_record(job, _death(worker.process, self.threads))
            record.extra = {**(record.extra or {}), "workers": self.size, "threads": self.threads}
            yield record
            self.claims.pop(job.job_id).release()

    def close(self) -> None:
        """Stop the workers (terminate those still busy: an interrupted run) and release the
        claims still held."""
        for worker in self.workers:
            if worker.job is None and worker.process.is_alive():
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self.workers:
            if worker.job is not None:
                worker.process.terminate()
            worker.process.join(STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if not worker.conn.closed:
                worker.conn.close()
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()

    def _start(self) -> _Worker:
        here, there = self.context.Pipe()
        # not a daemon: a job may start processes of its own (DataLoader workers); close() and
        # the worker's watch on its parent stop it
        process = self.context.Process(target=_serve, name="segbench-worker",
                                       args=(there, str(self.runner.out_dir), self.runner.resume,
                                             self.runner.force, self.threads, self.setup_modules))
        process.start()
        there.close()
        return _Worker(process, here)

    def _replace(self, i: int) -> _Worker:
        """Reap the dead worker ``i`` and start a fresh one in its place."""
        self._discard(self.workers[i])
        self.workers[i] = self._start()
        return self.workers[i]

    @staticmethod
    def _discard(worker: _Worker) -> None:
        """Reap a dead worker and close its end of the pipe."""
        worker.process.join()
        worker.conn.close()

    @staticmethod
    def _receive(worker: _Worker) -> Record | None:
        """The record the worker sent for its job, or None when it died before sending it."""
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except (EOFError, OSError):
            pass
        worker.process.join()
        return None


def _death(process: multiprocessing.process.BaseProcess, threads: int) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}; its traceback is on the run's standard error"
    if code == -signal.SIGKILL:
        how += "; out of memory is a common cause"
    return (f"WorkerDied: the worker process running this job died ({how}); the other jobs went on "
            f"({threads} thread(s) per worker)")


# -- in the worker ------------------------------------------------------------------------
def _serve(conn: multiprocessing.connection.Connection, out_dir: str, resume: bool, force: bool,
           threads: int, setup_modules: tuple[str, ...]) -> None:
    """A worker's life: set its thread count, then run each job it receives until None. It
    exits when the driver dies (killed): the driver's claims are gone then, and another run
    could take the job this worker is running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops us
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # for libraries loaded from here on
    with limit_threads(threads):  # and those loaded already (numpy's BLAS), OpenCV, torch
        for name in setup_modules:
            importlib.import_module(name)
        runner = Runner(out_dir, force=force, progress=False, resume=resume)
        while (job := conn.recv()) is not None:
            conn.send(runner.run_job(job))
