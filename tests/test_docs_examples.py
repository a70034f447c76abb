"""Docs that cannot drift: every example marked `<!-- docs-check -->` in README.md and docs/ is
run and its printed output compared with the page, line by line.

A checked example is the fenced block right after the marker; its first line is the command
after `$ `, the rest is what the command prints (standard output, then standard error). The
marker may set the terminal width that the page was rendered at (`<!-- docs-check COLUMNS=120
-->`, default 100). A command may end in a here-document (`$ python - <<'PY'`): the lines up to
the closing `PY` are its standard input, and what follows them is what it prints. The examples
of one page run in page order in a scratch folder of their own, where `benchmarks/`, `docs/`,
`examples/` and `scalelaw/` are the repository's: an example may read what an earlier one on its
page wrote (`--out sim.csv`, then `fit sim.csv`), and nothing is written into the repository.
`make docs-check` runs this file alone.
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
#: What a page's scratch folder holds of the repository (as links).
SHARED = ("benchmarks", "docs", "examples", "scalelaw")
MARKER = re.compile(r"^<!-- docs-check(?: COLUMNS=(\d+))? -->$")
#: A here-document at the end of a command: `<<'PY'`, `<<"PY"` or `<<PY`.
HEREDOC = re.compile(r"\s*<<\s*(['\"]?)(\w+)\1\s*$")
#: Commands a checked example may run: the CLI, or a script of the repository.
PROGRAMS = {"scalelaw": [sys.executable, "-m", "scalelaw"], "python": [sys.executable]}


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    command: str
    expected: list[str]
    columns: int
    stdin: str | None = None

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
            command, expected, stdin = body[0][2:], body[1:], None
            if heredoc := HEREDOC.search(command):
                tag = heredoc.group(2)
                if tag not in expected:
                    raise AssertionError(f"{path.name}:{start + 2}: here-document without '{tag}'")
                close = expected.index(tag)
                stdin = "".join(f"{t}\n" for t in expected[:close])
                command, expected = command[: heredoc.start()], expected[close + 1 :]
            found.append(
                Example(
                    page=str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                    line=start + 2,
                    command=command,
                    expected=expected,
                    columns=int(m.group(1) or 100),
                    stdin=stdin,
                )
            )
    return found


def scratch(folder: Path) -> Path:
    """`folder`, made a page's working folder: the repository's `SHARED` parts linked in."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        if not (folder / name).exists():
            (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder


def run(example: Example, cwd: Path = ROOT) -> list[str]:
    """What the example's command prints (stdout, then stderr), as the page shows lines."""
    argv = shlex.split(example.command, comments=True)
    if argv[0] not in PROGRAMS:
        raise AssertionError(f"{example}: runs '{argv[0]}'; checked examples run {set(PROGRAMS)}")
    env = {**os.environ, "COLUMNS": str(example.columns), "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [*PROGRAMS[argv[0]], *argv[1:]],
        cwd=cwd,
        env=env,
        input=example.stdin,
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
    checked = {"README.md", "docs/cost.md", "docs/import.md", "docs/kernels.md", "docs/plan.md",
               "docs/tolerance.md"}  # fmt: skip
    assert checked <= pages, pages


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scratch folder per page, made when its first example runs."""
    root = tmp_path_factory.mktemp("docs")
    return {e.page: root / e.page.replace("/", "-") for e in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_prints_what_the_page_shows(example: Example, folders: dict[str, Path]) -> None:
    got = run(example, scratch(folders[example.page]))
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


def test_a_page_runs_in_a_scratch_folder_of_its_own(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    write = "python -c \"open('made.txt', 'w').write('here')\""
    read = "python -c \"print(open('made.txt').read(), 'tiny' in open('examples/grids/tiny.toml').read())\""
    page.write_text(
        f"<!-- docs-check -->\n```\n$ {write}\n```\n<!-- docs-check -->\n```\n$ {read}\n```\n"
    )
    first, second = examples([page])
    folder = scratch(tmp_path / "scratch")
    assert run(first, folder) == []
    assert run(second, folder) == ["here True"]  # the first's file, the repository's examples
    assert (folder / "made.txt").is_file() and not (ROOT / "made.txt").exists()


def test_a_here_document_is_the_command_input(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-check -->\n```\n$ python - <<'PY'\nprint('from', 'stdin')\nprint(2 + 2)\nPY\n"
        "from stdin\n4\n```\n"
    )
    (example,) = examples([page])
    assert example.command == "python -" and example.expected == ["from stdin", "4"]
    assert example.stdin == "print('from', 'stdin')\nprint(2 + 2)\n"
    assert run(example, scratch(tmp_path / "scratch")) == example.expected


def test_the_shipped_chinchilla_table_is_what_its_script_writes(tmp_path: Path) -> None:
    """The README's fit reads examples/chinchilla.csv: simulated, so it can be made again."""
    out = tmp_path / "chinchilla.csv"
    script = ROOT / "examples" / "chinchilla.py"
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=120)
    assert out.read_text() == (ROOT / "examples" / "chinchilla.csv").read_text()
