"""What `scalelaw measure` prints: the user's names literally, one line per error, no library
noise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner

from scalelaw.cli import app

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: what makes rich draw a live progress bar although the test captures the output
TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "300"}

GRID = """
name = "messages"
samples = 1
max_new_tokens = 2
lengths = [1024]
compression = [1]
methods = ["dense"]
models = {models}
tasks = {tasks}
"""


def _grid(tmp_path: Path, models: list[str], tasks: list[str] | None = None) -> Path:
    path = tmp_path / "grid.toml"
    # a JSON list of plain strings is a TOML array
    path.write_text(
        GRID.format(models=json.dumps(models), tasks=json.dumps(tasks or ["niah-multikey"]))
    )
    return path


def _measure(grid: Path, out: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["measure", str(grid), "--out", str(out)], env=env)


@pytest.mark.parametrize("models", [["QA [v2]", "[/]"], ["[/]", "QA [v2]"]])
def test_bracketed_names_are_printed_literally_in_the_live_bar(
    tmp_path: Path, models: list[str]
) -> None:
    # neither spec is a model: each run fails at once, after the bar has shown its label
    result = _measure(_grid(tmp_path, models), tmp_path / "r.parquet", env=TERMINAL)
    err = ANSI.sub("", result.stderr)
    assert result.exit_code == 3, (result.exception, err)
    assert "MarkupError" not in err
    # the bar's last description is the last run's label, brackets and all
    bar = [line for line in err.splitlines() if "samples" in line and "measure" in line]
    assert bar and bar[-1].rstrip().endswith(f"{models[-1]} niah-multikey L=1024 dense C=1"), err
    for model in models:
        assert f"warning: failed: {model} niah-multikey L=1024 dense C=1: model " in err


def test_a_task_named_like_markup_is_named_as_it_is(tmp_path: Path) -> None:
    result = _measure(_grid(tmp_path, ["tiny-llama"], ["[/]"]), tmp_path / "r.parquet", TERMINAL)
    lines = [line for line in ANSI.sub("", result.stderr).splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exception, lines)
    assert len(lines) == 1 and "unknown task '[/]'" in lines[0], lines


def test_a_failed_run_with_a_multi_line_error_is_one_warning_line(tmp_path: Path) -> None:
    # a model folder whose config names the model type `[/]`: transformers refuses it with an
    # error of several lines
    model = tmp_path / "odd-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "[/]"}))
    result = _measure(_grid(tmp_path, [str(model)]), tmp_path / "r.parquet")
    assert result.exit_code == 3, (result.exception, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("warning: failed:"))
    assert str(model) in lines[start]
    # the failure's whole message on its line, then the summary error
    assert lines[start + 1].startswith("error: 1 of 1 model runs failed"), lines[start:]


def test_a_run_prints_no_future_warning(tmp_path: Path) -> None:
    grid = _grid(tmp_path, ["tiny-llama"])
    done = subprocess.run(
        [sys.executable, "-m", "scalelaw.cli", "measure", str(grid), "--out",
         str(tmp_path / "r.parquet")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "FutureWarning" not in done.stderr, done.stderr
