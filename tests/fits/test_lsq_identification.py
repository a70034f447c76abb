"""A least-squares parameter that the data cannot move is named, not given a zero-width interval."""

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
    (problem,) = [p for p in result.diagnostics["problems"] if "not identified" in p]
    assert problem.endswith(": gamma")
    assert result.headline().startswith("NOT CONVERGED")
    # with sparse rows the slope moves between resamples and nothing is named
    full = _fit(simulate(card, grid, samples=50, seed=1))
    assert np.ptp(full.draws["gamma"]) > 0
    assert not any("not identified" in p for p in full.diagnostics["problems"])
