"""Running suites: plan (jobs and their ids), execute one job, the runner that claims, runs
and records jobs, executors (local, Ray) and provenance."""

from bench.run.plan import Job, RunError, plan_jobs
from bench.run.runner import Busy, Runner

__all__ = ["Busy", "Job", "RunError", "Runner", "plan_jobs"]
