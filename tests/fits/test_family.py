"""The law family (`fit --law auto`), MISFIT on a wrong law, decisions from a table."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy import special

from scalelaw.fits import FitOptions, fit, get_law, load_fit
from scalelaw.fits.family import candidates, fit_family
from scalelaw.fits.stacking import StackedFit

GRID = pl.DataFrame(
    {
        "params": np.repeat([5e8, 1.5e9, 4e9, 1.2e10, 3.6e10], 12),
        "seq_len": np.tile(np.repeat([4096.0, 16384.0], 6), 5),
        "compression": np.tile([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 10),
    }
)


def saturating(samples: int = 960, seed: int = 0) -> pl.DataFrame:
    """A floor of 0.25 and a ceiling of 0.85: the log-linear law cannot follow it."""
    rng = np.random.default_rng(seed)
    eta = (
        3.0
        + 1.2 * np.log(GRID["params"].to_numpy() / 3.6e10)
        - 0.3 * np.log(GRID["seq_len"].to_numpy() / 4096)
        - 0.5 * np.log(GRID["compression"].to_numpy())
    )
    p = 0.25 + 0.6 * special.expit(eta)
    k = rng.binomial(samples, p)
    return GRID.with_columns(
        pl.Series("score", k / samples),
        pl.Series("samples", np.full(GRID.height, samples)),
        pl.lit("all").alias("task"),
    )


def test_candidates_use_only_the_axes_that_vary(shared_data) -> None:
    from scalelaw.data import load_table

    helmet = load_table(shared_data / "external" / "helmet" / "helmet_llama3_inst.csv")
    names = [law.name for law in candidates(helmet)]
    assert names == [
        "auto:log-linear",
        "auto:task-slopes",
        "auto:task-ceilings",
        "auto:floor-ceiling",
    ]
    for law in candidates(helmet):
        assert "C" not in law.covariates  # compression is 1 in every row: no slope for it
        assert law.likelihood == "normal"  # scores without counts
    full = [law.name for law in candidates(saturating())]
    assert "auto:size-compression" in full and "auto:tolerance" in full
    assert all(law.likelihood == "logit_normal_binomial" for law in candidates(saturating()))


def test_every_form_lets_the_compression_slope_move_with_length() -> None:
    """The family is expanded: no form may be certain of one compression slope at every length."""
    for law in candidates(saturating()):
        assert "kappa" in [p.name for p in law.params], law.name
        # centred at the table's central length (4K and 16K -> 8K): gamma is the slope there
        assert "kappa * log(L / 8192)" in str(law.expr), str(law.expr)
    one_slope = candidates(saturating(), expand=False)
    names = [law.name for law in one_slope]
    assert "auto:length-compression" in names  # the expansion as one form among others
    assert [law.name for law in one_slope if "kappa" in [p.name for p in law.params]] == [
        "auto:length-compression"
    ]


def test_expanded_family_recovers_a_length_dependent_slope() -> None:
    """Truth: the compression slope steepens with length (kappa = -0.1). The expanded forms
    estimate kappa near the truth, and the stack predicts 8x beyond the longest measured length
    nearer the truth than any one-slope form, each of which is sure of the slope it measured."""
    from scalelaw.fits import predict_table, simulate
    from scalelaw.fits.simulation import length_slope_card

    truth = length_slope_card(-0.1, pivot=8192, tasks=["QuALITY"])
    grid = GRID.with_columns(task=pl.lit("QuALITY"))
    data = simulate(truth, grid, samples=2000, seed=1)
    opts = FitOptions(backend="lsq", bootstrap=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expanded = fit_family(data, opts)
        one_slope = fit_family(data, opts, expand=False)
    for f in expanded.fits:
        if f.law.name != "auto:tolerance":  # there kappa moves the decline beyond C*, not gamma
            kappa = float(np.median(f.draws["kappa"]))
            assert -0.15 < kappa < -0.05, (f.law.name, kappa)
    far = {"N": 1.2e10, "L": 131072, "C": 16, "task": "QuALITY"}
    want = float(predict_table(truth, far)["mean"][0])
    error = abs(float(predict_table(expanded, far)["mean"][0]) - want)
    for f in one_slope.fits:
        if f.law.name != "auto:length-compression":
            assert error < abs(float(predict_table(f, far)["mean"][0]) - want), f.law.name


def test_wrong_law_says_misfit_and_names_rows() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrong = fit(saturating(), get_law("sparse-frontier"), FitOptions(backend="lsq"))
    headline = wrong.headline()
    assert headline is not None and headline.startswith("MISFIT: ")
    assert "worst rows: row " in headline and "--law auto" in headline
    assert wrong.converged  # the optimiser converged: the law is wrong, not the fit


def test_right_law_has_no_misfit(sim, card) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        right = fit(sim, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=20))
    assert right.misfit == [] and right.headline() is None


def test_family_stacks_and_saves(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = fit_family(saturating(), FitOptions(backend="lsq", bootstrap=20))
    assert isinstance(stacked, StackedFit)
    # the default: each axis with three values held out; least squares averages them inside
    assert stacked.method == "held-out weights averaged over N, C"
    assert np.isclose(stacked.weights.sum(), 1.0)
    beyond_n = dict(zip(stacked.meta["laws"], stacked.extrapolation["params"][1], strict=True))
    assert beyond_n["auto:floor-ceiling"] > 0.5  # the form that saturates extrapolates N best
    path = stacked.save(tmp_path / "family.nc")
    again = load_fit(path)
    assert np.allclose(again.weights, stacked.weights)
    assert np.allclose(again.extrapolation["params"][1], stacked.extrapolation["params"][1])


def test_decide_from_a_table_fits_the_family() -> None:
    from scalelaw.frontier import FlopsCost, decide, get_architecture

    archs = [get_architecture("qwen2.5", s) for s in ("7B", "14B")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decision = decide(
            saturating(), archs, FlopsCost(), seq_len=32768, lengths=None, budgets=3,
            fit_options=FitOptions(backend="lsq", bootstrap=20),
        )  # fmt: skip
    assert "law family, stacked" in decision.source
    assert decision.frontier.budgets.height == 3


@pytest.mark.parametrize("expr", ["eps + b[task] * log(L)"])
def test_per_level_slope_saves_and_loads(tmp_path, expr: str) -> None:
    """A per-level parameter that is not an offset keeps its level coordinate in the file."""
    data = saturating(samples=200).with_columns(
        pl.when(pl.col("params") > 2e9).then(pl.lit("big")).otherwise(pl.lit("small")).alias("task")
    )
    from scalelaw.fits import Law, predict_table

    law = Law.from_string(expr, covariates=("L",), link="logit", likelihood="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(data, law, FitOptions(backend="bayes", chains=2, draws=200, tune=200))
    res.save(tmp_path / "b.nc")
    loaded = load_fit(tmp_path / "b.nc")
    table = predict_table(loaded, {"L": 8192, "task": "big"})
    assert 0 < float(table["mean"][0]) < 1
