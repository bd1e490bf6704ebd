"""The record of one job: a typed, versioned dataclass, the one way records are written and
read, and the job id that names it.

Fields (every record has all of them; ``None`` where they do not apply):

- identity: ``schema``, ``job_id``, ``suite`` (a built-in suite's name, another suite file's path
  as given, ``command-line`` for ``run --method``), ``method``, ``method_version`` (the method's
  ``version``, which its job id hashes; None in older records), ``kind`` (classical|deep),
  ``dataset``, ``data_root``, ``eval_split``, ``settings`` (dict, every field), ``seed``
- outcome: ``status`` ("ok" | "failed"), ``error`` (one line), ``traceback``
- metrics: ``miou``, ``pixel_acc``, ``mean_acc``, ``fwiou``, ``bf``, ``iou`` (list, None for a
  NaN class), ``class_names``, ``miou_convention``, ``miou_by_convention`` (dict)
- cost: ``n_train``, ``n_eval``, ``fit_time_s``, ``predict_time_per_image_s``,
  ``images_per_s``, ``params``
- provenance: ``device``, ``device_name``, ``versions`` (dict), ``git_commit``, ``command``,
  ``started``, ``finished``, ``host``
- ``extra``: method-specific figures (dict); a job run with ``--skip-bad-samples`` adds
  ``skip_bad_samples``, ``skipped_samples`` and ``skipped_sample_list`` there
- ``predictions``: paths of saved prediction PNGs, relative to the results folder
- ``per_image``: path of the job's per-image data (``per_image/<job_id>.npz``, see
  :mod:`bench.per_image`), relative to the results folder; None in older records

Schema history: 1 (releases up to 0.1.0: ``job_id`` hashed every setting, also those that
do not change the result); 2 (``job_id`` hashes only result settings, see :func:`job_id`).
A schema-1 record is read as it was and given its schema-2 id, so a rerun of the same
suite finds it done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from bench.errors import SegbenchError

SCHEMA = 2


class RecordsError(SegbenchError, ValueError):
    """A record that cannot be read; the message names the file (and line)."""


def job_id(method: str, settings: dict[str, Any], dataset: str, data_root: str | None, eval_split: str,
           seed: int, device: str, miou_convention: str, skip_bad_samples: bool = False) -> str:
    """``<method>-<12 hex digits>``: a hash of exactly what defines a job's result.

    ``settings`` are reduced to the result settings that differ from the method's defaults
    (:func:`bench.method.id_settings`: runtime settings such as worker counts never count, and
    a setting added to a method later does not change the ids of jobs that leave it at its
    default), together with the method's ``version`` (raised when a default or the algorithm
    changes what a job computes); ``data_root`` counts as its absolute path.
    """
    key = {
        "method": method,
        "settings": id_settings_of(method, settings),
        "dataset": dataset,
        "data_root": str(Path(data_root).resolve()) if data_root else None,
        "eval_split": eval_split,
        "seed": int(seed),
        "device": device,
        "miou_convention": miou_convention,
        "id_schema": 2,
    }
    if skip_bad_samples:
        key["skip_bad_samples"] = True
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{method}-{digest}"


def method_defaults(method: str) -> dict[str, Any]:
    """Every setting of ``method`` at its default ({} when the method is no longer installed)."""
    import dataclasses

    from bench.method import method_class  # the registry; imported late: it loads plugins

    try:
        return dataclasses.asdict(method_class(method).Settings())
    except SegbenchError:
        return {}


def id_settings_of(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that tell a job of ``method`` from another (:func:`bench.method.id_settings`;
    every setting when the method is no longer installed)."""
    from bench.method import id_settings, method_class  # the registry; imported late: it loads plugins

    try:
        cls = method_class(method)
    except SegbenchError:  # a method no longer installed: every setting counts
        return dict(settings)
    return id_settings(cls, settings)


@dataclasses.dataclass
class Record:
    job_id: str
    method: str
    dataset: str
    suite: str = ""
    method_version: int | None = None
    kind: str | None = None
    data_root: str | None = None
    eval_split: str = "val"
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    status: str | None = None
    error: str | None = None
    traceback: str | None = None
    miou: float | None = None
    pixel_acc: float | None = None
    mean_acc: float | None = None
    fwiou: float | None = None
    bf: float | None = None
    iou: list[float | None] | None = None
    class_names: list[str] | None = None
    miou_convention: str | None = None
    miou_by_convention: dict[str, float | None] | None = None
    n_train: int | None = None
    n_eval: int | None = None
    fit_time_s: float | None = None
    predict_time_per_image_s: float | None = None
    images_per_s: float | None = None
    params: int | None = None
    device: str = "cpu"
    device_name: str | None = None
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    git_commit: str | None = None
    command: str | None = None
    host: str | None = None
    started: str | None = None
    finished: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    predictions: list[str] = dataclasses.field(default_factory=list)
    per_image: str | None = None
    schema: int = SCHEMA
    #: the id a schema-1 record was written under (None for records of this schema)
    legacy_job_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["legacy_job_id"] is None:
            del d["legacy_job_id"]
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "<record>") -> "Record":
        """A record from its JSON object; schema-1 records get their schema-2 ``job_id``.

        Raises :class:`RecordsError` naming ``where`` when ``d`` is not a record.
        """
        if not isinstance(d, dict) or not isinstance(d.get("job_id"), str):
            raise RecordsError(f"{where}: a record must be a JSON object with a job_id (a string)")
        missing = [k for k in ("method", "dataset") if not isinstance(d.get(k), str)]
        if missing:
            raise RecordsError(f"{where}: record {d['job_id']} has no {' or '.join(missing)}")
        schema = d.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise RecordsError(f"{where}: record {d['job_id']} has schema {schema!r}; this segbench reads "
                               f"schemas 1 to {SCHEMA} (upgrade segbench)")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values["extra"] = values.get("extra") or {}
        values["predictions"] = values.get("predictions") or []
        values["settings"] = values.get("settings") or {}
        values["versions"] = values.get("versions") or {}
        record = cls(**values)
        if schema == 1:
            record.legacy_job_id = record.job_id
            record.job_id = job_id(record.method, record.settings, record.dataset, record.data_root,
                                   record.eval_split, record.seed, record.device,
                                   record.miou_convention or "mmseg",
                                   bool(record.extra.get("skip_bad_samples")))
            record.schema = SCHEMA
        return record
