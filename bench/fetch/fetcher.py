"""`python -m bench fetch`: download a dataset's archive, check it and extract it into the reader's layout, once."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.datasets import DatasetError, get_dataset
from bench.fetch.download import Unreachable, download, file_sha256
from bench.fetch.extract import BadArchive, extract_folder
from bench.fetch.sources import FetchError, Source, get_source, source_url
from bench.files import fsync_folder, write_json_atomic

#: written into --root after a download: where the archive came from, its sha256, what was checked
MARKER = ".segbench-fetch.json"


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did: the dataset folder, the size of each split and what was verified."""

    dataset: str
    root: Path
    splits: dict[str, int]
    verified: str  # what was checked, in words
    downloaded: bool  # False: the data was already there and nothing was done

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        if self.downloaded:
            return f"{self.dataset}: {self.root} ready ({sizes} samples); {self.verified}"
        return f"{self.dataset}: already in {self.root} ({sizes} samples); {self.verified}; nothing to do"


def check_layout(source: Source, root: Path) -> dict[str, int]:
    """Open ``root`` with the dataset's reader: each split of ``source`` must be there and its
    first sample must load. Returns the samples of each split; DatasetError otherwise."""
    ds = get_dataset(source.dataset, root)
    missing = [s for s in source.splits if s not in ds.split_names()]
    if missing:
        raise DatasetError(f"{root}: no split {', '.join(missing)} (found: {', '.join(ds.split_names()) or 'none'})")
    counts = {}
    for name in source.splits:
        split = ds.split(name)
        split.load(0)
        counts[name] = len(split)
    return counts


def fetch(name: str, root: str | Path, url: str | None = None, sha256: str | None = None,
          progress: bool = True) -> FetchResult:
    """Make ``root`` hold dataset ``name`` in its reader's layout.

    Nothing is done (and nothing downloaded) when ``root`` already opens with the reader. Else
    the archive is downloaded beside ``root`` (into ``.<root name>.fetch/``; a partial
    download is resumed), its sha256 checked against ``sha256`` or the published one (when
    there is one), its folder extracted into a temporary folder there, opened with the reader
    and renamed to ``root`` with a :data:`MARKER` file. A bad archive is deleted and leaves
    nothing in place. ``url`` replaces the source's URL (as does ``$SEGBENCH_FETCH_BASE``).
    """
    source = get_source(name)
    root = Path(root)
    given = _checked_sha(sha256)
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        return _already_there(source, root, given)
    url = source_url(source, url)
    place = root.resolve()  # where the folder goes ("." or "a/.." have no name of their own)
    work = place.parent / f".{place.name}.fetch"
    work.mkdir(parents=True, exist_ok=True)
    archive, tree = work / source.filename, work / "tree"
    try:
        if not archive.is_file():
            download(url, archive, progress)
        digest, verified = _verify(archive, given or source.sha256, "--sha256" if given else "the published checksum")
        shutil.rmtree(tree, ignore_errors=True)
        extract_folder(archive, source.folder, tree, source.keep, progress)
        try:
            counts = check_layout(source, tree)
        except DatasetError as e:
            raise BadArchive(f"{url}: the archive's {source.folder}/ folder is not in the {name} layout ({e})") from None
        write_json_atomic(tree / MARKER, {
            "dataset": name, "url": url, "archive": source.filename, "sha256": digest,
            "verified": verified, "splits": counts, "licence": source.licence,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        if place.is_dir():
            place.rmdir()  # an empty folder the user made: replaced by the complete one
        os.rename(tree, place)
        fsync_folder(place.parent)
        archive.unlink()
    except Unreachable as e:
        raise FetchError(f"{e}; download it by hand from {url} and place its {source.folder}/ folder as {root} "
                         f"(so that {root / source.expect} exists), or pass --url file:///path/to/{source.filename} "
                         "(see README)") from None
    except BadArchive:
        archive.unlink(missing_ok=True)  # of no use: the next run downloads it again
        raise
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        if work.is_dir() and not any(work.iterdir()):
            work.rmdir()
    return FetchResult(name, root, counts, verified, downloaded=True)


def _checked_sha(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        raise FetchError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return sha256.strip().lower()


def _verify(archive: Path, expected: str | None, what: str) -> tuple[str, str]:
    """The archive's sha256, checked against ``expected`` (BadArchive when it differs), and what
    was checked, in words."""
    digest = file_sha256(archive)
    if expected is None:
        return digest, (f"archive sha256 {digest} (no published checksum: checked by extracting it and opening every "
                f"split with the reader; the sha256 is recorded in {MARKER})")
    if digest != expected:
        raise BadArchive(f"{archive}: sha256 {digest} does not match {what} {expected}; the download was deleted "
                         "(a damaged download or a changed archive): run the command again, or check --sha256")
    return digest, f"archive sha256 {digest} matches {what}; every split opened with the reader"


def _already_there(source: Source, root: Path, given: str | None) -> FetchResult:
    """The result for a ``root`` that already holds the dataset; FetchError when it holds something else."""
    try:
        counts = check_layout(source, root)
    except DatasetError as e:
        raise FetchError(f"{root} already exists and does not hold {source.dataset} in its reader's layout ({e}); "
                         "move it away or choose another --root") from None
    marker = root / MARKER
    if not marker.is_file():
        if given:
            raise FetchError(f"{root} holds {source.dataset} placed without `bench fetch` (no {MARKER}): its archive "
                             "cannot be checked against --sha256; move the folder away to download and check it")
        return FetchResult(source.dataset, root, counts, "placed by hand: every split opened with the reader", False)
    try:
        info = json.loads(marker.read_text())
        sha, url = str(info["sha256"]), str(info["url"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FetchError(f"{marker}: unreadable ({type(e).__name__}: {e}); delete it and run again") from None
    if given and sha != given:
        raise FetchError(f"{root} was fetched from an archive with sha256 {sha}, not the --sha256 {given}; "
                         "move the folder away to download it again")
    return FetchResult(source.dataset, root, counts, f"fetched from {url}, archive sha256 {sha}; every split "
                       "opened with the reader", False)
