"""`scalelaw plan`: the command over `scalelaw.frontier.planning.plan` (case: tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.measure.grid import load_grid

runner = CliRunner()


def _run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_plan_command_writes_a_grid_measure_accepts(
    planning_fit_file: Path, planning_grid_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "next.toml"
    args = ("plan", str(planning_fit_file), "--candidates", str(planning_grid_file), "--target",
            "L=128K,budget=4.5e16", "--sizes", "7B,14B,32B,72B", "--gpu-hours", "2", "--out",
            str(out), "--quiet")  # fmt: skip
    text = _run(*args)
    assert "P(sparse better)" in text and "per GPU-h" in text and f"wrote {out}" in text
    first = out.read_text()
    grid = load_grid(out)
    assert grid.configurations() and grid.lengths and grid.models
    _run(*args, "--force")
    assert out.read_text() == first  # same command, same grid
    doc = json.loads(runner.invoke(app, [*args, "--format", "json", "--force"]).stdout)
    assert doc["batch_gpu_hours"] <= 2 and doc["p_wrong_after_batch"] <= doc["p_wrong"]
    assert "--candidates" in _run("plan", "--help")


def test_plan_command_errors(
    planning_fit_file: Path, planning_grid_file: Path, tmp_path: Path
) -> None:
    grid = str(planning_grid_file)
    base = ("--candidates", grid, "--gpu-hours", "1", "--out", str(tmp_path / "x.toml"))
    err = _run("plan", "sparse-frontier-v1:prefill", *base, "--target", "L=128K,budget=4.5e16",
               code=2)  # fmt: skip
    assert "error: planning needs posterior draws" in err
    err = _run("plan", str(planning_fit_file), *base, "--target", "L=128K", code=2)
    assert "error: target 'L=128K': missing budget" in err
    err = _run("plan", str(planning_fit_file), *base, "--target", "L=128K,budget=1e10", code=2)
    assert "no dense configuration fits the budget" in err
    bad = tmp_path / "bad.toml"
    bad.write_text(planning_grid_file.read_text().replace("common-words", "story-riddles"))
    err = _run("plan", str(planning_fit_file), "--candidates", str(bad), "--gpu-hours", "1", "--target",
               "L=128K,budget=4.5e16", code=2)  # fmt: skip
    assert "task 'story-riddles'" in err
    assert not (tmp_path / "x.toml").exists()
