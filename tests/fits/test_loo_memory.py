"""PSIS-LOO over blocks of rows equals the full computation, and large fits keep no
(draws x rows) log-likelihood."""

from __future__ import annotations

import numpy as np
import pytest

from scalelaw.fits import FitOptions, fit, get_card, get_law, simulate
from scalelaw.fits.bayes import (
    LOO_COPIES,
    POINTWISE_LOO,
    chunked_loo,
    loglik_fits,
    loo_diagnostics,
)
from scalelaw.fits.design import bind
from scalelaw.fits.simulation import paper_grid


@pytest.fixture(scope="module")
def small_fit():
    card = get_card("sparse-frontier-v1:prefill")
    data = simulate(card, paper_grid(["QuALITY", "VT"]), samples=50, seed=1)
    options = FitOptions(backend="bayes", draws=200, tune=300, chains=2, seed=0)
    return fit(data, get_law("sparse-frontier"), options), data


def test_blocks_of_rows_give_the_full_psis_loo(small_fit) -> None:
    result, data = small_fit
    assert "log_likelihood" in result.idata.children
    full = loo_diagnostics(result.idata)
    design = bind(result.law, data, result.levels)
    draws = result.idata["posterior"].sizes["chain"] * result.idata["posterior"].sizes["draw"]
    blocks, group = chunked_loo(
        result.idata, result.law, design, budget=8.0 * draws * LOO_COPIES * 25
    )
    assert "blocks of 25 rows" in blocks["loo_note"]
    assert blocks["elpd_loo"] == pytest.approx(full["elpd_loo"], rel=1e-9)
    assert blocks["elpd_loo_se"] == pytest.approx(full["elpd_loo_se"], rel=1e-6)
    assert blocks["p_loo"] == pytest.approx(full["p_loo"], rel=1e-6)
    assert blocks["pareto_k_max"] == pytest.approx(full["pareto_k_max"], rel=1e-9)
    assert group["elpd_i"].size == data.height


def test_over_the_budget_no_log_likelihood_is_kept_and_stacking_still_works(tmp_path) -> None:
    from scalelaw.fits.result import load_fit
    from scalelaw.fits.stacking import stack

    assert loglik_fits(1000, 4000, 2e9) and not loglik_fits(200_000, 4000, 2e9)
    card = get_card("sparse-frontier-v1:prefill")
    data = simulate(card, paper_grid(["QuALITY", "VT"]), samples=50, seed=1)
    # room for 50 rows at 400 draws (fewer if a retry doubles the draws)
    options = FitOptions(
        backend="bayes",
        draws=200,
        tune=300,
        chains=2,
        seed=0,
        max_memory=8.0 * 400 * LOO_COPIES * 50,
    )
    fits = [fit(data, get_law(n), options) for n in ("sparse-frontier", "sparse-frontier-lc")]
    for f in fits:
        assert "log_likelihood" not in f.idata.children
        assert POINTWISE_LOO in f.idata.children
        assert "PSIS-LOO computed in blocks of" in f.diagnostics["loo_note"]
        assert np.isfinite(f.diagnostics["elpd_loo"])
    fits = [load_fit(f.save(tmp_path / f"{i}.nc")) for i, f in enumerate(fits)]  # kept on disk
    stacked = stack(fits)
    assert stacked.weights.sum() == pytest.approx(1.0)
    assert stacked.method == "PSIS-LOO"
