"""Download one file over HTTP(S) with a progress bar, resuming a partial ``.part`` file by an HTTP Range request."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from bench.fetch.sources import FetchError

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "segbench-fetch (python urllib)"


class Unreachable(FetchError):
    """The server could not be reached or refused the file; ``reason`` says why."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach {url} ({reason})")
        self.url = url
        self.reason = reason


def part_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` gather until the download is complete."""
    return dest.with_name(dest.name + ".part")


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download(url: str, dest: Path, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, continuing an existing ``.part``.

    A server that answers the Range request with the whole file (200) is read from the
    start again. A connection that ends early keeps the ``.part`` for the next call and
    raises FetchError; an unreachable server or an HTTP error raises :class:`Unreachable`.
    """
    part = part_path(dest)
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the .part is not a prefix of what the server has now
            part.unlink()
            return download(url, dest, progress)
        raise Unreachable(url, f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise Unreachable(url, str(getattr(e, "reason", e) or type(e).__name__)) from None
    with resp:
        offset, total = _start(resp, offset, url)
        if progress:
            resuming = f", resuming after {offset} bytes" if offset else ""
            print(f"segbench: downloading {url} into {dest.parent}{resuming}", file=sys.stderr)
        got = _copy(resp, part, offset, total, progress)
    if total is not None and got != total:
        raise _cut_short(url, part, got, total)
    os.replace(part, dest)
    return dest


def _start(resp, offset: int, url: str) -> tuple[int, int | None]:
    """(bytes already on disk that the answer continues, total size or None) for an answer."""
    length = resp.headers.get("Content-Length")
    if offset and (resp.status or 200) == 206:
        m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", "").strip())
        if not m or int(m[1]) != offset:
            raise FetchError(f"{url}: the server answered the resume request with the range "
                             f"{resp.headers.get('Content-Range')!r}, not bytes {offset}-")
        return offset, int(m[2]) if m[2] != "*" else None
    # a full answer: file:// URLs have no status, servers without Range support send 200
    return 0, int(length) if length and length.isdigit() else None


def _copy(resp, part: Path, offset: int, total: int | None, progress: bool) -> int:
    """Write the answer's body into ``part`` after its first ``offset`` bytes, with a progress
    bar; return the bytes in the file."""
    got = offset
    with open(part, "ab" if offset else "wb") as f, \
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=part.name[: -len(".part")], disable=not progress, leave=False) as bar:
        while True:
            try:
                chunk = resp.read(CHUNK)
            except (http.client.IncompleteRead, OSError) as e:  # connection closed or timed out mid-way
                raise _cut_short(resp.geturl(), part, got, total, e) from None
            if not chunk:
                return got
            f.write(chunk)
            got += len(chunk)
            bar.update(len(chunk))


def _cut_short(url: str, part: Path, got: int, total: int | None, error: Exception | None = None) -> FetchError:
    of = f" of {total}" if total is not None else ""
    why = f" ({type(error).__name__})" if error is not None else ""
    return FetchError(f"{url}: the connection ended after {got}{of} bytes{why}; the partial download is kept in "
                      f"{part}: run the same command again to resume it")
