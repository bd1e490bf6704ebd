"""Job records: one JSON object a finished job, one line each in ``records.jsonl``.

Writes are atomic: the whole file is rewritten to a temporary file in the same folder,
flushed to disk and renamed over the old one, so a crash or a kill leaves either the old
file or the new one, never a torn line. A record is keyed by ``job_id`` (a hash of what
defines the job); writing a record with an existing id replaces the old one.

Record fields (all runs write all of them; ``null`` where they do not apply):

- identity: ``schema``, ``job_id``, ``suite``, ``method``, ``kind`` (classical|deep),
  ``dataset``, ``data_root``, ``eval_split``, ``settings`` (dict), ``seed``
- outcome: ``status`` ("ok" | "failed"), ``error`` (one line), ``traceback``
- metrics: ``miou``, ``pixel_acc``, ``mean_acc``, ``fwiou``, ``bf``, ``iou`` (list, null for
  a NaN class), ``class_names``, ``miou_convention``, ``miou_by_convention`` (dict)
- cost: ``n_train``, ``n_eval``, ``fit_time_s``, ``predict_time_per_image_s``,
  ``images_per_s``, ``params``
- provenance: ``device``, ``versions`` (dict), ``git_commit``, ``command``, ``started``,
  ``finished``, ``host``
- ``extra``: method-specific figures (dict); ``predictions``: PNG paths of saved
  predictions for the report's image grid, relative to the output folder
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from bench.errors import SegbenchError

SCHEMA = 1
RECORDS_FILE = "records.jsonl"


class RecordsError(SegbenchError, ValueError):
    """A records file that cannot be read; the message names the file and line."""


def _clean(value: Any) -> Any:
    """JSON has no NaN: write NaN/inf as null so every reader (not only Python) can parse it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return _clean(value.item())  # numpy / torch scalars
    return value


def read_records(path: str | Path) -> list[dict]:
    """All records of a file, in order (missing file -> empty list)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordsError(f"{path}:{lineno}: not a JSON record ({e.msg})") from None
            if not isinstance(rec, dict) or "job_id" not in rec:
                raise RecordsError(f"{path}:{lineno}: a record must be a JSON object with a job_id")
            records.append(rec)
    return records


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    """Atomically replace ``path`` with ``records`` (one JSON line each)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in records)
    fd, tmp = tempfile.mkstemp(prefix=".records-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def upsert_record(path: str | Path, record: dict) -> None:
    """Add ``record``, replacing any record with the same ``job_id``; atomic."""
    records = [r for r in read_records(path) if r["job_id"] != record["job_id"]]
    records.append(record)
    write_records(path, records)


def latest_by_job(records: Iterable[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in records:
        out[r["job_id"]] = r
    return out
