"""Imports inside functions defer heavy packages only, and the package has no import cycle.

An import placed inside a function to dodge a circle hides the circle: the modules still need
each other, and the next reader moves the import up and breaks the package. Outside
`scalelaw/commands/` (where every command defers the API it calls, as each module's docstring
says, to keep `scalelaw --help` fast) an import of a scalelaw module inside a function must say
what it defers with a ``deferred`` comment: on its line, or in the comments heading the block of
imports it belongs to. With those deferrals left out, the graph of imports (grimp's, the one
import-linter checks the layers on) must have no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import scalelaw

PACKAGE = Path(scalelaw.__file__).resolve().parent
COMMANDS = PACKAGE / "commands"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return ["scalelaw" if node.level else node.module or ""]
    return [alias.name for alias in node.names]


def _marked(lines: list[str], lineno: int) -> bool:
    """Whether the import at `lineno` (1-based), or the comments heading its block of imports
    (comment, import and blank lines above it), say ``deferred``."""
    i = lineno - 1
    while i >= 0:
        text = lines[i].strip()
        if "deferred" in text.lower() and (i == lineno - 1 or text.startswith("#")):
            return True
        if i < lineno - 1 and text and not text.startswith(("#", "import ", "from ")):
            return False
        i -= 1
    return False


def function_imports() -> Iterator[tuple[Path, int, str, bool]]:
    """Every import inside a function: file, line, imported module, and whether it defers."""
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines), filename=str(path))
        seen: set[int] = set()
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno not in seen:
                    seen.add(node.lineno)
                    deferred = path.parent == COMMANDS or _marked(lines, node.lineno)
                    for name in _imported(node):
                        yield path, node.lineno, name, deferred


def test_imports_of_the_package_inside_functions_say_what_they_defer() -> None:
    bare = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path, line, name, deferred in function_imports()
        if name.split(".")[0] == "scalelaw" and not deferred
    ]
    assert not bare, "imports inside functions without a `# deferred: <package>` comment:\n" + (
        "\n".join(bare)
    )


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle() -> None:
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the dev extra)")
    # imports under `if TYPE_CHECKING:` never run; deferrals are the one sanctioned way up
    graph = grimp.build_graph("scalelaw", exclude_type_checking_imports=True, cache_dir=None)
    deferrals = {
        (_module(path), line) for path, line, _, deferred in function_imports() if deferred
    }
    edges: dict[str, set[str]] = {}
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            details = graph.get_import_details(importer=importer, imported=imported)
            if any((importer, d["line_number"]) not in deferrals for d in details):
                edges.setdefault(importer, set()).add(imported)
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
