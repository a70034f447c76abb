"""Long commands show progress: off a terminal (here: typer's runner) as log lines on standard
error with "i of n" and an ETA, and nothing under --quiet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.special import expit
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.commands import progress

runner = CliRunner()
LINE = re.compile(r"^\d\d:\d\d:\d\d fitting the law family: .*\b(\d+) of (\d+) fits done")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The saturating table of docs/check.md's worked example."""
    rng = np.random.default_rng(0)
    grid = pl.DataFrame(
        {
            "params": np.repeat([5e8, 1.5e9, 4e9, 1.2e10, 3.6e10], 12),
            "seq_len": np.tile(np.repeat([4096.0, 16384.0], 6), 5),
            "compression": np.tile([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 10),
        }
    )
    eta = (
        3.0
        + 1.2 * np.log(grid["params"] / 3.6e10)
        - 0.3 * np.log(grid["seq_len"] / 4096)
        - 0.5 * np.log(grid["compression"])
    )
    k = rng.binomial(960, 0.25 + 0.6 * expit(eta.to_numpy()))
    path = tmp_path_factory.mktemp("progress") / "sat.csv"
    grid.with_columns(score=k / 960, samples=960, task=pl.lit("all")).write_csv(path)
    return path


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
