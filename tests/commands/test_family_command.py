"""`scalelaw fit --law auto`, a wrong law's MISFIT line, `frontier` given a table."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.fits import load_fit

_spec = importlib.util.spec_from_file_location(
    "family_cases", Path(__file__).resolve().parents[1] / "fits" / "test_family.py"
)
assert _spec is not None and _spec.loader is not None
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

runner = CliRunner()


def test_fit_auto_writes_one_stacked_file(tmp_path: Path) -> None:
    table = tmp_path / "sat.csv"
    cases.saturating().write_csv(table)
    out = tmp_path / "family.nc"
    result = runner.invoke(
        app, ["fit", str(table), "--law", "auto", "--backend", "lsq", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "auto:floor-ceiling" in result.output
    assert "weight beyond N=3.6e+10" in result.output  # the default weighting: held out per axis
    stacked = load_fit(out)
    assert len(stacked.fits) == 4  # one-slope forms expanded: length-compression is log-linear


def test_fit_auto_fits_every_form_with_the_options_given(tmp_path: Path) -> None:
    # the bootstrap size and Huber scale reach every form, as they reach a single law's fit
    table = tmp_path / "sat.csv"
    cases.saturating().write_csv(table)
    out = tmp_path / "family.nc"
    args = ["fit", str(table), "--law", "auto", "--backend", "lsq", "--out", str(out)]
    result = runner.invoke(app, [*args, "--bootstrap", "40", "--huber-delta", "0.5"])
    assert result.exit_code == 0, result.output
    for f in load_fit(out).fits:
        assert f.diagnostics["bootstrap"] == 40 and f.diagnostics["huber_delta"] == 0.5, f.law.name


def test_wrong_law_prints_misfit_first(tmp_path: Path) -> None:
    table = tmp_path / "sat.csv"
    cases.saturating().write_csv(table)
    result = runner.invoke(app, ["fit", str(table), "--law", "sparse-frontier", "--backend", "lsq"])
    assert result.exit_code == 0
    assert result.output.lstrip().startswith("MISFIT: ")
    strict = runner.invoke(
        app, ["fit", str(table), "--law", "sparse-frontier", "--backend", "lsq", "--strict"]
    )
    assert strict.exit_code == 3 and "MISFIT" in strict.output


def test_check_scores_each_law_and_the_stack(tmp_path: Path) -> None:
    import json

    table = tmp_path / "sat.csv"
    cases.saturating().write_csv(table)
    fig = tmp_path / "check.png"
    result = runner.invoke(
        app,
        ["check", str(table), "--holdout", "N=max", "--backend", "lsq", "--format", "json",
         "--out", str(fig)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["source"]: r for r in json.loads(result.stdout.split("figure written")[0])}
    assert set(rows) >= {"auto:log-linear", "auto:floor-ceiling", "stack"}
    assert rows["auto:floor-ceiling"]["weight"] > 0.5
    # the right form extrapolates with narrower intervals than the log-linear one
    assert rows["stack"]["width"] < rows["auto:log-linear"]["width"]
    assert rows["stack"]["coverage"] >= 0.75 and rows["stack"]["rows"] == 12
    assert fig.stat().st_size > 10_000


@pytest.mark.timeout(120)
def test_warnings_raised_during_the_family_fit_are_shown_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """A warning that is not the fit's own (ArviZ's, NumPy's) used to be re-recorded while the
    recorded ones were shown: the command never ended and its memory grew without bound."""
    import warnings

    from scalelaw.fits import FitWarning, family, get_law

    real = family.fit_family

    def noisy(*args: Any, **kwargs: Any) -> Any:
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
        warnings.warn("the stacking optimiser stopped early", FitWarning, stacklevel=1)
        # one law, so nothing is stacked: the test is of the warnings, not of the family
        return real(*args, **{**kwargs, "laws": [], "extra": [get_law("sparse-frontier")]})

    monkeypatch.setattr(family, "fit_family", noisy)
    table = tmp_path / "sat.csv"
    cases.saturating().write_csv(table)
    result = runner.invoke(app, ["fit", str(table), "--law", "auto", "--backend", "lsq"])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: the stacking optimiser stopped early") == 1
    # the library's warning goes back through the filters (here pytest's recorder), once
    assert [str(w.message) for w in recwarn.list].count("a library's warning") == 1
