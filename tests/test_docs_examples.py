"""Docs that cannot drift: every example marked `<!-- docs-check -->` in README.md and docs/ is
run and its printed output compared with the page, line by line.

A checked example is the fenced block right after the marker; its first line is the command
after `$ `, the rest is what the command prints. The marker may set the terminal width that the
page was rendered at (`<!-- docs-check COLUMNS=120 -->`, default 100). `make docs-check` runs
this file alone.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- docs-check(?: COLUMNS=(\d+))? -->$")
#: Commands a checked example may run: the CLI, or a script of the repository.
PROGRAMS = {"scalelaw": [sys.executable, "-m", "scalelaw"], "python": [sys.executable]}


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    command: str
    expected: list[str]
    columns: int

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def examples(paths: list[Path]) -> list[Example]:
    """The marked examples of `paths`, in page order."""
    found = []
    for path in paths:
        lines = path.read_text().splitlines()
        for i, text in enumerate(lines):
            if not (m := MARKER.match(text.strip())):
                continue
            start = i + 1
            if start >= len(lines) or not lines[start].startswith("```"):
                raise AssertionError(f"{path.name}:{i + 1}: docs-check marker without a block")
            end = next(j for j in range(start + 1, len(lines)) if lines[j].startswith("```"))
            body = lines[start + 1 : end]
            if not body or not body[0].startswith("$ "):
                raise AssertionError(f"{path.name}:{start + 2}: a checked block starts with '$ '")
            found.append(
                Example(
                    page=str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                    line=start + 2,
                    command=body[0][2:],
                    expected=body[1:],
                    columns=int(m.group(1) or 100),
                )
            )
    return found


def run(example: Example) -> list[str]:
    """What the example's command prints (stdout and stderr), as the page shows lines."""
    argv = shlex.split(example.command, comments=True)
    if argv[0] not in PROGRAMS:
        raise AssertionError(f"{example}: runs '{argv[0]}'; checked examples run {set(PROGRAMS)}")
    env = {**os.environ, "COLUMNS": str(example.columns), "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [*PROGRAMS[argv[0]], *argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{example}: exit {done.returncode}\n{done.stderr}"
    return [line.rstrip() for line in (done.stdout + done.stderr).splitlines()]


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = examples(PAGES)


def test_the_docs_have_checked_examples() -> None:
    # the pages named in the changelog as checked keep their markers
    pages = {e.page for e in EXAMPLES}
    assert {"docs/cost.md", "docs/kernels.md"} <= pages, pages


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_prints_what_the_page_shows(example: Example) -> None:
    got = run(example)
    want = [line.rstrip() for line in example.expected]
    assert got == want, f"{example}: `{example.command}` prints otherwise; update the page"


def test_a_drifted_example_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-check -->\n```\n$ scalelaw --version\nscalelaw 0.0.0-not-this\n```\n"
    )
    (example,) = examples([page])
    assert example.command == "scalelaw --version" and example.line == 3
    assert run(example) != example.expected
