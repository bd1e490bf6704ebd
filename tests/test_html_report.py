"""report.html: self-contained, escaped, built from the leaderboard frames; rendered in headless Chromium
(no console errors, no network requests, sortable tables, a screenshot)."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.record import Record
from bench.report import build_report, html
from bench.report.aggregate import group_records, leaderboard_frame, per_class_frame
from bench.store import RecordStore

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CLASSES = ["background", "road", "car", "tree"]
IDS = ["img_a", "img_b"]
EVIL = "<script>alert('x')</script>"


def _record(job: str, method: str, miou: float, seed: int = 0, status: str = "ok", **kw) -> Record:
    ok = status == "ok"
    iou = [round(min(1.0, miou + 0.1 * c), 3) for c in range(len(CLASSES))] if ok else None
    return Record(job_id=job, method=method, dataset="toy", eval_split="val", kind=kw.pop("kind", "classical"),
                  seed=seed, status=status, miou=miou if ok else None, pixel_acc=miou + 0.3 if ok else None,
                  mean_acc=miou + 0.1 if ok else None, fwiou=miou + 0.2 if ok else None,
                  bf=miou - 0.1 if ok else None, iou=iou, class_names=CLASSES, miou_convention="mmseg",
                  images_per_s=kw.pop("speed", 10.0) if ok else None, git_commit="abc123",
                  versions={"python": "3.11"}, command=f"segbench run --suite toy --only {method} --seeds {seed}",
                  predictions=[f"predictions/{job}/{i}.png" for i in IDS] if ok else [], **kw)


def _results(out: Path) -> Path:
    """A results folder: records (one method with two seeds, one with a hostile name, one failed job),
    the saved samples and predictions the grid needs."""
    records = [_record("j-edge0", "edges", 0.41, extra={"oracle_miou": 0.7}),
               _record("j-edge1", "edges", 0.45, seed=1, extra={"oracle_miou": 0.72}),
               _record("j-maj", "majority", 0.12, speed=5000.0),
               _record("j-evil", EVIL, 0.30, speed=0.5),
               _record("j-net", "unet", 0.0, status="failed", kind="deep", error=f"RuntimeError: {EVIL}")]
    store = RecordStore(out)
    for r in records:
        store.write(r)
    rng = np.random.default_rng(0)
    samples = out / "samples" / "toy" / "val"
    samples.mkdir(parents=True)
    for i in IDS:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(samples / f"{i}_image.png")
        Image.fromarray(rng.integers(0, 4, (24, 32), dtype=np.uint8)).save(samples / f"{i}_gt.png")
        for r in records:
            if r.ok:
                pred = out / "predictions" / r.job_id / f"{i}.png"
                pred.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 4, (24, 32), dtype=np.uint8)).save(pred)
    palette = [[0, 0, 0], [128, 64, 128], [0, 0, 142], [0, 128, 0]]
    (samples / "palette.json").write_text(json.dumps({"class_names": CLASSES, "palette": palette, "ignore_index": 255}))
    build_report(out)
    return out / "report.html"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    return _results(tmp_path_factory.mktemp("html"))


class _Page(HTMLParser):
    """The tags, attributes and text of a page (the standard library's parser)."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_is_one_self_contained_file(page):
    parsed = _Page(page.read_text(encoding="utf-8"))
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) == 3  # mIoU vs speed, per-class IoU, the predictions grid
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    scripts = [a for t, a in parsed.tags if t == "script"]
    assert len(scripts) == 1 and "src" not in scripts[0]  # the inline sort script only
    assert not [a for t, a in parsed.tags if t == "link" and a.get("rel") == "stylesheet"]
    hrefs = [a["href"] for t, a in parsed.tags if "href" in a]
    assert all(h.startswith(("#", "data:")) or "/" not in h for h in hrefs), hrefs  # files beside it at most


def test_every_value_is_escaped(page):
    text = page.read_text(encoding="utf-8")
    assert EVIL not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert EVIL in "".join(_Page(text).text)  # shown as text, in the leaderboard and the failed job


def test_leaderboard_rows_follow_the_frame_and_commands_are_listed(page):
    text = page.read_text(encoding="utf-8")
    table = text.split('<table class="sortable leaderboard">')[1].split("</table>")[0]
    rows = re.findall(r"<tr>.*?</tr>", table.split("<tbody>")[1], flags=re.S)
    labels = [re.findall(r'data-sort="([^"]*)"', r)[1] for r in rows]
    assert labels == ["edges", "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;", "majority"]  # ranked by mIoU
    assert "43.0 ± 2.8" in rows[0]  # two seeds: mean ± sample std
    assert "oracle mIoU" in table and "71.0 ± 1.4" in rows[0]
    for seed in (0, 1):
        assert f"segbench run --suite toy --only edges --seeds {seed}" in text
    assert "RuntimeError" in text.split("Failed jobs")[1] and "--only unet" in text


def test_interval_columns_are_shown_when_the_frame_has_them(page):
    sections = group_records(RecordStore(page.parent).records())
    frame = leaderboard_frame(sections)
    frame["miou_lo"], frame["miou_hi"] = frame["miou"] - 0.02, frame["miou"] + 0.03
    per_class = per_class_frame(sections)
    per_class["iou_lo"], per_class["iou_hi"] = per_class["iou"] - 0.05, per_class["iou"] + 0.05
    text = html.render_html_report(sections, [{}], frame, per_class, "records/")
    assert '>43.0 ± 2.8<span class="ci">[41.0, 46.0]</span><' in text and "&lt;metric&gt;_lo" in text
    assert 'title="43.0 [38.0, 48.0]">43.0<' in text  # per-class IoU: the interval as the cell's tooltip
    assert ">73.0 ± 2.8<" in text  # pixel acc has no interval here


