"""The Markdown files shipped in the repository (README, docs/) link only to files that exist:
leaderboards copied out of a results folder must not point at plots left behind in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def local_targets(md: Path) -> list[str]:
    """The relative link and image targets of ``md``, without #fragments (web links and
    in-page anchors are not files)."""
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    targets = (t.split("#", 1)[0] for t in LINK.findall(text))
    return [t for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_scan_finds_links():
    assert len(DOCS) > 10
    assert "docs/report-screenshot.png" in local_targets(ROOT / "README.md")


def test_local_targets_skips_web_links_anchors_and_code(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("[w](https://x.org/a.png) [s](#plots) ![i](plot.png)\n```\n![c](code.png)\n```\n[f](b.md#x)\n")
    assert local_targets(md) == ["plot.png", "b.md"]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(md):
    missing = [t for t in local_targets(md) if not (md.parent / t).exists()]
    assert not missing, f"{md.relative_to(ROOT)} links to files that do not exist: {missing}"
