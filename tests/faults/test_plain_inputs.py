"""User text is printed as it is (no emoji codes, no markup); special files are refused, not read."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from scalelaw.cli import app


def test_an_emoji_code_in_a_file_name_is_printed_as_typed(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "a:smile:b.csv")])
    assert res.exit_code == 2
    assert "a:smile:b.csv" in res.output and "\N{SMILING FACE WITH OPEN MOUTH}" not in res.output


def test_task_names_with_markup_and_emoji_codes_survive_a_table(tmp_path: Path) -> None:
    from scalelaw.commands import common

    frame = pl.DataFrame({"task": ["QA [v2]", ":smile:", "[/]"], "score": [0.5, 0.6, 0.7]})
    with common.console.capture() as captured:
        common.emit(frame, "table", "tasks")
    text = captured.get()
    for name in ("QA [v2]", ":smile:", "[/]"):
        assert name in text


def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    import os

    for name, args in (("t.csv", ["fit"]), ("f.nc", ["predict"])):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        extra = ["--at", "N=7e9,L=4096,C=1"] if args == ["predict"] else []
        res = CliRunner().invoke(app, [*args, str(fifo), *extra])
        assert res.exit_code == 2, res.output
        assert "not a regular file" in res.output


def test_an_option_value_with_markup_or_an_emoji_code_is_printed_as_typed(tmp_path: Path) -> None:
    # `--task '[/]'` crashed with MarkupError; `a:-1:b.csv` printed a thumbs-down emoji
    res = CliRunner().invoke(app, ["frontier", "sparse-frontier-v1:prefill", "--task", "[/]"])
    assert res.exit_code == 2 and res.stderr.startswith("error: task '[/]' is not a task"), res
    path = tmp_path / "a:-1:b.csv"
    res = CliRunner().invoke(app, ["fit", str(path)])
    assert res.exit_code == 2 and res.stderr.strip() == f"error: {path}: file not found"
