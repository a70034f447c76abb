"""`--holdout auto`: PSIS-LOO weights inside the table's ranges, an axis's held-out weights
beyond its largest value, mixed draw by draw so that two points compare like with like."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.fits import FitOptions, FitResult, get_card, load_fit, predict_draws
from scalelaw.fits.family import fit_family
from scalelaw.fits.result import FitFileError
from scalelaw.fits.stacking import StackedFit, stacked_from_tree

POINTS = pl.DataFrame(
    {
        "params": [7e9, 7e9, 7e9],
        "seq_len": [32768.0, 131072.0, 262144.0],
        "compression": [10.0, 10.0, 10.0],
        "task": ["QuALITY"] * 3,
    }
)


def _stack(inside: list[float], beyond: list[float]) -> StackedFit:
    card = get_card("sparse-frontier-v1:prefill")
    other = FitResult.card(card.law, {**card.meta["values"], "gamma": -1.5})
    return StackedFit(
        [card, other],
        np.array(inside),
        "PSIS-LOO",
        extrapolation={"seq_len": (65536.0, np.array(beyond))},
    )


def _each_law(stacked: StackedFit) -> tuple[np.ndarray, np.ndarray]:
    a, b = (predict_draws(f, POINTS)[0] for f in stacked.fits)
    assert np.all(np.abs(a - b) > 0.01)  # the two laws tell apart at every point
    return a, b


def test_a_point_beyond_the_range_takes_that_axis_weights() -> None:
    stacked = _stack([1.0, 0.0], [0.0, 1.0])
    a, b = _each_law(stacked)
    mu = predict_draws(stacked, POINTS, 200)
    assert np.allclose(mu[:, 0], a[0])  # inside 64K: PSIS-LOO, the card alone
    assert np.allclose(mu[:, 1:], b[1:])  # beyond: the held-out weights, the other law alone


def test_mixed_weights_keep_each_draw_on_one_law_across_points() -> None:
    stacked = _stack([0.5, 0.5], [0.25, 0.75])
    a, b = _each_law(stacked)
    mu = predict_draws(stacked, POINTS, 400)
    from_b = np.isclose(mu, b)
    assert np.all(from_b | np.isclose(mu, a))
    assert from_b[:, 0].mean() == pytest.approx(0.5)
    assert from_b[:, 1].mean() == pytest.approx(0.75)
    # every draw that is the card's at 128K is the card's at 256K too (same weights)
    assert np.array_equal(from_b[:, 1], from_b[:, 2])
    # and a draw of the other law inside the range stays the other law's beyond it
    assert np.all(from_b[from_b[:, 0], 1])


def test_without_extrapolation_the_stack_predicts_as_before() -> None:
    inside = _stack([0.3, 0.7], [0.0, 1.0])
    plain = StackedFit(inside.fits, inside.weights, "PSIS-LOO")
    pts = POINTS.head(1)
    assert np.array_equal(predict_draws(inside, pts, 100), predict_draws(plain, pts, 100))


def test_the_weights_survive_a_fit_file_and_damage_is_refused(tmp_path: Path) -> None:
    stacked = _stack([0.5, 0.5], [0.25, 0.75])
    back = load_fit(stacked.save(tmp_path / "s.nc"))
    assert back.extrapolation["seq_len"][0] == 65536.0
    assert back.extrapolation["seq_len"][1].tolist() == [0.25, 0.75]
    assert np.array_equal(predict_draws(back, POINTS, 100), predict_draws(stacked, POINTS, 100))
    import xarray as xr

    tree = xr.open_datatree(tmp_path / "s.nc")
    info = {"weights": [0.5, 0.5], "extrapolation": {"seq_len": {"beyond": 65536.0}}}
    with pytest.raises(FitFileError, match="extrapolation 'seq_len'"):
        stacked_from_tree(tree, info, tmp_path / "s.nc")
    for bad in ([0.5, 0.7], [float("nan"), 1.0], [1.0]):
        info["extrapolation"] = {"seq_len": {"beyond": 65536.0, "weights": bad}}
        with pytest.raises(FitFileError, match="extrapolation weights of 'seq_len'"):
            stacked_from_tree(tree, info, tmp_path / "s.nc")


def test_fit_family_auto_holds_out_every_axis_with_three_values() -> None:
    rng = np.random.default_rng(0)
    grid = pl.DataFrame(
        {
            "params": np.repeat([5e8, 1.5e9, 4e9, 1.2e10], 8),
            "seq_len": np.tile(np.repeat([4096.0, 16384.0], 4), 4),
            "compression": np.tile([1.0, 2.0, 4.0, 8.0], 8),
        }
    )
    eta = (
        0.5
        + 0.6 * np.log(grid["params"].to_numpy() / 1e9)
        - 0.3 * np.log(grid["compression"].to_numpy())
    )
    k = rng.binomial(400, 1 / (1 + np.exp(-eta)))
    table = grid.with_columns(
        pl.Series("score", k / 400), pl.lit(400).alias("samples"), pl.lit("all").alias("task")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = fit_family(table, FitOptions(backend="lsq", bootstrap=10), holdout="auto")
    # L takes two values: holding out 16K would leave no length slope to extrapolate with
    assert sorted(stacked.extrapolation) == ["compression", "params"]
    assert stacked.extrapolation["params"][0] == 1.2e10
    assert stacked.meta["holdout"] == "auto"
    assert np.allclose(
        stacked.weights,
        np.mean([w for _, w in stacked.extrapolation.values()], axis=0),
    )  # least squares has no PSIS-LOO: the axes' weights averaged inside the range
    beyond = pl.DataFrame({"params": [7e10], "seq_len": [4096.0], "compression": [2.0]})
    w = stacked.point_weights(beyond.with_columns(pl.lit("all").alias("task")))
    assert w is not None and np.allclose(w[0], stacked.extrapolation["params"][1])


def test_the_cli_refuses_auto_for_one_law(tmp_path: Path) -> None:
    from scalelaw.cli import app

    table = tmp_path / "t.csv"
    pl.DataFrame(
        {"params": [1e9, 2e9], "seq_len": [4096.0] * 2, "compression": [1.0] * 2,
         "score": [0.5, 0.6], "samples": [100, 100]}
    ).write_csv(table)  # fmt: skip
    res = CliRunner().invoke(app, ["fit", str(table), "--holdout", "auto"])
    assert res.exit_code == 2
    assert "--holdout auto weights the laws of a family" in res.output


def test_a_law_that_predicts_only_beyond_the_range_still_marks_the_stack() -> None:
    stacked = _stack([1.0, 0.0], [0.0, 1.0])
    stacked.fits[1].diagnostics["not_converged"] = ["r_hat 1.2 on gamma"]
    assert not stacked.converged
    assert "r_hat 1.2" in (stacked.headline() or "")
    stacked.extrapolation.clear()
    assert stacked.converged  # weighted 0 everywhere: it draws no predictions
