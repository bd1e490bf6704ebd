"""Job records: one JSON object a finished job, one line each in ``records.jsonl``.

Writes are atomic: the whole file is rewritten to a temporary file in the same folder,
flushed to disk and renamed over the old one, so a crash or a kill leaves either the old
file or the new one, never a torn line. A write that fails (disk full, read-only, I/O
error) leaves the old file as it was and raises :class:`RecordsWriteError` naming the file.
A record is keyed by ``job_id`` (a hash of what defines the job); writing a record with an
existing id replaces the old one. Reading is strict: a line that is not a whole JSON record
raises :class:`RecordsError` naming the file and the line.

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
- ``extra``: method-specific figures (dict); for a job run with ``--skip-bad-samples`` also
  ``skip_bad_samples`` (true), ``skipped_samples`` (how many samples the scores leave out)
  and ``skipped_sample_list`` (``{split, index, id, error}`` each, the error naming the file);
  ``n_train``/``n_eval`` then count the samples used
- ``predictions``: PNG paths of saved predictions for the report's image grid, relative to
  the output folder
"""

from __future__ import annotations

import contextlib
import errno
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
    """All records of a file, in order (missing file -> empty list).

    A line that is not a JSON object with a string ``job_id`` (bad JSON, a torn line, bytes
    that are not UTF-8) raises :class:`RecordsError` naming the file and the line number.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RecordsError(f"{path}: cannot read the records file ({e.strerror or e})") from None
    records = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordsError(f"{path}:{lineno}: not a JSON record (bytes that are not UTF-8 at column "
                               f"{e.start + 1})") from None
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordsError(f"{path}:{lineno}: not a JSON record ({e.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("job_id"), str):
            raise RecordsError(f"{path}:{lineno}: a record must be a JSON object with a job_id (a string)")
        records.append(rec)
    return records


class RecordsWriteError(SegbenchError, OSError):
    """The records file could not be written (disk full, read-only, ...); the message names it."""


def _new_file_mode(path: Path) -> int:
    """Permissions for the rewritten file: the old file's, else what umask gives a new file
    (``mkstemp`` alone would leave every records file readable by its owner only)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        status = Path("/proc/self/status").read_text()
        mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    """Atomically replace ``path`` with ``records`` (one JSON line each).

    The text goes to a temporary file in the same folder, is flushed and fsynced, and is
    renamed over ``path``; the folder is fsynced last. A failed write (ENOSPC, EROFS, EIO ...)
    removes the temporary file, leaves ``path`` as it was and raises
    :class:`RecordsWriteError` naming the file.
    """
    path = Path(path)
    text = "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in records)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".records-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        reason = e.strerror or str(e)
        hint = " (is the disk full?)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise RecordsWriteError(
            f"{path}: cannot write the records file: {reason}{hint}; the file is unchanged and the "
            "last job's result was not saved"
        ) from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: str | Path) -> None:
    """Put a rename inside ``folder`` on disk (fsync the folder); a no-op where the platform
    or file system cannot fsync a folder."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove_quietly(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


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
