"""Predictive intervals for every likelihood, held-out truth scores, and law stacking."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scalelaw.fits import (
    FitOptions,
    Law,
    fit,
    get_card,
    get_law,
    load_fit,
    predict_table,
    simulate,
)
from scalelaw.fits.stacking import stacking_weights

LOSS_LAW = "E + A / N**alpha"


def test_lsq_noise_drives_predictive_intervals(loss_table: pl.DataFrame) -> None:
    law = Law.from_string(LOSS_LAW, response="loss", bounds={"E": (0, None), "A": (0, None)})
    res = fit(loss_table, law, FitOptions(backend="lsq", bootstrap=30), replicates=True)
    n = loss_table["N"].to_numpy()
    true_noise = loss_table["loss"].to_numpy() - (1.8 + 400 / n**0.33)
    assert res.noise["sigma"][0] == pytest.approx(np.sqrt(np.mean(true_noise**2)), rel=0.3)
    table = predict_table(res, {"N": [3e9]}, samples=1)
    assert table["pred_upper"][0] - table["pred_lower"][0] > 0.05


def test_holdout_scores_against_the_truth() -> None:
    sim = simulate(get_card("sparse-frontier-v1:prefill"), "paper", samples=100, seed=2)
    assert "truth" in sim.columns
    res = fit(
        sim, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=30), holdout="N=max"
    )
    hold = res.meta["holdout"]
    assert hold["mae_truth"] < hold["mae"]  # the truth has no sampling noise
    assert 0.8 <= hold["coverage"] <= 1.0
    assert set(hold["per_task"]["NIAH"]) >= {"mae", "coverage", "mae_truth", "coverage_truth"}


def test_stacking_weights_prefer_the_better_law() -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(-1.0, 0.1, 50)
    assert stacking_weights(np.column_stack([good, good - 3.0]))[0] > 0.95
    w = stacking_weights(np.column_stack([good, good]))
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    # complementary laws (each good on half the rows) share the weight
    a = np.where(np.arange(50) < 25, -1.0, -6.0)
    w = stacking_weights(np.column_stack([a, a[::-1]]))
    assert 0.3 < w[0] < 0.7


def test_where_comparisons_and_replicates(saturating: Path) -> None:
    frame = pl.read_csv(saturating)
    opts = FitOptions(backend="lsq", bootstrap=0)
    small = fit(frame, get_law("sparse-frontier"), opts, where=["N<2e10", "C!=32"])
    assert small.meta["rows"] == 4 * 2 * 5
    doubled = pl.concat(
        [frame, frame.with_columns(pl.col("correct") + 1, pl.col("score") + 1 / 960)]
    )
    with pytest.raises(Exception, match="--replicates"):
        fit(doubled.drop("truth"), get_law("sparse-frontier"), opts)
    both = fit(doubled.drop("truth"), get_law("sparse-frontier"), opts, replicates=True)
    assert both.meta["rows"] == 2 * frame.height
    pooled = fit(doubled.drop("truth"), get_law("sparse-frontier"), opts, aggregate="mean")
    assert pooled.meta["rows"] == frame.height


def test_law_parameters_named_like_noise_survive_a_fit_file(
    saturating: Path, tmp_path: Path
) -> None:
    # sparse-frontier-nc has a parameter kappa; beta-binomial has a precision kappa too
    law = get_law("sparse-frontier-nc").with_options(likelihood="beta_binomial")
    res = fit(str(saturating), law, FitOptions(backend="lsq", bootstrap=10))
    loaded = load_fit(res.save(tmp_path / "nc.nc"))
    np.testing.assert_allclose(loaded.draws["kappa"], res.draws["kappa"])
    np.testing.assert_allclose(loaded.noise["kappa"], res.noise["kappa"])
    point = {"N": 7e9, "L": 16384.0, "C": 4.0, "task": "all"}
    assert predict_table(loaded, point)["mean"][0] == pytest.approx(
        predict_table(res, point)["mean"][0]
    )


def test_bounds_keep_the_other_end_and_replace_a_conflicting_prior() -> None:
    law = get_law("chinchilla-form").with_bounds({"alpha": (0.1, None), "beta": (0.0, 3.0)})
    alpha, beta = law.param("alpha"), law.param("beta")
    assert (alpha.lower, alpha.upper) == (0.1, 1.5)
    assert str(alpha.prior) == "uniform(0, 1.5)"  # still covers [0.1, 1.5]
    assert (beta.lower, beta.upper) == (0.0, 3.0) and beta.prior is None  # set from the data


def test_priors_are_stored_exactly() -> None:
    law = Law.from_string("E + A * log(N)", priors={"E": "uniform(1.0000001, 1.0000002)"})
    again = Law.from_dict(law.to_dict())
    assert again.param("E").prior == law.param("E").prior


def test_points_outside_the_fitted_spans_are_named(loss_table: pl.DataFrame) -> None:
    from scalelaw.fits import beyond_fitted, fitted_spans

    card = get_card("sparse-frontier-v1:prefill")
    assert fitted_spans(card)["L"] == (16384.0, 65536.0)  # the study held 128K out
    inside = {"N": [7.6e9, 72e9], "L": [16384.0, 65536.0], "C": [1.0, 20.0], "task": ["NIAH"] * 2}
    assert beyond_fitted(card, inside) is None  # 7.6e9 is Qwen2.5-7B rounded: inside
    far = {"N": [5e9, 7.6e9], "L": [65536.0, 131072.0], "C": [1.0, 40.0], "task": ["NIAH"] * 2}
    assert beyond_fitted(card, far) == (
        "2 of 2 points lie outside what the fit saw: N below 7.62B (1), L above 64K (1), "
        "C above 20 (1); there the prediction is the law's form carried beyond its data"
    )
    law = Law.from_string(LOSS_LAW, response="loss", bounds={"E": (0, None), "A": (0, None)})
    res = fit(loss_table, law, FitOptions(backend="lsq", bootstrap=5), replicates=True)
    lo, hi = float(loss_table["N"].min()), float(loss_table["N"].max())
    assert fitted_spans(res) == {"N": (lo, hi)}
    assert beyond_fitted(res, {"N": [hi]}) is None
    assert "N above" in str(beyond_fitted(res, {"N": [hi * 1.5]}))
    res.meta.pop("ranges")  # a fit saved before fits recorded their spans: nothing to say
    assert beyond_fitted(res, {"N": [hi * 1.5]}) is None


def test_each_published_card_leaves_out_the_slice_the_study_held_out() -> None:
    from scalelaw.fits import fitted_spans

    spans = {
        held: fitted_spans(get_card(f"sparse-frontier-v1:prefill{held}"))
        for held in ("", ":model_size", ":compression_ratio")
    }
    assert spans[""] == {"N": (7.62e9, 72.71e9), "L": (16384.0, 65536.0), "C": (1.0, 20.0)}
    assert spans[":model_size"]["N"] == (7.62e9, 32.76e9)
    assert spans[":model_size"]["L"] == (16384.0, 131072.0)
    assert spans[":compression_ratio"]["C"] == (1.0, 15.0)


def test_where_outside_begins() -> None:
    from scalelaw.fits.prediction import outside, readable

    assert not outside(72e9 * 1.02, (7.62e9, 72e9)) and outside(72e9 * 1.021, (7.62e9, 72e9))
    # negative ends widen outward too
    assert not outside(-5.0, (-5.0, -1.0)) and not outside(-1.0, (-5.0, -1.0))
    assert outside(-5.2, (-5.0, -1.0)) and outside(-0.97, (-5.0, -1.0))
    # one value seen: the law's dependence there was never measured, so no slack
    assert not outside(7.62e9, (7.62e9, 7.62e9)) and outside(7.7e9, (7.62e9, 7.62e9))
    assert outside(7.0, (7.62e9, 72e9)) and not outside(3.0, None)
    # a length that is not a whole number of K reads in tokens, never as the K it is near
    assert readable("L", 16000) == "16,000" and readable("L", 16384) == "16K"
    assert readable("L", 2**30) == "1,048,576K" and readable("N", 7.62e9) == "7.62B"


def test_an_axis_the_law_has_no_term_for_keeps_its_span(sim: pl.DataFrame) -> None:
    """A family drops an axis the table holds fixed (C = 1 here): a prediction at another C is
    the fit's answer at C = 1, so it is said to lie beyond, and a decision's sparse choices too."""
    from scalelaw.fits import beyond_fitted, fitted_spans
    from scalelaw.frontier import FlopsCost, decide, get_architecture

    dense = sim.filter(pl.col("compression") == 1.0, pl.col("task") == "QuALITY")
    law = Law.from_string(
        "eps + alpha * log(N) + beta * log(L)", covariates=("N", "L"), link="logit",
        likelihood="binomial",
    )  # fmt: skip
    res = fit(dense, law, FitOptions(backend="lsq", bootstrap=10))
    assert "C" not in law.columns
    assert fitted_spans(res)["C"] == (1.0, 1.0)
    point = {"N": [7.62e9, 7.62e9], "L": [32768.0] * 2, "C": [1.0, 10.0]}
    assert beyond_fitted(res, point) == (
        "1 of 2 points lies outside what the fit saw: C above 1 (1); there the prediction is "
        "the law's form carried beyond its data"
    )
    assert beyond_fitted(res, {"N": [7.62e9], "L": [32768.0]}) is None  # C not given
    archs = [get_architecture("qwen2.5", s) for s in ("7B", "32B")]
    d = decide(res, archs, FlopsCost(), seq_len=32768, lengths=None, budgets=4)
    assert any("compression outside those the fit saw (1)" in w for w in d.warnings), d.warnings


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("N=8e9", "--holdout 'N=8e9' leaves no rows to test; params takes 1.5e+09, 7e+09"),
        ("C=max", "--holdout 'C=max' leaves no rows to fit; compression takes 1"),
        ("task=max", "cannot hold out 'task': column 'task' is not numeric"),
    ],
)
def test_a_holdout_that_cannot_split_says_what_the_axis_holds(spec: str, said: str) -> None:
    from scalelaw.data import DataError
    from scalelaw.fits.validation import split_holdout

    table = pl.DataFrame(
        {"params": [1.5e9, 7e9], "seq_len": [4096.0] * 2, "compression": [1.0] * 2,
         "task": ["a", "b"], "score": [0.5, 0.6]}
    )  # fmt: skip
    with pytest.raises(DataError, match=re.escape(f"t.csv: {said}")):
        split_holdout(table, spec, "t.csv")
