"""The Markdown files shipped in the repository (README, docs/) link only to files that exist
(leaderboards copied out of a results folder must not point at plots left behind in it), and
their `bench run` and `bench speed` commands name suites and methods that exist (a reproduce
line that names a suite file by its stem alone cannot be run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.errors import SegbenchError
from bench.method import method_class
from bench.suites import load_suite

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


def bench_run_commands(md: Path) -> list[list[str]]:
    """The ``bench run`` and ``bench speed`` commands of ``md`` as tokens: each line of a code
    block (backslash continuations joined) and each inline code span (which may wrap over lines)."""
    text = md.read_text(encoding="utf-8")
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [c.split() for c in lines + spans if re.search(r"bench (run|speed) ", " ".join(c.split()))]


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, token in enumerate(command[:-1]) if token == option]


def is_placeholder(value: str) -> bool:
    """FILE, FILE.yaml, NAME, path/to/file.yaml, and a shell loop's $m."""
    return value.split(".")[0].isupper() or value.startswith(("path/to/", "$"))


def test_the_command_scan_reads_blocks_and_wrapped_spans(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("`python -m bench run --suite x\n  --only a,b` and `bench list`\n"
                  "```bash\npython -m bench run --suite y \\\n  --only c\necho\n```\n")
    commands = bench_run_commands(md)
    assert [option_values(c, "--suite") for c in commands] == [["y"], ["x"]]
    assert [option_values(c, "--only") for c in commands] == [["c"], ["a,b"]]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_names_a_suite_and_methods_that_exist(md, monkeypatch):
    monkeypatch.chdir(ROOT)  # the docs' commands run from the repository root
    unknown = []
    for command in bench_run_commands(md):
        names = [("suite", s) for s in option_values(command, "--suite")]
        names += [("method", m) for ms in option_values(command, "--only") + option_values(command, "--method")
                  for m in ms.split(",")]
        for kind, name in names:
            if is_placeholder(name):
                continue
            try:
                (load_suite if kind == "suite" else method_class)(name)
            except SegbenchError:
                unknown.append(f"{kind} {name}")
    assert not unknown, f"{md.relative_to(ROOT)}: commands name what does not exist: {sorted(set(unknown))}"
