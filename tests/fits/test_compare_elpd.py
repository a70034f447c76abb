"""`compare` ranks Bayesian fits with ArviZ's `compare` (ELPD-LOO, its standard error, the
standard error of each difference, stacking weights), says in one line when a near-zero weight
is a near tie, and lets no library warning or internal variable name reach the terminal."""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import arviz as az
import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.fits import FitOptions, compare, get_card, get_law, simulate

#: tiny Bayesian fits: a few seconds each
TINY = FitOptions(backend="bayes", draws=200, tune=200, chains=2, seed=0)
#: names the Bayesian backend gives PyMC variables and the log-likelihood, never the user's
INTERNAL = re.compile(r"\bobs\b|_free\b|_std\b|_centred\b|_sd\b|_z\b")
ELPD_COLUMNS = ["law", "rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo", "weight", "warning"]


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """54 rows simulated from the published prefill card: 3 sizes x 3 lengths x 3 ratios x 2
    tasks, 100 samples a row. Its law is sparse-frontier; sparse-frontier-lc adds one slope."""
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": task}
            for n in (1.5e9, 7e9, 3.2e10)
            for length in (4096.0, 16384.0, 65536.0)
            for c in (1.0, 4.0, 16.0)
            for task in ("QuALITY", "VT")
        ]
    )
    return simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=100, seed=0)


@pytest.fixture(scope="module")
def csv(table: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compare") / "sim.csv"
    table.write_csv(path)
    return path


def spied_compare(table: pl.DataFrame, *names: str) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """`compare` of the named laws, and what it handed `arviz.compare` each time."""
    calls: list[dict[str, Any]] = []
    real = az.compare

    def spy(compare_dict: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(dict(compare_dict))
        return real(compare_dict, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(az, "compare", spy)
        result = compare(table, [get_law(n) for n in names], TINY)
    return result, calls


def notes_of(result: pl.DataFrame) -> list[str]:
    from scalelaw.fits.validation import compare_notes

    return compare_notes(result)


@pytest.fixture(scope="module")
def nested(table: pl.DataFrame) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The truth's law and the same law with a compression slope that moves with length."""
    return spied_compare(table, "sparse-frontier", "sparse-frontier-lc")


def test_se_and_dse_are_arviz_compare_s(nested: tuple[pl.DataFrame, list[Any]]) -> None:
    result, calls = nested
    assert len(calls) == 1, "compare should rank the laws with arviz.compare"
    assert set(calls[0]) == {"sparse-frontier", "sparse-frontier-lc"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = az.compare(calls[0], round_to="none")
    assert result.columns[: len(ELPD_COLUMNS)] == ELPD_COLUMNS
    for row in result.iter_rows(named=True):
        arviz = expected.loc[row["law"]]
        assert row["rank"] == arviz["rank"]
        assert row["elpd_loo"] == pytest.approx(arviz["elpd"], rel=1e-12)
        assert row["se"] == pytest.approx(arviz["se"], rel=1e-12)
        assert row["elpd_diff"] == pytest.approx(arviz["elpd_diff"], rel=1e-12, abs=1e-12)
        assert row["dse"] == pytest.approx(arviz["dse"], rel=1e-12, abs=1e-12)
        assert row["p_loo"] == pytest.approx(arviz["p"], rel=1e-12)
        assert row["weight"] == pytest.approx(arviz["weight"], abs=1e-12)
    assert result["law"].to_list() == list(expected.index)
    assert result["dse"].to_list()[1] > 0
    for column in ("r2", "converged"):  # kept from before: not ELPD's
        assert column in result.columns
    printed = " ".join(result.columns) + " " + " ".join(str(v) for r in result.rows() for v in r)
    assert not INTERNAL.search(printed), printed


def test_near_tie_line_for_nested_laws(nested: tuple[pl.DataFrame, list[Any]]) -> None:
    result, _ = nested
    lc = result.filter(pl.col("law") == "sparse-frontier-lc").row(0, named=True)
    # the situation the line explains: almost no weight, a difference within its error
    assert lc["weight"] < 0.01
    assert abs(lc["elpd_diff"]) < 2 * lc["dse"]
    ties = [n for n in notes_of(result) if "not probabilities" in n]
    assert len(ties) == 1, notes_of(result)
    assert "sparse-frontier-lc" in ties[0]
    assert "standard error" in ties[0]
    assert "\n" not in ties[0]


def test_no_near_tie_line_when_one_law_is_clearly_worse(table: pl.DataFrame) -> None:
    # logistic-power ignores length and compression: hundreds of ELPD units worse
    result, calls = spied_compare(table, "sparse-frontier", "logistic-power")
    assert len(calls) == 1
    worse = result.filter(pl.col("law") == "logistic-power").row(0, named=True)
    assert worse["weight"] < 0.01
    assert abs(worse["elpd_diff"]) > 2 * worse["dse"]
    assert not [n for n in notes_of(result) if "not probabilities" in n]


@pytest.fixture
def pymc_info() -> Iterator[list[logging.LogRecord]]:
    """PyMC's log at INFO, as in a terminal, recorded."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("pymc")
    level, handler = logger.level, Keep(logging.DEBUG)
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_cli_prints_no_warnings_and_no_internal_names(
    csv: Path, pymc_info: list[logging.LogRecord]
) -> None:
    args = ["compare", str(csv), "--law", "sparse-frontier", "--law", "sparse-frontier-lc"]
    args += ["--backend", "bayes", "--draws", "200"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "RuntimeWarning" not in out.output
    assert "Warning" not in out.output
    leaked = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not leaked, leaked
    logged = [r.getMessage() for r in pymc_info if r.levelno < logging.WARNING]
    assert not logged, logged
    assert not INTERNAL.search(out.output), out.output
    header = next(line for line in out.output.splitlines() if "elpd_loo" in line)
    for column in ELPD_COLUMNS:
        assert re.search(rf"\b{column}\b", header), header
    assert "not probabilities" in out.output


def test_least_squares_compare_still_works(csv: Path) -> None:
    args = ["compare", str(csv), "-l", "sparse-frontier", "-l", "sparse-frontier-lc"]
    args += ["--backend", "lsq", "--holdout", "N=max", "--format", "json"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    maes = [r["holdout_mae"] for r in rows]
    assert len(rows) == 2 and maes == sorted(maes)  # ranked by held-out error, as before
    assert {"law", "params", "r2", "holdout_mae", "holdout_coverage", "converged"} <= set(rows[0])
    assert not {"elpd_loo", "se", "dse", "weight", "elpd_se"} & set(rows[0])  # no empty columns
    lines = [line for line in out.stderr.splitlines() if "ELPD" in line]
    assert len(lines) == 1 and "least squares" in lines[0].lower(), out.stderr
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_stacking_weights_are_arviz_s_unrounded(table: pl.DataFrame) -> None:
    from scalelaw.fits import fit
    from scalelaw.fits.stacking import stack

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [fit(table, get_law(n), TINY) for n in ("sparse-frontier", "logistic-power")]
        stacked = stack(fits)
        exact = az.compare({f.law.name: f.idata for f in fits}, method="stacking", round_to="none")
    expected = [float(exact.loc[f.law.name, "weight"]) for f in fits]
    # ArviZ's default rounds to two decimals: a weight of 3e-12 would read as 0
    assert stacked.weights.tolist() == pytest.approx(expected, rel=1e-12, abs=0)
    assert 0 < min(expected) < 0.005
