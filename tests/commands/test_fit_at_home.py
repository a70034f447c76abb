"""`fit` of one law off a terminal: its steps as log lines (least squares: starts, refinements,
bootstrap refits; bayes: the sampling, without PyMC's internal names), how long it will take
said first, caps said in one line, and `simulate`, `predict` as the other commands behave."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from scalelaw.cli import app
from scalelaw.commands import progress
from scalelaw.fits import fitting, get_card, simulate, stacking

runner = CliRunner()
STEP = re.compile(r"^\d\d:\d\d:\d\d fitting (\S+) \((lsq|bayes)\): .*\b(\d+) of (\d+) steps done")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 rows from the published prefill card (three sizes, lengths and ratios, two tasks)."""
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": task}
            for n in (7e9, 14e9, 32e9)
            for length in (16384.0, 32768.0, 65536.0)
            for c in (1.0, 2.0, 5.0)
            for task in ("QuALITY", "SQuAD")
        ]
    )
    path = tmp_path_factory.mktemp("home") / "small.csv"
    simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=100, seed=0).write_csv(path)
    return path


@pytest.fixture(scope="module")
def saturating(check_doc_table: Path) -> Path:
    return check_doc_table


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_lsq_fit_logs_its_bootstrap_with_an_eta(
    table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVERY", 0.05)  # a line at (nearly) every step
    monkeypatch.setattr(progress, "FIRST", 0.0)  # from the first step on, however quick
    args = ["fit", str(table), "--law", "floor-ceiling", "--backend", "lsq", "--bootstrap", "40"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "fitting floor-ceiling (lsq)" in line]
    assert "started" in said[0], said
    lines = [line for line in said if STEP.match(line)]
    assert len(lines) >= 3, result.stderr
    assert any("(now choosing starts)" in x for x in lines), lines
    assert any(re.search(r"ETA \d+ s \(now bootstrap refit \d+ of 40\)", x) for x in lines), lines
    done, total = (int(n) for n in STEP.match(lines[-1]).groups()[2:])  # type: ignore[union-attr]
    assert done == total > 40 and "finished" in lines[-1], lines


def test_a_quick_fit_logs_nothing(table: Path) -> None:
    # done before the tracker's first line is due (1.5 s): the report is all it prints
    args = ["fit", str(table), "--backend", "lsq", "--bootstrap", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "steps done" not in result.stderr, result.stderr


def test_quiet_lsq_fit_logs_nothing(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "EVERY", 0.05)
    args = ["fit", str(table), "--backend", "lsq", "--bootstrap", "5", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "steps done" not in result.stderr, result.stderr


def test_bayes_fit_logs_start_and_finish_and_no_internal_names(
    table: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fitting, "LONG_SECONDS", 0.0)  # say the estimate of this short fit
    caplog.set_level(logging.INFO, logger="pymc")
    args = ["fit", str(table), "--draws", "100", "--tune", "100", "--chains", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    assert any(re.fullmatch(r"about \d+ s: 54 rows, 1 chain x 200 steps", x) for x in err), err
    lines = [line for line in err if STEP.match(line)]
    assert lines and "started" in lines[0], result.stderr
    assert "sampling: 1 chain x 200 steps (100 tuning), 54 rows" in " ".join(lines), lines
    assert re.search(r"finished: (\d+) of \1 steps done in \d+ s$", lines[-1]), lines
    assert not [r for r in caplog.records if "NUTS" in r.getMessage()], caplog.records
    assert "NUTS[" not in result.output


def test_bootstrap_above_its_bound_is_one_line(table: Path) -> None:
    result = runner.invoke(app, ["fit", str(table), "--backend", "lsq", "--bootstrap", "20000"])
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "--bootstrap" in line and "20000 refits: at most 10000" in line, line


def test_family_fit_says_how_long_first(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fitting, "LONG_SECONDS", 0.0)
    args = ["fit", str(table), "-l", "sparse-frontier", "-l", "floor-ceiling", "--backend", "lsq"]
    result = runner.invoke(app, [*args, "--bootstrap", "0", "--holdout", "N=max"])
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert re.fullmatch(
        r"about \d+ s: 2 forms x 2 fits x 54 rows, \d+ refinements \+ 0 bootstrap refits", first
    ), result.stderr
    quiet = runner.invoke(app, [*args, "--bootstrap", "0", "--holdout", "N=max", "-q"])
    assert "about" not in quiet.stderr


def test_stack_says_when_its_optimiser_stops_early(
    saturating: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for law in ("sparse-frontier", "floor-ceiling"):
        paths.append(str(tmp_path / f"{law}.nc"))
        args = ["fit", str(saturating), "--law", law, "--backend", "lsq", "--bootstrap", "0"]
        assert runner.invoke(app, [*args, "--out", paths[-1], "-q"]).exit_code == 0
    monkeypatch.setattr(stacking, "STACK_MAXITER", 1)
    out = tmp_path / "s.nc"
    result = runner.invoke(app, ["stack", *paths, "--holdout", "N=max", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    said = [x for x in result.stderr.splitlines() if "stacking weights" in x]
    assert len(said) == 1 and said[0].startswith("warning: stacking weights: the optimiser"), (
        result.stderr
    )
    assert out.exists()


def test_simulate_without_out_writes_nothing(
    table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "grid.csv"
    pl.read_csv(table).select("params", "seq_len", "compression", "task").write_csv(grid)
    result = runner.invoke(app, ["simulate", "--grid", str(grid), "--samples", "5"])
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "no --out given" in line and "--out sim.csv" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.csv"]


def test_predict_on_the_command_line_keeps_the_tables_column_names() -> None:
    card = "sparse-frontier-v1:prefill"
    args = ["predict", card, "--at", "N=7e9,L=16384,C=1,task=QuALITY", "--format", "csv"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("params,seq_len,compression,task,mean")
