"""Suites: plain YAML files in this folder, each a list of (method, settings) jobs.

A suite file looks like::

    description: every classical method
    dataset: ccp-mini          # used when the command line names no --dataset
    include: [classical]       # optional: the jobs of other suites, in order
    exclude: [superpixel-unary]  # optional: leave out these methods' jobs (included or own)
    defaults:                  # optional: settings every job of this file starts from
      n_segments: 400
    jobs:
      - method: sobel
      - method: superpixel-crf
        settings: {n_segments: 300}   # a job's own settings override the defaults

A default applies to a job of this file only when the job's method has a setting of that
name (a deep-only default such as ``epochs`` does not reach a classical job); a default that
no job of the file can take is an error. Included suites keep their own defaults.
Nothing else is read: what a job runs is its method name and settings, written into its
record. Unknown keys are errors that name the file and the job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import SegbenchError

SUITE_DIR = Path(__file__).resolve().parent


class SuiteError(SegbenchError, ValueError):
    """A suite that cannot be read; the message names the file and the job."""


@dataclass(frozen=True)
class SuiteJob:
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # "file:line" of the job in its suite file, for error messages


@dataclass
class Suite:
    name: str  # what `run --suite` takes: a built-in suite's name, else the file's path as given
    description: str
    dataset: str | None
    jobs: list[SuiteJob]
    path: Path


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def _suite_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = SUITE_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise SuiteError(f"unknown suite '{name_or_path}'; known: {', '.join(suite_names())} (or a path to a .yaml file)")


def _suite_ref(path: Path) -> str:
    """How `run --suite` finds this file again: the name of a built-in suite, the path as given
    for any other file (its stem would name a built-in suite or none)."""
    if path.resolve() == (SUITE_DIR / f"{path.stem}.yaml").resolve():
        return path.stem
    return str(path)


def _job_lines(path: Path) -> list[int]:
    """1-based line of each item of the suite's ``jobs`` list (the file already parsed)."""
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    for key, value in getattr(root, "value", []):
        if getattr(key, "value", None) == "jobs" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _own_jobs(path: Path, raw_jobs: Any) -> list[SuiteJob]:
    """The ``jobs`` list of one suite file, each job checked and located (file:line)."""
    if not isinstance(raw_jobs, list):
        raise SuiteError(f"{path}: 'jobs' must be a list")
    lines = _job_lines(path)
    jobs = []
    for i, raw in enumerate(raw_jobs, 1):
        where = f"{path}:{lines[i - 1]}" if i <= len(lines) else str(path)
        if isinstance(raw, str):
            raw = {"method": raw}
        if not isinstance(raw, dict) or "method" not in raw:
            raise SuiteError(f"{where}: job {i}: needs a 'method'")
        extra = set(raw) - {"method", "settings"}
        if extra:
            raise SuiteError(f"{where}: job {i} ({raw['method']}): unknown key(s) {', '.join(sorted(extra))}")
        settings = raw.get("settings") or {}
        if not isinstance(settings, dict):
            raise SuiteError(f"{where}: job {i} ({raw['method']}): 'settings' must be a mapping")
        jobs.append(SuiteJob(str(raw["method"]), dict(settings), where))
    return jobs


def _apply_defaults(path: Path, defaults: Any, jobs: list[SuiteJob]) -> list[SuiteJob]:
    """``jobs`` with the file's ``defaults`` under their own settings (methods that have them)."""
    if not defaults:
        return jobs
    if not isinstance(defaults, dict):
        raise SuiteError(f"{path}: 'defaults' must be a mapping of setting names to values")
    from bench.method import method_class  # the registry: loaded only for suites with defaults

    used: set[str] = set()
    out = []
    for job in jobs:
        try:
            fields = {f.name for f in dataclasses.fields(method_class(job.method).Settings)}
        except SegbenchError as e:
            raise SuiteError(f"{job.where}: {e}") from None
        applied = {k: v for k, v in defaults.items() if k in fields}
        used |= applied.keys()
        out.append(SuiteJob(job.method, {**applied, **job.settings}, job.where))
    unused = sorted(set(defaults) - used)
    if unused:
        raise SuiteError(f"{path}: defaults {', '.join(unused)}: no job of this file has such a setting")
    return out


def _exclude(path: Path, names: Any, jobs: list[SuiteJob]) -> list[SuiteJob]:
    """``jobs`` without those of the methods named in ``exclude``; a name that matches no job
    is an error (a typo would otherwise leave the job in silently)."""
    if names is None:
        return jobs
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SuiteError(f"{path}: 'exclude' must be a list of method names")
    unmatched = sorted(set(names) - {job.method for job in jobs})
    if unmatched:
        raise SuiteError(f"{path}: exclude {', '.join(unmatched)}: no job of this suite runs such a method")
    return [job for job in jobs if job.method not in names]


def load_suite(name_or_path: str, _seen: tuple[str, ...] = ()) -> Suite:
    path = _suite_path(name_or_path)
    if str(path) in _seen:
        raise SuiteError(f"{path}: suite includes itself (via {' -> '.join(_seen)})")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SuiteError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(doc, dict):
        raise SuiteError(f"{path}: a suite is a mapping with 'jobs' (and optionally description, dataset, include)")
    unknown = set(doc) - {"description", "dataset", "include", "exclude", "defaults", "jobs"}
    if unknown:
        raise SuiteError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    jobs: list[SuiteJob] = []
    for inc in doc.get("include") or []:
        jobs.extend(load_suite(str(inc), _seen + (str(path),)).jobs)
    jobs.extend(_apply_defaults(path, doc.get("defaults"), _own_jobs(path, doc.get("jobs") or [])))
    jobs = _exclude(path, doc.get("exclude"), jobs)
    if not jobs:
        raise SuiteError(f"{path}: suite has no jobs")
    return Suite(
        name=_suite_ref(path),
        description=str(doc.get("description", "")),
        dataset=doc.get("dataset"),
        jobs=jobs,
        path=path,
    )
