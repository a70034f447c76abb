"""At home in a notebook and a terminal: a fit's steps heard through `FitOptions.progress`,
caps said when hit, a stacked fit described like a fit, the bootstrap as a DataTree in memory,
points and tables as the user has them, and how long a fit will take said before it starts."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from matplotlib.figure import Figure

from scalelaw.errors import ScalelawError
from scalelaw.fits import (
    FitOptions,
    FitWarning,
    Law,
    fit,
    fitting,
    get_card,
    get_law,
    load_fit,
    lsq,
    predict_table,
    simulate,
    stacking,
)
from scalelaw.fits.stacking import StackedFit, stack, stacking_weights


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """36 rows from the published prefill card: three sizes, three lengths, two ratios and
    two tasks."""
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": task}
            for n in (7e9, 14e9, 32e9)
            for length in (16384.0, 32768.0, 65536.0)
            for c in (1.0, 4.0)
            for task in ("QuALITY", "SQuAD")
        ]
    )
    return simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=100, seed=0)


def quiet_fit(data: Any, law: Law, options: FitOptions, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(data, law, options, **kw)


class Steps:
    """A progress callback that counts, as the command line's tracker does."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.total = 0

    def expect(self, n: int) -> None:
        self.total += n

    def __call__(self, message: str) -> None:
        self.messages.append(message)


# --- 1. progress of one least-squares fit -----------------------------------------------------
def test_lsq_fit_tells_its_steps(table: pl.DataFrame) -> None:
    steps = Steps()
    quiet_fit(
        table, get_law("floor-ceiling"), FitOptions(backend="lsq", bootstrap=12, progress=steps)
    )
    assert steps.messages[0] == "choosing starts"
    refinements = [m for m in steps.messages if m.startswith("refining start")]
    assert refinements and refinements[-1].startswith(f"refining start {len(refinements)} of")
    boot = [m for m in steps.messages if m.startswith("bootstrap refit")]
    assert boot == [f"bootstrap refit {i} of 12" for i in range(1, 13)]
    assert steps.total == len(steps.messages)  # every step announced, none twice


def test_a_plain_function_hears_the_messages(table: pl.DataFrame) -> None:
    heard: list[str] = []
    quiet_fit(
        table,
        get_law("sparse-frontier"),
        FitOptions(backend="lsq", bootstrap=3, progress=heard.append),
    )
    assert heard[-1] == "bootstrap refit 3 of 3"


# --- 3. caps said when hit --------------------------------------------------------------------
def test_refinements_stopped_by_their_cap_are_counted_and_said(
    table: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lsq, "REFINE_NFEV", 1)  # a cap every refinement hits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(table, get_law("floor-ceiling"), FitOptions(backend="lsq", bootstrap=0))
    d = res.diagnostics
    assert d["refine_capped"] == d["refined"] > 0 and d["refine_best_capped"]
    lines = [str(w.message) for w in caught if issubclass(w.category, FitWarning)]
    said = [line for line in lines if "refinements hit the cap" in line]
    assert len(said) == 1 and "\n" not in said[0], lines
    assert f"{d['refined']} of {d['refined']} refinements" in said[0]
    assert "may not be converged" in said[0]


def test_refinements_within_their_cap_say_nothing(table: pl.DataFrame) -> None:
    res = quiet_fit(table, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=0))
    assert res.diagnostics["refine_capped"] == 0
    assert res.diagnostics["refine_cap"] == lsq.REFINE_NFEV * (1 + 5)  # 5 free slots


