"""`--holdout auto`: PSIS-LOO weights inside the table's ranges, an axis's held-out weights
beyond its largest value, mixed draw by draw so that two points compare like with like."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.fits import FitOptions, FitResult, get_card, load_fit, predict_draws
from scalelaw.fits.family import FamilyError, fit_family
from scalelaw.fits.result import FitFileError
from scalelaw.fits.stacking import StackedFit, stacked_from_tree, weights_table

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


def _table(sizes: list[float], lengths: list[float]) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    grid = pl.DataFrame(
        {
            "params": np.repeat(sizes, 4 * len(lengths)),
            "seq_len": np.tile(np.repeat(lengths, 4), len(sizes)),
            "compression": np.tile([1.0, 2.0, 4.0, 8.0], len(sizes) * len(lengths)),
        }
    )
    eta = (
        0.5
        + 0.6 * np.log(grid["params"].to_numpy() / 1e9)
        - 0.3 * np.log(grid["compression"].to_numpy())
    )
    k = rng.binomial(400, 1 / (1 + np.exp(-eta)))
    return grid.with_columns(
        pl.Series("score", k / 400), pl.lit(400).alias("samples"), pl.lit("all").alias("task")
    )


def _family(table: pl.DataFrame, **kw: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_family(table, FitOptions(backend="lsq", bootstrap=10), **kw)


def test_fit_family_holds_out_every_axis_with_three_values_by_default() -> None:
    table = _table([5e8, 1.5e9, 4e9, 1.2e10], [4096.0, 16384.0])
    stacked = _family(table)
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
    # the averaged weights have no score of their own: the N=max scores are not shown as theirs
    assert "score" not in weights_table(stacked).columns


def test_a_table_with_no_axis_to_hold_out_falls_back_and_says_so() -> None:
    table = _table([1e9, 4e9], [4096.0, 16384.0]).filter(pl.col("compression") <= 2)
    stacked = _family(table)
    assert stacked.extrapolation == {}
    assert "no axis (N, L or C) takes three values" in stacked.meta["weighting"]
    assert stacked.meta["holdout"] == "N=max"
    with pytest.raises(FamilyError, match="least-squares fits have no PSIS-LOO"):
        _family(table, holdout="loo")


def test_joint_points_share_one_weighting_across_axes() -> None:
    card = get_card("sparse-frontier-v1:prefill")
    other = FitResult.card(card.law, {**card.meta["values"], "gamma": -1.5})
    stacked = StackedFit(
        [card, other],
        np.array([0.5, 0.5]),
        "PSIS-LOO",
        extrapolation={
            "seq_len": (65536.0, np.array([0.25, 0.75])),
            "params": (3.2e10, np.array([1.0, 0.0])),
        },
    )
    # a decision at 128K: 7B sparse (beyond L) against 72B sparse (beyond L and N)
    pts = pl.DataFrame(
        {
            "params": [7e9, 7.2e10],
            "seq_len": [131072.0, 131072.0],
            "compression": [10.0, 4.0],
            "task": ["QuALITY"] * 2,
        }
    )
    apart = stacked.point_weights(pts)
    assert apart is not None and apart[0].tolist() == [0.25, 0.75]
    assert apart[1].tolist() == [0.625, 0.375]
    joint = stacked.point_weights(pts, joint=True)
    assert joint is not None and joint.tolist() == [[0.625, 0.375]] * 2
    a, b = (predict_draws(f, pts)[0] for f in stacked.fits)
    mu = predict_draws(stacked, pts, 400, joint=True)
    from_b = np.isclose(mu, b)
    assert np.all(from_b | np.isclose(mu, a))
    assert np.array_equal(from_b[:, 0], from_b[:, 1])  # one law per draw at both points
    assert from_b[:, 0].mean() == pytest.approx(0.375)
    assert not np.array_equal(np.isclose(predict_draws(stacked, pts, 400), b)[:, 0], from_b[:, 0])


def test_decide_and_plan_predict_their_points_jointly(monkeypatch: pytest.MonkeyPatch) -> None:
    from scalelaw.frontier import FlopsCost, decide, get_architecture

    seen: list[bool] = []
    original = StackedFit.predict_draws

    def spy(self: StackedFit, points: Any, max_draws: int = 2000, *, joint: bool = False) -> Any:
        seen.append(joint)
        return original(self, points, max_draws, joint=joint)

    monkeypatch.setattr(StackedFit, "predict_draws", spy)
    qwen = [get_architecture("qwen2.5", s) for s in ("7B", "72B")]
    stacked = _stack([0.5, 0.5], [0.25, 0.75])
    decide(stacked, qwen, FlopsCost(), seq_len=131072, lengths=None, budgets=2, draws=50)
    assert seen and all(seen)


@pytest.mark.parametrize("weighting", ["auto", "loo"])
def test_the_cli_refuses_a_family_weighting_for_one_law(tmp_path: Path, weighting: str) -> None:
    from scalelaw.cli import app

    table = tmp_path / "t.csv"
    pl.DataFrame(
        {"params": [1e9, 2e9], "seq_len": [4096.0] * 2, "compression": [1.0] * 2,
         "score": [0.5, 0.6], "samples": [100, 100]}
    ).write_csv(table)  # fmt: skip
    res = CliRunner().invoke(app, ["fit", str(table), "--holdout", weighting])
    assert res.exit_code == 2
    assert f"--holdout {weighting} weights the laws of a family" in res.output


def test_a_law_that_predicts_only_beyond_the_range_still_marks_the_stack() -> None:
    stacked = _stack([1.0, 0.0], [0.0, 1.0])
    stacked.fits[1].diagnostics["not_converged"] = ["r_hat 1.2 on gamma"]
    assert not stacked.converged
    assert "r_hat 1.2" in (stacked.headline() or "")
    stacked.extrapolation.clear()
    assert stacked.converged  # weighted 0 everywhere: it draws no predictions


def test_the_headline_counts_the_unweighted_laws_that_did_not_converge_either() -> None:
    stacked = _stack([1.0, 0.0], [1.0, 0.0])  # the second law draws no predictions
    for f in stacked.fits:
        f.diagnostics["not_converged"] = ["r_hat 1.05 on eps"]
    line = stacked.headline() or ""
    assert line.startswith("NOT CONVERGED: sparse-frontier-v1:prefill: r_hat 1.05 on eps")
    assert line.endswith("(and 1 law of weight below 1%, which draws no predictions)")
    stacked.fits[1].diagnostics["not_converged"] = []
    assert "weight below" not in (stacked.headline() or "")
