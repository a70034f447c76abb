"""CLI conventions: --version, -h, `python -m scalelaw`, no file written that the user did not
name, --strict still writes the fit it judged, no Python type names in option help."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer.main
from typer.testing import CliRunner, Result

from scalelaw.cli import app
from scalelaw.fits import FitOptions, fit, get_card, get_law, load_fit, simulate

runner = CliRunner()


def _command_paths() -> Iterator[list[str]]:
    """Every command of the app, groups and their subcommands included."""

    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


COMMANDS = list(_command_paths())


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _tiny_table(path: Path) -> Path:
    """Scores simulated from the study's card: three sizes, lengths and ratios."""
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": "QuALITY"}
            for n in (7e9, 1.4e10, 3.2e10)
            for length in (4096.0, 16384.0, 32768.0)
            for c in (1.0, 2.0, 5.0)
        ]
    )
    simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=50, seed=0).write_csv(path)
    return path


# --- 1. --version, -h, python -m scalelaw -----------------------------------------------------
def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"scalelaw {importlib.metadata.version('scalelaw')}\n"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "scalelaw")
def test_dash_h_is_help_for_the_app_and_every_command(path: list[str]) -> None:
    short = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "120"})
    assert short.exit_code == 0, short.output
    assert "Usage:" in short.stdout
    assert short.stdout == runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).stdout


def test_python_dash_m_scalelaw_runs_the_cli() -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "scalelaw", "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    assert "Usage:" in helped.stdout and "fit" in helped.stdout
    version = subprocess.run(
        [sys.executable, "-m", "scalelaw", "--version"], capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"scalelaw {importlib.metadata.version('scalelaw')}"


# --- 2. no file the user did not name ---------------------------------------------------------
def test_plan_writes_no_grid_unless_out_is_given(
    planning_fit_file: Path,
    planning_grid_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = runner.invoke(
        app,
        ["plan", str(planning_fit_file), "--candidates", str(planning_grid_file), "--target",
         "L=128K,budget=4.5e16", "--sizes", "7B,14B,32B,72B", "--gpu-hours", "2", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "P(sparse better)" in result.stdout
    assert list(work.iterdir()) == []  # no next.toml
    assert "--out" in result.stderr  # says how to write the grid


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("conventions")
    table = _tiny_table(folder / "tiny.csv")
    result = fit(str(table), get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=5))
    return Path(result.save(folder / "fit.nc"))


@pytest.mark.parametrize("kind", ["fit", "trace", "posterior", "ppc"])
def test_plot_without_out_refuses_and_keeps_fit_png(
    fit_file: Path, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fit.png").write_text("mine")
    result = runner.invoke(app, ["plot", str(fit_file), "--kind", kind])
    assert result.exit_code == 2, result.output
    assert "--out" in _one_error_line(result)
    assert (tmp_path / "fit.png").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.png"]


def test_stack_without_out_refuses_and_writes_nothing(
    fit_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["stack", str(fit_file), str(fit_file)])
    assert result.exit_code == 2, result.output
    assert "--out" in _one_error_line(result)
    assert list(tmp_path.iterdir()) == []  # no stack.nc


def test_simulate_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "grid.csv"
    pl.DataFrame(
        {"params": [7e9, 1.4e10], "seq_len": [4096.0, 4096.0], "compression": [1.0, 2.0],
         "task": ["QuALITY", "QuALITY"]}
    ).write_csv(grid)  # fmt: skip
    base = ["simulate", "--grid", str(grid), "--samples", "5"]
    for named in ([], ["--out", "mine.csv"]):  # the default sim.csv and a named file
        target = tmp_path / (named[1] if named else "sim.csv")
        target.write_text("keep me")
        result = runner.invoke(app, [*base, *named])
        assert result.exit_code == 2, result.output
        line = _one_error_line(result)
        assert target.name in line and "--force" in line
        assert target.read_text() == "keep me"
        forced = runner.invoke(app, [*base, *named, "--force"])
        assert forced.exit_code == 0, forced.output
        assert pl.read_csv(target).height == 2
    fresh = runner.invoke(app, [*base, "--out", "new.csv"])  # a new file needs no --force
    assert fresh.exit_code == 0, fresh.output


# --- 3. --strict writes the fit, then exits 3 -------------------------------------------------
@pytest.fixture(scope="module")
def misfit_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A floor and a ceiling the sparse-frontier law cannot follow: MISFIT (lsq)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "family_cases", Path(__file__).resolve().parents[1] / "fits" / "test_family.py"
    )
    assert spec is not None and spec.loader is not None
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    path = tmp_path_factory.mktemp("misfit") / "sat.csv"
    cases.saturating().write_csv(path)
    return path


def test_strict_fit_writes_the_file_then_exits_3(misfit_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad.nc"
    args = ["fit", str(misfit_table), "--law", "sparse-frontier", "--backend", "lsq"]
    result = runner.invoke(app, [*args, "--strict", "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "diagnostics failed under --strict" in result.stderr
    assert out.exists(), result.output
    assert "MISFIT" in load_fit(out).headline()
    assert f"saved fit to {out}" in result.output


def test_strict_family_fit_writes_the_stack_then_exits_3(
    misfit_table: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stack.nc"
    result = runner.invoke(
        app,
        ["fit", str(misfit_table), "--law", "sparse-frontier", "--law", "sparse-frontier-nc",
         "--backend", "lsq", "--strict", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert out.exists() and "MISFIT" in load_fit(out).headline()


# --- 4. help without Python type names --------------------------------------------------------
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "scalelaw")
def test_help_names_no_python_types(path: list[str]) -> None:
    """An option or argument shows what it takes (`--where <condition>`, `fits... <path>`), not
    `<list[str]>`; a flag, which takes no value, shows no type (not `<bool>`)."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = [line.strip("│ ").removeprefix("* ") for line in result.stdout.splitlines()]
    params = [row for row in rows if row.startswith("-") or "..." in row.split("  ")[0]]
    assert any(row.startswith("--help") for row in params), result.stdout
    assert not [row for row in params if "list[" in row or "<bool>" in row]


def test_a_repeated_argument_shows_the_type_of_one_value() -> None:
    result = runner.invoke(app, ["stack", "-h"], env={"COLUMNS": "200"})
    (row,) = [line for line in result.stdout.splitlines() if "fits..." in line and "│" in line]
    assert "<path>" in row and "list[" not in row
    flags = [line for line in result.stdout.splitlines() if "--quiet" in line or "--help" in line]
    assert len(flags) == 2 and not any("<" in line for line in flags), flags