def test_stacking_weights_say_when_the_optimiser_stops_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    lpd = rng.normal(-1.0, 1.0, size=(200, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        full = stacking_weights(lpd)  # converges: no warning
    monkeypatch.setattr(stacking, "STACK_MAXITER", 1)
    with pytest.warns(FitWarning, match=r"stopped after 1 iterations") as caught:
        early = stacking_weights(lpd)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert early.sum() == pytest.approx(1.0) and not np.allclose(early, full, atol=1e-4)


def test_bootstrap_has_an_upper_bound() -> None:
    with pytest.raises(ScalelawError, match=r"^bootstrap=20000: at most 10000 refits"):
        FitOptions(backend="lsq", bootstrap=20_000)
    assert FitOptions(bootstrap=fitting.MAX_BOOTSTRAP).bootstrap == 10_000


# --- 4. a stacked fit in a notebook -----------------------------------------------------------
@pytest.fixture(scope="module")
def stacked(table: pl.DataFrame) -> StackedFit:
    opts = FitOptions(backend="lsq", bootstrap=10)
    fits = [quiet_fit(table, get_law(n), opts) for n in ("sparse-frontier", "floor-ceiling")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stack(fits, data=table, holdout="N=max", options=opts)


def test_stacked_repr_is_one_readable_line(stacked: StackedFit) -> None:
    text = repr(stacked)
    w = [round(float(x), 3) for x in stacked.weights]
    assert text == (
        f"StackedFit(laws=['sparse-frontier', 'floor-ceiling'], weights={w}, "
        f"method='{stacked.method}', rows=36)"
    )


def test_stacked_summary_params_and_report(stacked: StackedFit) -> None:
    summary = stacked.summary()
    assert isinstance(summary, pl.DataFrame)
    assert summary.columns[:3] == ["law", "weight", "score"]
    assert {"params", "r2", "converged", "headline"} <= set(summary.columns)
    assert summary["weight"].to_list() == sorted(summary["weight"].to_list(), reverse=True)
    assert summary["weight"].sum() == pytest.approx(1.0)
    by_law = dict(zip(summary["law"], summary["params"], strict=True))
    assert by_law["sparse-frontier"] == len(get_law("sparse-frontier").param_names)
    assert set(stacked.params) == {"sparse-frontier", "floor-ceiling"}
    assert stacked.params["sparse-frontier"] == stacked.fits[0].params
    report = stacked.fit_report()
    assert "stacked fit of 2 laws, 36 rows: weights from held-out" in report
    assert stacked.fits[1].fit_report() in report and "floor-ceiling (weight " in report


def test_stacked_plot_returns_a_figure_and_draws_into_given_axes(
    stacked: StackedFit, table: pl.DataFrame
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = stacked.plot("fit", data=table, tasks=["SQuAD"], at={"L": 32768})
    assert isinstance(fig, Figure)
    mine, ax = plt.subplots()
    assert stacked.plot("fit", ax=ax, data=table, tasks=["SQuAD"], at={"L": 32768}) is mine
    plt.close("all")
    with pytest.raises(ValueError, match="stacked fit draws"):
        stacked.plot("trace")


def test_a_stack_read_back_has_the_same_methods(stacked: StackedFit, tmp_path: Path) -> None:
    back = load_fit(stacked.save(tmp_path / "s.nc"))
    assert repr(back) == repr(stacked)
    assert back.summary()["law"].to_list() == stacked.summary()["law"].to_list()


# --- 5. the bootstrap as a DataTree in memory -------------------------------------------------
def test_lsq_bootstrap_is_a_datatree_in_memory_as_after_reload(
    table: pl.DataFrame, tmp_path: Path
) -> None:
    res = quiet_fit(table, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=15))
    assert res.idata is not None
    back = load_fit(res.save(tmp_path / "f.nc"))
    for tree in (res.idata, back.idata):
        post = tree["posterior"]
        assert dict(post.sizes)["chain"] == 1 and dict(post.sizes)["draw"] == 15
    for name in ("alpha", "delta"):
        np.testing.assert_allclose(
            res.idata["posterior"][name].values, back.idata["posterior"][name].values
        )
    assert list(res.idata["posterior"]["delta_level"].values) == ["QuALITY", "SQuAD"]
    np.testing.assert_allclose(
        res.idata["point_estimate"]["alpha"].values, back.idata["point_estimate"]["alpha"].values
    )
    assert res.to_datatree() is res.idata


# --- 6. points and tables as the user has them ------------------------------------------------
def test_a_pandas_table_and_a_dict_of_columns_fit(table: pl.DataFrame) -> None:
    opts = FitOptions(backend="lsq", bootstrap=0)
    law = get_law("sparse-frontier")
    ours = quiet_fit(table, law, opts)
    for given in (table.to_pandas(), table.to_dict(as_series=False)):
        other = quiet_fit(given, law, opts)
        assert other.meta["rows"] == 36
        assert other.params["alpha"] == pytest.approx(ours.params["alpha"])


def test_a_family_fits_a_pandas_table(table: pl.DataFrame) -> None:
    # fit_family read a pandas frame as a path ("File name too long")
    from scalelaw.fits.family import candidates, fit_family

    opts = FitOptions(backend="lsq", bootstrap=0)
    laws = candidates(table)[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fit_family(table, opts, laws=laws, holdout="N=max")
        given = fit_family(table.to_pandas(), opts, laws=laws, holdout="N=max")
    np.testing.assert_allclose(given.weights, ours.weights)


def test_pandas_points_and_names_as_given(table: pl.DataFrame) -> None:
    res = quiet_fit(table, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=5))
    short = {"N": [7e9, 3e10], "L": [16384.0, 32768.0], "C": [2.0, 2.0], "task": ["SQuAD"] * 2}
    by_short = predict_table(res, short)
    assert by_short.columns[:4] == ["N", "L", "C", "task"]
    frame = pd.DataFrame(short)  # task: an object column
    assert predict_table(res, frame)["mean"].to_list() == by_short["mean"].to_list()
    long = {"params": [7e9], "seq_len": [16384.0], "compression": [2.0], "task": "SQuAD"}
    assert predict_table(res, long).columns[:3] == ["params", "seq_len", "compression"]
    scalar = {"N": 7e9, "L": 16384.0, "C": 2.0, "task": "SQuAD"}
    assert predict_table(res, scalar)["mean"][0] == pytest.approx(by_short["mean"][0])
    one_value_for_all = {**short, "C": 2.0, "task": "SQuAD"}
    assert predict_table(res, one_value_for_all)["mean"].to_list() == by_short["mean"].to_list()


def test_points_in_the_users_own_columns(table: pl.DataFrame) -> None:
    mine = table.rename({"params": "Model Size", "seq_len": "context"})
    res = quiet_fit(
        mine,
        get_law("sparse-frontier"),
        FitOptions(backend="lsq", bootstrap=5),
        column_map={"N": "Model Size", "L": "context"},
    )
    assert res.meta["column_map"] == {"N": "Model Size", "L": "context"}
    points = pd.DataFrame(
        {"Model Size": [7e9], "context": [16384.0], "compression": [2.0], "task": ["SQuAD"]}
    )
    out = predict_table(res, points)
    assert out.columns[:4] == ["Model Size", "context", "compression", "task"]
    as_table = predict_table(res, {"N": 7e9, "L": 16384.0, "C": 2.0, "task": "SQuAD"})
    assert out["mean"][0] == pytest.approx(as_table["mean"][0])
    with pytest.raises(ScalelawError, match="columns 'N' and 'Model Size' both give params"):
        predict_table(res, {"N": [7e9], "Model Size": [7e9], "L": [1e4], "C": [2.0]})


def test_a_stack_predicts_at_pandas_points(stacked: StackedFit) -> None:
    points = pd.DataFrame({"N": [7e10], "L": [16384.0], "C": [2.0], "task": ["SQuAD"]})
    out = predict_table(stacked, points, samples=50)
    assert out.columns[:4] == ["N", "L", "C", "task"] and out["pred_lower"][0] <= out["mean"][0]


# --- 7. how long a fit will take --------------------------------------------------------------
def test_estimate_says_how_long_and_why() -> None:
    guess = fitting.estimate(297, FitOptions(chains=2, draws=500, tune=500), forms=6, fits=4)
    assert str(guess).endswith(": 6 forms x 4 fits x 297 rows, 2 chains x 1000 steps")
    assert str(guess).startswith("about ") and " min: " in str(guess) and guess.long
    one = fitting.estimate(1584, FitOptions())  # docs/fitting.md: about 20 s on 2 cores
    assert 10 <= one.seconds <= 40 and str(one).endswith(": 1584 rows, 4 chains x 2000 steps")
    big = fitting.estimate(201_600, FitOptions())  # docs/fitting.md: 17 min
    assert 8 * 60 <= big.seconds <= 35 * 60
    lsq_guess = fitting.estimate(36, FitOptions(backend="lsq", bootstrap=10))
    assert not lsq_guess.long and str(lsq_guess).endswith("9 refinements + 10 bootstrap refits")
    assert fitting.rough_duration(95) == "2 min" and fitting.rough_duration(5400) == "1.5 h"
