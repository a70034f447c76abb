"""The law of combined prefill+decode runs, and the single-ratio laws refusing their rows."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

from scalelaw.errors import ScalelawError
from scalelaw.fits import FitOptions, fit, get_law, simulate
from scalelaw.fits.result import FitResult

TRUE = {
    "eps": -14.0,
    "alpha": 1.2,
    "beta": -0.9,
    "gamma_p": -0.7,
    "gamma_d": -0.4,
    "kappa": -0.1,
    "delta": {"QuALITY": 0.0, "NIAH": 1.0},
}
RATIOS = (1.0, 2.0, 4.0, 8.0)


def grid() -> pl.DataFrame:
    """4 sizes x 3 lengths x every (prefill, decode) ratio pair x 2 tasks: 768 rows."""
    rows = [
        {
            "params": n,
            "seq_len": float(length),
            "prefill_compression": cp,
            "decode_compression": cd,
            "task": task,
        }
        for n, length, cp, cd, task in itertools.product(
            (1e9, 3e9, 7e9, 14e9), (4096, 16384, 65536), RATIOS, RATIOS, ("QuALITY", "NIAH")
        )
    ]
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def card() -> FitResult:
    return FitResult.card(get_law("sparse-frontier-pd"), TRUE)


def test_law_reads_both_phase_ratios() -> None:
    law = get_law("sparse-frontier-pd")
    assert law.columns["prefill_compression"] == "prefill_compression"
    assert law.columns["decode_compression"] == "decode_compression"
    assert "compression" not in law.columns.values()
    assert law.link == "logit" and law.likelihood == "binomial"
    assert {"gamma_p", "gamma_d", "kappa"} <= set(law.param_names)


def test_lsq_recovers_both_compression_slopes(card: FitResult) -> None:
    sim = simulate(card, grid(), samples=200, seed=0)
    res = fit(sim, get_law("sparse-frontier-pd"), FitOptions(backend="lsq", bootstrap=0))
    est = {k: float(v[0]) for k, v in res.estimates().items() if k != "delta"}
    for name in ("gamma_p", "gamma_d", "kappa"):
        assert est[name] == pytest.approx(TRUE[name], abs=0.1), (name, est[name])


def test_single_method_rows_fit_beside_combined_ones(card: FitResult) -> None:
    # prefill-only rows have decode_compression = 1 and decode-only rows the other way round
    sim = simulate(card, grid(), samples=200, seed=1).with_columns(
        phase=pl.when((pl.col("prefill_compression") > 1) & (pl.col("decode_compression") > 1))
        .then(pl.lit("prefill+decode"))
        .when(pl.col("decode_compression") > 1)
        .then(pl.lit("decode"))
        .otherwise(pl.lit("prefill")),
        compression=pl.when(pl.col("prefill_compression") > 1)
        .then(pl.col("prefill_compression"))
        .otherwise(pl.col("decode_compression")),
    )
    res = fit(sim, get_law("sparse-frontier-pd"), FitOptions(backend="lsq", bootstrap=0))
    assert float(res.estimates()["gamma_d"][0]) == pytest.approx(TRUE["gamma_d"], abs=0.1)

    with pytest.raises(ScalelawError) as err:
        fit(sim, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=0))
    message = str(err.value)
    assert "\n" not in message and "sparse-frontier-pd" in message
    assert "phase = prefill+decode" in message and "--where 'phase!=prefill+decode'" in message
    # without the combined rows the single-ratio law fits as before
    single = fit(
        sim,
        get_law("sparse-frontier"),
        FitOptions(backend="lsq", bootstrap=0),
        where=["phase!=prefill+decode"],
    )
    assert single.meta["rows"] == sim.filter(pl.col("phase") != "prefill+decode").height


def test_combined_rows_that_share_a_prefill_ratio_are_named_not_called_repeats(
    card: FitResult,
) -> None:
    # rows of one prefill ratio and several decode ratios repeat (N, L, C, task, method, phase)
    sim = (
        simulate(card, grid(), samples=200, seed=2)
        .filter((pl.col("prefill_compression") == 4) & (pl.col("decode_compression") > 1))
        .with_columns(
            compression=pl.col("prefill_compression"),
            phase=pl.lit("prefill+decode"),
            method=pl.lit("block-sparse+quest"),
        )
    )
    for law in ("sparse-frontier", "sparse-frontier-nc", "floor-ceiling"):
        with pytest.raises(ScalelawError, match="fit them with sparse-frontier-pd"):
            fit(sim, get_law(law), FitOptions(backend="lsq", bootstrap=0))
