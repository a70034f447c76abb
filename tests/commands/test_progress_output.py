"""Long commands show progress: off a terminal (here: typer's runner) as log lines on standard
error with "i of n" and an ETA, and nothing under --quiet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.commands import progress

runner = CliRunner()
LINE = re.compile(r"^\d\d:\d\d:\d\d fitting the law family: .*\b(\d+) of (\d+) fits done")


@pytest.fixture(scope="module")
def table(check_doc_table: Path) -> Path:
    return check_doc_table


def test_fit_auto_logs_counts_and_an_eta_off_a_terminal(
    table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVERY", 0.2)  # a line at every step of this short run
    args = ["fit", str(table), "--law", "auto", "--backend", "lsq", "--bootstrap", "0"]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if LINE.match(line)]
    assert len(lines) >= 3, result.stderr
    assert "started" in lines[0] and "no ETA yet" in lines[0], lines
    # the candidate forms and one held-out refit of each per axis: 4 forms, N and C held out
    counts = [tuple(int(n) for n in LINE.match(line).groups()) for line in lines]  # type: ignore[union-attr]
    assert counts[-1] == (12, 12) and "finished" in lines[-1], lines
    assert any(re.search(r"ETA \d+ s", line) for line in lines[1:-1]), lines
    assert "nan" not in result.stderr
    assert json.loads(result.stdout)[0]["law"] == "auto:log-linear"  # stdout: the JSON alone


def test_quiet_shows_no_progress(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "EVERY", 0.2)
    args = ["fit", str(table), "--law", "auto", "--backend", "lsq", "--bootstrap", "0", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not [line for line in result.stderr.splitlines() if "fits done" in line], result.stderr


def test_stack_refits_log_their_progress(
    table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVERY", 0.2)
    paths = []
    for law in ("sparse-frontier", "floor-ceiling"):
        paths.append(str(tmp_path / f"{law}.nc"))
        args = ["fit", str(table), "--law", law, "--backend", "lsq", "--bootstrap", "0"]
        assert runner.invoke(app, [*args, "--out", paths[-1]]).exit_code == 0
    result = runner.invoke(
        app, ["stack", *paths, "--holdout", "N=max", "--out", str(tmp_path / "s.nc")]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "refits done" in line]
    assert lines and "stacking: started; 0 of 2 refits done" in lines[0], result.stderr
    assert "refitting sparse-frontier without N=max (1 of 2)" in lines[0], lines
    assert "finished: 2 of 2 refits done" in lines[-1], lines
