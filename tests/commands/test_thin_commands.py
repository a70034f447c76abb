"""The command line stays a thin layer over the Python API: no function in scalelaw/commands is
longer than 60 lines, `def` line to last line (docs/architecture.md: parse, call the API, print).

A command that grows past it hands its work to small helpers, to the shared option blocks of
scalelaw/commands/options.py, or to the API where the work is not about the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scalelaw.commands

LIMIT = 60
COMMANDS = Path(scalelaw.commands.__file__).parent
MODULES = sorted(COMMANDS.glob("*.py"))


def _lengths(path: Path) -> dict[str, int]:
    """Every function of the module (methods and nested ones too) and its length in lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        f"{node.name} (line {node.lineno})": (node.end_lineno or node.lineno) - node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_the_modules_are_found() -> None:
    names = {p.name for p in MODULES}
    assert {"fitting.py", "deciding.py", "planning.py", "checking.py", "kernels.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_function_in_the_commands_is_over_60_lines(path: Path) -> None:
    long = {name: n for name, n in _lengths(path).items() if n > LIMIT}
    assert not long, f"{path.name}: over {LIMIT} lines: {long}"
