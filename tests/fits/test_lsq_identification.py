"""A parameter that the data cannot move is named as not identified: a warning, not a failure."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from scalelaw.fits import FitOptions, fit, get_card, get_law, simulate
from scalelaw.fits.simulation import paper_grid


def _fit(data: pl.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(data, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=50))


def test_compression_slope_from_dense_rows_only_is_named_not_identified() -> None:
    card = get_card("sparse-frontier-v1:prefill")
    grid = paper_grid(["QuALITY", "VT"])
    dense = simulate(card, grid.filter(pl.col("compression") == 1), samples=50, seed=1)
    result = _fit(dense)
    assert np.ptp(result.draws["gamma"]) == 0.0
    # a slope whose covariate never varies is not identified: a warning, not NOT CONVERGED
    assert result.diagnostics["not_identified"] == ["gamma"]
    assert not any("not identified" in p for p in result.diagnostics["problems"])
    assert result.converged
    (warning,) = [w for w in result.diagnostics["warnings"] if "not identified" in w]
    assert "gamma" in warning and "harmless" in warning
    # with sparse rows the slope moves between resamples and nothing is named
    full = _fit(simulate(card, grid, samples=50, seed=1))
    assert np.ptp(full.draws["gamma"]) > 0
    assert not any("not identified" in p for p in full.diagnostics["problems"])


def test_bayes_names_the_dense_only_slope_without_failing() -> None:
    card = get_card("sparse-frontier-v1:prefill")
    grid = paper_grid(["QuALITY", "VT"]).filter(pl.col("compression") == 1)
    dense = simulate(card, grid, samples=50, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(
            dense,
            get_law("sparse-frontier"),
            FitOptions(backend="bayes", chains=2, draws=200, tune=200),
        )
    assert result.diagnostics["not_identified"] == ["gamma"]
    assert result.converged, result.convergence
