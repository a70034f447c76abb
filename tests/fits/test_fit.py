"""Fitting end to end: parameter recovery, the Chinchilla refit, persistence, prediction."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scalelaw.fits import (
    FitFileError,
    FitOptions,
    FitResult,
    Law,
    StrictFitError,
    fit,
    get_card,
    get_law,
    levels,
    load_fit,
    predict_draws,
    predict_table,
    simulate,
)

TRUE = ("eps", "alpha", "beta", "gamma")
# Epoch AI (Besiroglu et al. 2024, Table 1): estimates and standard errors of the Chinchilla
# refit on the digitised data; 95% intervals are estimate +- 1.96 SE.
EPOCH = {"E": (1.8172, 0.03), "A": (482.01, 124.58), "B": (2085.43, 1293.23),
         "alpha": (0.3478, 0.02), "beta": (0.3658, 0.02)}  # fmt: skip


@pytest.fixture(scope="module")
def bayes_fit(sim: pl.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(sim, get_law("sparse-frontier"), FitOptions(seed=0))


def epoch_table(shared_data: Path) -> pl.DataFrame:
    df = pl.read_csv(shared_data / "external" / "epoch_chinchilla.csv")
    df = df.rename({"Model Size": "N", "Training FLOP": "F"})
    df = df.with_columns((pl.col("F") / (6 * pl.col("N"))).alias("D"))
    # Epoch drop the five highest losses before fitting.
    return df.sort("loss", descending=True).slice(5).select("N", "D", "loss")


def test_published_card_gives_its_formula(card: FitResult) -> None:
    value = predict_table(card, {"N": 7e9, "L": 16384, "C": 1, "task": "QuALITY"})["mean"][0]
    eta = -16.92 + 1.31 * np.log(7e9) - 1.15 * np.log(16384) - 1.00 * np.log(1)
    assert value == pytest.approx(1 / (1 + np.exp(-eta)), rel=1e-12)
    niah = predict_table(card, {"N": 7e9, "L": 16384, "C": 10, "task": "NIAH"})["mean"][0]
    assert niah == pytest.approx(1 / (1 + np.exp(-(eta - np.log(10) + 14.67))), rel=1e-12)


def test_simulation_is_reproducible_and_on_the_paper_grid(
    card: FitResult, sim: pl.DataFrame
) -> None:
    assert sim.height == 4 * 4 * 11 * 9
    again = simulate(card, "paper", samples=100, seed=0)
    assert sim.equals(again)
    assert not sim.equals(simulate(card, "paper", samples=100, seed=1))


def test_parameter_recovery_bayes(bayes_fit, card: FitResult) -> None:
    d = bayes_fit.diagnostics
    assert d["rhat_max"] <= 1.01
    assert d["divergences"] == 0
    assert d["pareto_k_bad"] == 0
    for name in TRUE:
        draws = bayes_fit.draws[name]
        lo, hi = np.quantile(draws, [0.005, 0.995])
        assert lo <= float(card.draws[name][0]) <= hi, (name, lo, hi, float(card.draws[name][0]))
        # The posterior is tight: the true value is within 3 posterior SDs of the median.
        assert abs(np.median(draws) - float(card.draws[name][0])) < 3 * draws.std()
    assert d["r2"] > 0.95


def test_fit_file_round_trip(bayes_fit, tmp_path: Path) -> None:
    path = bayes_fit.save(tmp_path / "fit.nc")
    loaded = load_fit(path)
    assert loaded.law.to_dict() == bayes_fit.law.to_dict()
    assert loaded.levels == bayes_fit.levels
    for name in bayes_fit.law.param_names:
        np.testing.assert_array_equal(loaded.draws[name], bayes_fit.draws[name])
    points = pl.DataFrame({"N": [3e9], "L": [8192.0], "C": [4.0], "task": ["VT"]})
    np.testing.assert_allclose(predict_draws(loaded, points), predict_draws(bayes_fit, points))
    assert loaded.meta["data_hash"] == bayes_fit.meta["data_hash"]
    assert "pymc" in loaded.meta["versions"]


def test_fit_file_runs_no_code(bayes_fit, tmp_path: Path) -> None:
    import xarray as xr

    path = bayes_fit.save(tmp_path / "fit.nc")
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    info = json.loads(tree.attrs["scalelaw"])
    info["law"]["expr"] = "__import__('os').system('echo pwned')"
    tree.attrs["scalelaw"] = json.dumps(info)
    bad = tmp_path / "bad.nc"
    tree.to_netcdf(bad, engine="h5netcdf")
    with pytest.raises(FitFileError, match="damaged"):
        load_fit(bad)
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf file")
    with pytest.raises(FitFileError, match="not a readable"):
        load_fit(tmp_path / "junk.nc")


def test_unknown_task_in_prediction_is_named(bayes_fit) -> None:
    from scalelaw.data import DataError

    with pytest.raises(DataError, match="task 'Sudoku' was not in the fitted data"):
        predict_draws(bayes_fit, {"N": 1e9, "L": 100.0, "C": 1.0, "task": "Sudoku"})


def test_levels_of_fit_and_card(bayes_fit, card: FitResult, sim: pl.DataFrame) -> None:
    tasks = sorted(sim["task"].unique().to_list())
    assert sorted(levels(bayes_fit)["task"]) == tasks
    assert sorted(levels(card)["task"]) == tasks  # the simulation used the card's tasks
    assert levels(get_card("chinchilla")) == {}


def test_holdout_reports_mae_and_spearman(sim: pl.DataFrame) -> None:
    res = fit(
        sim, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=20), holdout="N=max"
    )
    hold = res.meta["holdout"]
    assert hold["axis"].startswith("N=7.27")
    assert set(hold["per_task"]) == set(sim["task"].unique())
    # Data simulated from the law itself extrapolate well.
    assert hold["mae"] < 0.05
    assert hold["per_task"]["QuALITY"]["spearman"] > 0.9
    assert res.meta["rows"] == sim.height * 3 // 4


def test_lsq_save_load_and_intervals(sim: pl.DataFrame, tmp_path: Path, card: FitResult) -> None:
    res = fit(sim, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=30, seed=1))
    loaded = load_fit(res.save(tmp_path / "lsq.nc"))
    assert loaded.backend == "lsq" and loaded.point is not None
    assert loaded.draws["alpha"].shape == (30,)
    assert float(loaded.point["alpha"][0]) == pytest.approx(float(card.draws["alpha"][0]), abs=0.05)


def test_strict_fails_on_thin_covariate(sim: pl.DataFrame) -> None:
    thin = sim.filter(pl.col("seq_len") <= 32768)
    with pytest.raises(StrictFitError, match="covariate L has only 2 distinct"):
        fit(thin, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=0, strict=True))


def test_chinchilla_lsq_matches_epoch(shared_data: Path) -> None:
    def chinchilla(N, D, E, A, B, alpha, beta):
        return E + A / N**alpha + B / D**beta

    starts = get_law("chinchilla-form")
    law = Law.from_function(
        chinchilla,
        covariates=["N", "D"],
        response="loss",
        transform="log",
        bounds={"E": (0, None), "A": (0, None), "B": (0, None), "alpha": (0, 2), "beta": (0, 2)},
    ).with_options(params=starts.params)
    res = fit(
        epoch_table(shared_data), law, FitOptions(backend="lsq", huber_delta=1e-3, bootstrap=0)
    )
    est = {k: float(v[0]) for k, v in res.point.items()}
    for name, target in (("E", 1.817), ("alpha", 0.348), ("beta", 0.366)):
        assert est[name] == pytest.approx(target, rel=0.01), (name, est[name])


def test_chinchilla_bayes_inside_epoch_intervals(shared_data: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(
            epoch_table(shared_data), get_law("chinchilla-form"), FitOptions(seed=0, loo=False)
        )
    for name, (value, se) in EPOCH.items():
        median = float(np.median(res.draws[name]))
        assert value - 1.96 * se <= median <= value + 1.96 * se, (name, median)
    assert res.diagnostics["rhat_max"] < 1.05


def _partial_credit(seed: int) -> pl.DataFrame:
    """Needle-like scores: each sample retrieves 4 keys, each with the law's probability."""
    rng = np.random.default_rng(seed)
    rows = []
    for L in (256.0, 512.0, 1024.0, 2048.0):
        for C in (1.0, 2.0, 4.0, 8.0):
            p = 1.0 / (1.0 + np.exp(-(3.0 - 0.4 * np.log(L) - 0.5 * np.log(C))))
            per_sample = rng.binomial(4, p, size=10) / 4
            rows.append({"seq_len": L, "compression": C, "score": per_sample.mean(),
                         "samples": 10})  # fmt: skip
    return pl.DataFrame(rows)


def test_binomial_on_partial_credit_uses_fractional_counts() -> None:
    data = _partial_credit(0)
    law = Law.from_string(
        "eps + beta * log(L) + gamma * log(C)", link="logit", likelihood="binomial"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opts = FitOptions(draws=400, tune=400, chains=2, seed=0, loo=False)
        res = fit(data, law, opts)
    assert res.meta["counts"].startswith("score x samples")
    lo, hi = res.interval("gamma", 0.99)
    assert lo < -0.5 < hi and hi - lo < 1.5
    # whole counts are taken as they are: no note, same likelihood
    whole = data.with_columns((pl.col("score") * 10).round() / 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "counts" not in fit(whole, law, opts).meta


def test_count_likelihood_without_samples_is_named() -> None:
    from scalelaw.data import DataError

    law = Law.from_string("eps + gamma * log(C)", link="logit", likelihood="binomial")
    with pytest.raises(DataError, match="needs a 'samples' column"):
        fit(_partial_credit(0).drop("samples"), law, FitOptions(backend="lsq", bootstrap=0))
