"""Safe file writing: the one atomic writer (temporary file, fsync, rename, folder fsync) and
the one JSON cleaner; every file segbench writes into a results folder goes through here."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np


def clean_json(value: Any) -> Any:
    """A value JSON can hold and every reader can parse: NaN/inf -> None, numpy and torch
    scalars -> Python numbers, tuples -> lists, Paths -> str (dict keys kept)."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy / torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`clean_json` (sorted keys unless told otherwise)."""
    kwargs.setdefault("sort_keys", True)
    return json.dumps(clean_json(value), **kwargs)


def fsync_folder(folder: str | Path) -> None:
    """Put a rename inside ``folder`` on disk (fsync the folder); a no-op where the platform
    or file system cannot fsync a folder."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask_mode() -> int:
    """Permissions a new file gets from the umask (``mkstemp`` alone gives 0600)."""
    try:  # Linux: read the umask without changing it (os.umask would, for every thread)
        status = Path("/proc/self/status").read_text()
        mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | Path, write: Callable[[BinaryIO], Any] | bytes | str, *, fsync: bool = True) -> Path:
    """Replace ``path`` so that a crash, a kill or a concurrent writer leaves the old file or a
    whole new one, never part of one.

    ``write`` is the bytes or text to write, or a function that writes into the open binary
    file. The data goes to a uniquely named temporary file in the same folder (so two
    processes writing the same path never share one), is flushed and fsynced, and is renamed
    over ``path``; the folder is fsynced last. On any error the temporary file is removed, the
    old file is left as it was and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = _umask_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode("utf-8") if isinstance(write, str) else write)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_folder(path.parent)
    return path


def write_json_atomic(path: str | Path, value: Any, **kwargs: Any) -> Path:
    """:func:`write_atomic` of :func:`dumps` of ``value``, with a final newline."""
    return write_atomic(path, dumps(value, **kwargs) + "\n")


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """A label map as uint8 when its values fit, else uint16 (how label PNGs are stored)."""
    labels = np.asarray(labels)
    if labels.dtype == np.uint8:
        return labels
    fits = labels.size == 0 or (labels.min() >= 0 and labels.max() < 256)
    return labels.astype(np.uint8 if fits else np.uint16)


def write_png_atomic(path: str | Path, array: np.ndarray) -> Path:
    """An image array (HxW label map or HxWx3 RGB) as a PNG, atomically. Label maps are stored
    as :func:`compact_labels`."""
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 2:
        array = compact_labels(array)
    return write_atomic(path, lambda f: Image.fromarray(array).save(f, format="PNG"), fsync=False)
