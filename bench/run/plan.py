"""Jobs and planning: a suite expanded into jobs (method x settings x dataset x seed), each
named by a job id that hashes exactly what defines its result."""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import SegbenchError
from bench.method import fit_settings, make_settings, method_class
from bench.record import job_id
from bench.suites import Suite, SuiteError


#: the suite name of the one job that `run --method` runs without a suite file
COMMAND_LINE_SUITE = "command-line"


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
    #: every setting of the method, defaults filled in (the record keeps them all)
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    miou_convention: str = "mmseg"
    #: leave out samples that cannot be read (DatasetError) instead of failing the job
    skip_bad_samples: bool = False

    @property
    def job_id(self) -> str:
        """``<method>-<hash>`` of what changes the result (:func:`bench.record.job_id`)."""
        return job_id(self.method, self.settings, self.dataset, self.data_root, self.eval_split, self.seed,
                      self.device, self.miou_convention, self.skip_bad_samples)

    @property
    def fit_id(self) -> str:
        """``<method>-<hash>`` of what changes the fit alone (the job id without the evaluation
        split, the mIoU convention and the method's predict settings such as test-time
        augmentation, :func:`bench.method.predict_setting`): jobs that differ only in those
        share one fit."""
        try:
            settings = fit_settings(method_class(self.method), self.settings)
        except SegbenchError:  # a method no longer installed: every setting counts
            settings = self.settings
        return job_id(self.method, settings, self.dataset, self.data_root, "(fit)", self.seed,
                      self.device, "(fit)", self.skip_bad_samples)

    def command(self, out_dir: str | Path) -> str:
        """The command line that reruns exactly this job."""
        if self.suite == COMMAND_LINE_SUITE:  # `run --method`: no suite file; the settings not at their defaults
            defaults = dataclasses.asdict(method_class(self.method).Settings())
            given = {k: v for k, v in self.settings.items() if k not in defaults or v != defaults[k]}
            what = ["--method", self.method, "--settings", json.dumps(given, sort_keys=True)]
        else:
            what = ["--suite", self.suite, "--only", self.method]
        parts = ["python", "-m", "bench", "run", *what, "--dataset", self.dataset]
        if self.data_root:
            parts += ["--data-root", str(self.data_root)]
        parts += ["--eval-split", self.eval_split, "--device", self.device, "--seeds", str(self.seed),
                  "--miou-convention", self.miou_convention, "--out", str(out_dir)]
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
            jobs.append(Job(suite.name, sj.method, dataset, data_root, eval_split, int(seed), device, settings,
                            miou_convention, skip_bad_samples=bool(skip_bad_samples)))
    return jobs
