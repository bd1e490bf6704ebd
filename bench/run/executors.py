"""Executors: where the jobs of a run execute. ``local`` (the default) is :meth:`Runner.run`,
one job after the other in this process, or with ``--workers N`` N at a time in local worker
processes (:mod:`bench.run.processes`); ``ray`` runs each job as a Ray task.

The Ray executor (:func:`run_with_ray`) sends every job still to run (the same skip rule
as a local run: jobs with an ok record are skipped unless ``force``) to a Ray cluster as
one task, with the resources it needs: ``num_gpus=1`` when the job's device is ``cuda*``,
else 0, and ``num_cpus`` (1 by default). The task calls the same :meth:`Runner.run_job` as
a local run and returns its record; the driver (this process) writes each record with
the same atomic write into the same records folder as soon as its task finishes, so
the leaderboard is built exactly as for a local run and a crash of the driver loses only
the jobs not yet finished. The driver holds each job's claim from submission until its
record is written, so another run into the same folder skips it meanwhile.

**Shared file system.** A task writes its prediction PNGs, samples and run folder into
the output folder itself, and runs in the driver's working directory, so relative
``--out`` and ``--data-root`` paths mean what they mean to the driver. This is right for a
local Ray instance (``ray.init()`` on this machine) and for a cluster whose nodes mount the
working directory, output folder and data at the same paths; other clusters are not
supported.

**Worker death.** A job that raises is a failed record made by ``run_job``, as locally. A
task whose worker process dies (killed, out of memory, segfault) is retried by Ray up to
``max_retries`` times; when the retries are spent the job gets a failed record whose
error names the worker death, and the other jobs go on.

Ray is imported only here, only when the Ray executor is used; without it installed the
executor raises :class:`RayNotInstalledError` (one line, with the install command).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
from typing import Any, Callable, Iterator, Sequence

from bench.errors import SegbenchError
from bench.record import Record
from bench.run.plan import Job
from bench.run.runner import Busy, Runner

#: executor names for ``python -m bench run --executor``; "local" is the default
EXECUTORS = ("local", "ray")
DEFAULT_MAX_RETRIES = 2
DEFAULT_NUM_CPUS = 1.0
INSTALL_HINT = 'pip install ".[ray]"'


class ExecutorError(SegbenchError):
    """An executor that cannot be used (unknown name, bad option, Ray missing)."""


class RayNotInstalledError(ExecutorError, ImportError):
    """``--executor ray`` without Ray installed."""


def check_executor(name: str) -> None:
    if name not in EXECUTORS:
        raise ExecutorError(f"--executor must be one of {', '.join(EXECUTORS)}, not {name!r}")


def import_ray():
    """The ``ray`` module, or a one-line :class:`RayNotInstalledError` saying how to get it."""
    try:
        import ray
    except ImportError as e:
        raise RayNotInstalledError(f"--executor ray needs Ray, which is not installed here ({e}); "
                                   f"install it with: {INSTALL_HINT}") from None
    return ray


# -- in the worker ------------------------------------------------------------------------
#: one Runner per (working dir, output folder) in each worker process: Ray reuses workers,
#: so datasets are opened once per worker rather than once per job
_WORKER_RUNNERS: dict[tuple[str, str, bool], Runner] = {}


def run_job_task(job: Job, out_dir: str, cwd: str, setup_modules: Sequence[str] = (), resume: bool = True
                 ) -> Record:
    """The body of a Ray task: one job's record, computed in a worker process.

    ``setup_modules`` are imported first. The task receives the job by value but the worker
    looks its method up by name in its own registry (``bench.method``), which knows the
    methods of installed packages (entry points); a method registered in code instead (a
    test, a notebook) must be registered in the worker too, and importing the module that
    registers it is the plain way to do that. The module must be importable in the worker (installed, or on the
    worker's PYTHONPATH, e.g. through ``runtime_env={"env_vars": {"PYTHONPATH": ...}}``).
    """
    for name in setup_modules:
        importlib.import_module(name)
    if not os.path.isdir(cwd):
        raise ExecutorError(f"the driver's working directory {cwd} does not exist on node {platform.node()}: "
                            "the Ray executor needs the same file system on every node")
    before = os.getcwd()
    os.chdir(cwd)  # a Ray worker runs one task at a time: changing its working directory is safe
    try:
        key = (cwd, out_dir, resume)
        if key not in _WORKER_RUNNERS:
            _WORKER_RUNNERS[key] = Runner(out_dir, progress=False, resume=resume)  # no bars from workers
        return _WORKER_RUNNERS[key].run_job(job)
    finally:
        os.chdir(before)


# -- in the driver ------------------------------------------------------------------------
def run_with_ray(runner: Runner, jobs: list[Job], *, address: str | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, num_cpus: float = DEFAULT_NUM_CPUS,
                 setup_modules: Sequence[str] = ()) -> dict[str, int]:
    """Run ``jobs`` as Ray tasks, writing their records through ``runner``; counts by outcome.

    Uses the Ray instance this process is already connected to, if any; else connects to
    ``address`` (None: ``RAY_ADDRESS`` or a new local instance, shut down at the end).
    ``max_retries``: how many times a task whose worker died is run again.
    """
    ray = import_ray()
    if max_retries < 0:
        raise ExecutorError(f"--max-retries must be 0 or more, not {max_retries}")
    if not num_cpus > 0:
        raise ExecutorError(f"--cpus-per-job must be more than 0, not {num_cpus}")
    todo, skipped = runner.start(jobs)
    if not todo:
        return runner.collect([], total=len(jobs), skipped=skipped)

    started_here = not ray.is_initialized()
    if started_here:
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address)  # an existing cluster (ray:// clients take few init options)
        else:
            ray.init(include_dashboard=False)  # a new local instance, gone at ray.shutdown()
    refs: dict[Any, Job] = {}
    claims: dict[str, Any] = {}
    try:
        task = ray.remote(run_job_task)
        if any(job.device.startswith("cuda") for job in todo) and not ray.cluster_resources().get("GPU"):
            raise ExecutorError("--device cuda: the Ray cluster has no GPU, so its jobs would wait forever "
                                "(start Ray on GPU nodes, or use --device cpu)")

        def submit(job: Job) -> None:
            options = dict(num_cpus=num_cpus, num_gpus=1 if job.device.startswith("cuda") else 0,
                           max_retries=max_retries, retry_exceptions=False, name=f"segbench:{job.job_id}")
            ref = task.options(**options).remote(job, str(runner.out_dir), os.getcwd(), tuple(setup_modules),
                                                 runner.resume)
            refs[ref] = job

        busy: list[Busy] = []
        #: jobs that share a fit with a submitted one (Job.fit_id): submitted when it finishes,
        #: so that they load its saved fit instead of fitting the same thing beside it
        waiting: dict[str, list[Job]] = {}
        for job in todo:
            held = runner.hold(job)
            if isinstance(held, Busy):
                busy.append(held)
                continue
            claims[job.job_id] = held
            if job.fit_id in waiting and not runner.fit_saved(job):
                waiting[job.fit_id].append(job)
            else:
                waiting.setdefault(job.fit_id, [])
                submit(job)
        return runner.collect(_finished(ray, runner, refs, claims, busy, max_retries, waiting, submit),
                              total=len(jobs), skipped=skipped)
    finally:
        for ref in refs:  # only unfinished ones are left: driver interrupted or failed
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        for claim in claims.values():
            claim.release()
        if started_here:
            ray.shutdown()


def _finished(ray, runner: Runner, refs: dict, claims: dict, busy: list[Busy], max_retries: int,
              waiting: dict[str, list[Job]], submit: Callable[[Job], None]) -> Iterator[Record | Busy]:
    """The jobs not run here, then records in the order their tasks finish; each job's claim
    is released once the collector has written its record (when the next one is asked for).
    A finished job's record is written before the next job of its fit is submitted."""
    yield from busy
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            job = refs.pop(ref)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayError as e:
                record = runner.failed_record(job, _describe(ray, e, max_retries), str(e))
            yield record
            claims.pop(job.job_id).release()
            if waiting.get(job.fit_id):
                submit(waiting[job.fit_id].pop(0))


def _describe(ray, error: Exception, max_retries: int) -> str:
    """One line for a task that returned no record."""
    exc = ray.exceptions
    cause = getattr(error, "cause", None)  # RayTaskError wraps what was raised in the task
    died = tuple(c for c in (getattr(exc, "WorkerCrashedError", None), getattr(exc, "OutOfMemoryError", None),
                             getattr(exc, "NodeDiedError", None)) if c is not None)
    for e in (error, cause):
        if e is not None and isinstance(e, died):
            first = (str(e).strip().splitlines() or [""])[0]
            return (f"{type(e).__name__}: the Ray worker running this job died, {max_retries + 1} time(s) "
                    f"(1 run + {max_retries} retries, --max-retries); {first}")
    shown = cause if isinstance(cause, BaseException) else error
    first = (str(shown).strip().splitlines() or [""])[0]
    return f"{type(shown).__name__}: {first}"
