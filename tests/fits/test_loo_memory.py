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


def test_a_large_log_likelihood_is_stored_as_pointwise_loo(small_fit, tmp_path, monkeypatch):
    """Files stay small: above FILE_LOGLIK_BYTES the file keeps each row's ELPD-LOO and Pareto
    k instead of the (draws x rows) log-likelihood, and `compare` and stacking read them."""
    from scalelaw.fits import result as result_module
    from scalelaw.fits.result import load_fit
    from scalelaw.fits.stacking import pointwise_loo, stack

    fitted, _ = small_fit
    whole = fitted.save(tmp_path / "whole.nc")  # under the limit: kept as it is
    assert "log_likelihood" in load_fit(whole).idata.children
    monkeypatch.setattr(result_module, "FILE_LOGLIK_BYTES", 1024)
    small = fitted.save(tmp_path / "small.nc")
    assert small.stat().st_size < whole.stat().st_size / 2
    loaded = load_fit(small)
    assert "log_likelihood" not in loaded.idata.children
    assert POINTWISE_LOO in loaded.idata.children
    assert "not stored in the file" in loaded.diagnostics["loo_note"]
    assert pointwise_loo(loaded) == pytest.approx(pointwise_loo(fitted))
    assert pointwise_loo(loaded).sum() == pytest.approx(fitted.diagnostics["elpd_loo"])
    assert "log_likelihood" in fitted.idata.children  # the fit in memory is untouched
    stacked = stack([loaded, load_fit(whole)])
    assert stacked.weights.sum() == pytest.approx(1.0)
