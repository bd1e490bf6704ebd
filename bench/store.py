"""The results folder's record store: one JSON file a job, written atomically, so any number
of processes can write into one folder at once without losing a record.

Layout of a results folder::

    records/<job_id>.json    one record each (the truth)
    records.jsonl            an export of all records, one line each, rewritten at the end of
                             each run (convenient for jq/pandas; never read back once
                             records/ exists)
    claims/<job_id>.lock     a job being computed: an exclusive lock held by the process
    .store.lock              serialises the one-time import of an old records.jsonl and the export

Why one file a job: a record is written by ``rename`` of a whole file, so two writers can
never interleave (no read-modify-write), a kill leaves the old file or the new one, and the
folder stays readable with ``ls`` and ``cat``. A folder of the previous release (only
``records.jsonl``) is imported into ``records/`` the first time it is opened.

Claims use ``flock``: the kernel drops the lock when its process dies, so a claim left by a
killed run is free for the next one, and a job claimed by a live run is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
from pathlib import Path
from typing import Iterator

from bench.errors import SegbenchError
from bench.files import dumps, write_atomic
from bench.record import Record, RecordsError

RECORDS_DIR = "records"
EXPORT_FILE = "records.jsonl"
CLAIMS_DIR = "claims"
LOCK_FILE = ".store.lock"


class RecordsWriteError(SegbenchError, OSError):
    """A record could not be written (disk full, read-only, ...); the message names the file."""


def read_jsonl(path: str | Path) -> list[Record]:
    """The records of a ``records.jsonl`` file (the export, or a previous release's store).

    A line that is not a JSON record (bad JSON, a torn line, bytes that are not UTF-8) raises
    :class:`RecordsError` naming the file and the line number.
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
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordsError(f"{where}: not a JSON record (bytes that are not UTF-8 at column "
                               f"{e.start + 1})") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordsError(f"{where}: not a JSON record ({e.msg})") from None
        records.append(Record.from_dict(obj, where))
    return records


def _read_record_file(path: Path) -> Record:
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RecordsError(f"{path}: not a JSON record (bytes that are not UTF-8 at {e.start})") from None
    except json.JSONDecodeError as e:
        raise RecordsError(f"{path}: not a JSON record ({e.msg})") from None
    except OSError as e:
        raise RecordsError(f"{path}: cannot read the record ({e.strerror or e})") from None
    return Record.from_dict(obj, str(path))


def _write_error(path: Path, e: OSError) -> RecordsWriteError:
    hint = " (is the disk full?)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return RecordsWriteError(f"{path}: cannot write the record: {e.strerror or e}{hint}; "
                             "the job's result was not saved")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (waits for other holders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class Claim:
    """An exclusive hold on one job, released by :meth:`release` or by the process's death."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class RecordStore:
    """The records of one results folder."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.records_dir = self.out_dir / RECORDS_DIR
        self.export_path = self.out_dir / EXPORT_FILE
        self.claims_dir = self.out_dir / CLAIMS_DIR
        self._lock_path = self.out_dir / LOCK_FILE

    # -- reading ------------------------------------------------------------------------
    def records(self) -> list[Record]:
        """Every record, oldest first (by start time, then id)."""
        if not self.records_dir.is_dir():  # a previous release's folder, or none yet
            return read_jsonl(self.export_path)
        out = [_read_record_file(p) for p in self.records_dir.glob("*.json")]
        return sorted(out, key=lambda r: (r.started or "", r.job_id))

    def get(self, job_id: str) -> Record | None:
        path = self.records_dir / f"{job_id}.json"
        if path.exists():
            return _read_record_file(path)
        if not self.records_dir.is_dir():
            return next((r for r in read_jsonl(self.export_path) if r.job_id == job_id), None)
        return None

    def done_ids(self) -> set[str]:
        """Ids of the jobs with an ok record (schema-1 records by their schema-2 id)."""
        return {r.job_id for r in self.records() if r.ok}

    # -- writing ------------------------------------------------------------------------
    def open(self) -> "RecordStore":
        """Make the folder ready for writing: import a previous release's ``records.jsonl``
        once (under the store lock, so concurrent first runs import it once)."""
        if self.records_dir.is_dir():
            return self
        try:
            with _locked(self._lock_path):
                if not self.records_dir.is_dir():
                    staging = self.out_dir / f".{RECORDS_DIR}.import-{os.getpid()}"
                    staging.mkdir(parents=True, exist_ok=True)
                    for record in read_jsonl(self.export_path):  # later lines replace earlier ones
                        write_atomic(staging / f"{record.job_id}.json", dumps(record.to_dict()) + "\n")
                    os.replace(staging, self.records_dir)
        except OSError as e:
            raise _write_error(self.records_dir, e) from None
        return self

    def write(self, record: Record) -> Path:
        """Write (or replace) the record of ``record.job_id`` atomically."""
        self.open()
        path = self.records_dir / f"{record.job_id}.json"
        try:
            return write_atomic(path, dumps(record.to_dict()) + "\n")
        except OSError as e:
            raise _write_error(path, e) from None

    def export(self) -> Path:
        """Rewrite ``records.jsonl`` from ``records/`` (atomic, under the store lock, so the
        last export of concurrent runs holds every record written before it started)."""
        self.open()
        try:
            with _locked(self._lock_path):
                text = "".join(dumps(r.to_dict()) + "\n" for r in self.records())
                return write_atomic(self.export_path, text)
        except OSError as e:
            raise _write_error(self.export_path, e) from None

    # -- claims -------------------------------------------------------------------------
    def claim(self, job_id: str) -> Claim | None:
        """Hold ``job_id`` for this process, or None when a live process holds it.

        A claim whose process has died is free (the kernel released its lock)."""
        path = self.claims_dir / f"{job_id}.lock"
        self.claims_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # who holds it, for people looking at the folder
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{platform.node()} {os.getpid()}\n".encode(), 0)
        return Claim(fd, path)

    def claim_holder(self, job_id: str) -> str:
        """``host pid`` of the last process that claimed ``job_id`` (for messages)."""
        try:
            return (self.claims_dir / f"{job_id}.lock").read_text().strip() or "another run"
        except OSError:
            return "another run"