def test_empty_and_failed_only_folders_give_a_page(tmp_path):
    build_report(tmp_path / "empty")
    assert "No job records found" in (tmp_path / "empty" / "report.html").read_text(encoding="utf-8")
    store = RecordStore(tmp_path / "failed")
    store.write(_record("j-net", "unet", 0.0, status="failed", error="ValueError: bad settings"))
    text = build_report(tmp_path / "failed")["report.html"].read_text(encoding="utf-8")
    assert "No job succeeded" in text and "ValueError: bad settings" in text and "<table" not in text


# -- the browser ---------------------------------------------------------------------------------
def find_browser() -> str | None:
    """A Chromium-family binary on PATH (installed by .ci/run from the Debian packages)."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


class Chromium:
    """Headless Chromium driven through the DevTools protocol on --remote-debugging-pipe (fd 3 in,
    fd 4 out, messages ended by NUL): a few calls need no client library."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        to_browser, self._w = os.pipe()
        self._r, from_browser = os.pipe()
        self.timeout, self.events, self._buf, self._id = timeout, [], b"", 0
        self.log = profile / "stderr.txt"
        profile.mkdir(parents=True, exist_ok=True)

        def fds():  # the protocol's fixed descriptors, in the child only
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--no-default-browser-check", "--window-size=1400,2000",
                 f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_browser)
        os.close(from_browser)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=self.session)

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium did not answer; its log: {self.log}")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe: {self.log.read_text(errors='replace')[-2000:]}")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events.clear()
        self.call("Page.navigate", session=self.session, url=url)
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._next(deadline))

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", session=self.session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e.get("method") == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("uncaught: " + d.get("exception", {}).get("description", d.get("text", "")))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append("log: " + p["entry"]["text"])
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, width: int = 1400, max_height: int = 12000) -> Path:
        """The whole page (up to ``max_height`` CSS pixels) as a PNG."""
        size = self.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        self.call("Emulation.setDeviceMetricsOverride", session=self.session, width=width,
                  height=min(max_height, int(size["height"]) + 1), deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", session=self.session, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        finally:
            try:
                self.proc.wait(timeout=20)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                os.close(self._r)
                os.close(self._w)


def screenshot_report(report: Path, png: Path, profile: Path) -> Path:
    """Render ``report`` in headless Chromium and save a full-page screenshot (used for docs/ too)."""
    browser = Chromium(find_browser(), profile)
    try:
        browser.open(report.resolve().as_uri())
        return browser.screenshot(png)
    finally:
        browser.close()


SORT_PROBE = """(() => {
  const t = document.querySelector("table.leaderboard"), heads = [...t.tHead.rows[0].cells];
  const col = name => heads.findIndex(th => th.textContent.trim() === name);
  const keys = c => [...t.tBodies[0].rows].map(r => r.cells[c].dataset.sort);
  const out = {rows: t.tBodies[0].rows.length, ranked: keys(col("mIoU"))};
  heads[col("images/s")].click(); out.speedFirst = keys(col("images/s"));
  heads[col("images/s")].click(); out.speedSecond = keys(col("images/s"));
  out.aria = heads[col("images/s")].getAttribute("aria-sort");
  heads[col("method")].click(); out.methods = keys(col("method"));
  out.images = [...document.images].map(i => i.complete && i.naturalWidth > 0);
  out.perClassRows = document.querySelector("table.per-class").tBodies[0].rows.length;
  return out;
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_browser()
    if binary is None:
        pytest.skip(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); .ci/run installs chromium")
    b = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def test_report_renders_in_chromium_without_errors_and_sorts(page, browser, tmp_path):
    browser.open(page.resolve().as_uri())
    assert browser.errors() == []
    assert [u for u in browser.requests() if not u.startswith(("file:", "data:"))] == []  # works offline
    got = browser.evaluate(SORT_PROBE)
    assert browser.errors() == []  # the clicks ran the sort script without an error
    assert got["rows"] == 3 and got["perClassRows"] == 3
    assert got["ranked"] == sorted(got["ranked"], key=float, reverse=True)
    speeds = [float(x) for x in got["speedFirst"]]
    assert speeds == sorted(speeds, reverse=True) and speeds[0] == 5000.0  # a number column: largest first
    assert [float(x) for x in got["speedSecond"]] == sorted(speeds) and got["aria"] == "ascending"
    assert got["methods"] == sorted(got["methods"], key=str.lower)
    assert got["images"] == [True, True, True]
    shot = browser.screenshot(tmp_path / "report.png")
    with Image.open(shot) as im:
        assert im.width == 1400 and im.height > 1000
        assert len(np.unique(np.asarray(im.convert("L")))) > 50  # drawn, not a blank page
    if os.environ.get("SEGBENCH_SCREENSHOT_DIR"):
        Path(os.environ["SEGBENCH_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["SEGBENCH_SCREENSHOT_DIR"]) / "report-screenshot.png")


def test_console_errors_and_requests_are_caught(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/x.png"><script>console.error("probe");'
                   "missingFunction();</script>")
    browser.open(bad.as_uri())
    errors = browser.errors()
    assert any("probe" in e for e in errors) and any("missingFunction" in e for e in errors)
    assert "http://127.0.0.1:9/x.png" in browser.requests()
