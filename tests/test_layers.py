"""The layer contract ([tool.importlinter] in pyproject.toml, docs/architecture.md) holds on the
package as it is and fails on a planted upward import.

Each test runs `lint-imports` the way `make lint` does (its config found as pyproject.toml in
the working directory) on a copy of the package source, so the real tree is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLANTED = "from scalelaw.commands import common  # planted upward import\n"


def lint_imports() -> str:
    """The `lint-imports` beside this interpreter (the virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.skip("lint-imports is not installed (pip install import-linter, the dev extra)")
    return found


def copy_tree(dest: Path) -> Path:
    """Copy the package's Python source and pyproject.toml into `dest`; return `dest`."""
    if not (REPO / "pyproject.toml").exists() or not (REPO / "scalelaw").is_dir():
        pytest.skip("the package source and pyproject.toml are not beside the tests")

    def not_source(folder: str, names: list[str]) -> set[str]:
        return {
            name
            for name in names
            if name == "__pycache__"
            or (not name.endswith(".py") and not (Path(folder, name).is_dir()))
        }

    shutil.copytree(REPO / "scalelaw", dest / "scalelaw", ignore=not_source)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def run_contract(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [lint_imports(), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def plant(module: Path, line: str) -> None:
    """Insert `line` as the module's first import (after `from __future__`, which must lead)."""
    lines = module.read_text().splitlines(keepends=True)
    future = [i for i, text in enumerate(lines) if text.startswith("from __future__ import")]
    at = future[-1] + 1 if future else 0
    module.write_text("".join([*lines[:at], line, *lines[at:]]))


def test_contract_holds_on_the_package(tmp_path: Path) -> None:
    lint_imports()
    root = copy_tree(tmp_path)
    result = run_contract(root)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "BROKEN" not in output


def test_planted_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    lint_imports()
    root = copy_tree(tmp_path)
    plant(root / "scalelaw" / "errors.py", PLANTED)
    result = run_contract(root)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "scalelaw.errors -> scalelaw.commands.common" in output, output


def test_planted_upward_import_inside_fits_breaks_its_layers(tmp_path: Path) -> None:
    """The fits-layers contract: the floor (likelihoods) may not reach up to stacking."""
    lint_imports()
    root = copy_tree(tmp_path)
    plant(
        root / "scalelaw" / "fits" / "likelihoods.py",
        "from scalelaw.fits import stacking  # planted upward import\n",
    )
    result = run_contract(root)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "scalelaw.fits.likelihoods -> scalelaw.fits.stacking" in output, output
