"""Planning: EVSI per GPU-hour for the isoCost decision, and the grid `scalelaw measure` runs.

The case (`planning_fit` in tests/conftest.py): a least-squares fit on data simulated from the
study's prefill card at two sizes and two short lengths, so the decision at 128K between a dense
32B and a sparse 72B is still open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.fits import FitResult
from scalelaw.fits import predict_draws as predict
from scalelaw.frontier import critical_length, get_architecture, isocost_frontier, prefill_flops
from scalelaw.frontier.planning import (
    Candidates,
    MeasureSpeed,
    PlanError,
    Target,
    candidates_from_dict,
    decision_configs,
    evsi,
    model_architecture,
    parse_target,
    plan,
    read_candidates,
    reweight,
    sparse_wins,
    wrong_probability,
)
from scalelaw.measure.grid import load_grid

runner = CliRunner()
SIZES = ("7B", "14B", "32B", "72B")
TASKS = ["VT", "CWE", "StoryRetrieval"]
BUDGET = 4.5e16  # between the dense 32B and the dense 72B at 128K: sparse 72B C=2 competes
TARGET = Target(131072.0, BUDGET)
QWEN = {s: f"Qwen/Qwen2.5-{s}-Instruct" for s in SIZES}


def archs() -> list[Any]:
    return [get_architecture("qwen2.5", s) for s in SIZES]


@pytest.fixture(scope="module")
def fitted(planning_fit: FitResult) -> FitResult:
    return planning_fit


@pytest.fixture(scope="module")
def candidates(fitted: FitResult, planning_grid: dict[str, Any]) -> Candidates:
    return candidates_from_dict(planning_grid, levels=fitted.levels["task"])


def _decision(fitted: FitResult) -> tuple[np.ndarray, pl.DataFrame]:
    configs = decision_configs(archs(), [TARGET], lambda a, L, c: prefill_flops(a, L, c).total,
                               [1, 1.43, 1.67, 2, 2.5, 3.33, 5, 7.5, 10, 15, 20])  # fmt: skip
    base = configs.select("params", "seq_len", "compression")
    rows = pl.concat([base.with_columns(pl.lit(t).alias("task")) for t in TASKS])
    mu = predict(fitted, rows).reshape(-1, len(TASKS), base.height).mean(axis=1)
    return sparse_wins(mu, configs, [TARGET]), configs


# --- the decision --------------------------------------------------------------------------------
def test_parse_target() -> None:
    assert parse_target("L=128K,budget=4e16") == Target(131072.0, 4e16)
    assert parse_target("budget=mean, L=48K") == Target(49152.0, None)
    for bad, msg in (("L=128K", "missing budget"), ("L=12x,budget=1", "'12x' is not a number"),
                     ("N=7B,budget=1", "expected 'L=LENGTH"),
                     ("L=128K,L=64K,budget=1", "L is given twice"),
                     ("L=128K,budget=1,budget=mean", "budget is given twice")):  # fmt: skip
        with pytest.raises(PlanError, match=msg):
            parse_target(bad)


def test_decision_matches_the_frontier(fitted: FitResult) -> None:
    """P(sparse better) per draw agrees with `isocost_frontier` and with `critical_length`."""
    wins, _ = _decision(fitted)

    def draws_fn(points: pl.DataFrame) -> np.ndarray:
        rows = pl.concat([points.with_columns(pl.lit(t).alias("task")) for t in TASKS])
        return predict(fitted, rows).reshape(-1, len(TASKS), points.height).mean(axis=1)

    cost = lambda a, L, c: prefill_flops(a, L, c).total  # noqa: E731
    front = isocost_frontier(draws_fn, archs(), 131072, cost, budgets=[BUDGET])
    assert wins.mean() == pytest.approx(front.budgets["p_sparse_better"][0])
    assert 0.1 < wins.mean() < 0.9  # the decision is open: planning has something to do
    # a budget=mean target is the per-length decision whose sign change is the critical length
    lengths = [32768.0, 65536.0]
    crit = critical_length(draws_fn, archs(), lengths, cost)
    targets = [Target(L, None) for L in lengths]
    configs = decision_configs(
        archs(), targets, cost, [1, 1.43, 1.67, 2, 2.5, 3.33, 5, 7.5, 10, 15, 20]
    )
    mean_wins = sparse_wins(draws_fn(configs), configs, targets)
    np.testing.assert_allclose(mean_wins.mean(axis=0), crit.by_length["p_sparse_better"])


def test_reweighting_by_a_decisive_outcome_settles_the_decision(fitted: FitResult) -> None:
    wins, _ = _decision(fitted)
    # the large model at a high ratio: where the draws that disagree on the decision part most
    point = {"params": 72.7e9, "seq_len": 16384.0, "compression": 10.0, "task": "VT"}
    mu = predict(fitted, point)[:, 0]
    p0 = wins.mean()
    # the outcome that the draws where sparse wins predict, and the one the others predict
    for side, toward in ((True, 1.0), (False, 0.0)):
        expected = mu[wins[:, 0] == side].mean()
        w = reweight(mu, round(expected * 400), 400)
        p1 = float(w @ wins[:, 0])
        assert abs(p1 - toward) < abs(p0 - toward)
        assert abs(p1 - toward) < 0.25
    assert wrong_probability(wins, reweight(mu, round(mu[wins[:, 0]].mean() * 400), 400)) < (
        wrong_probability(wins)
    )


def test_evsi_is_exact_and_not_negative(fitted: FitResult) -> None:
    """Exact over outcomes, EVSI >= 0; a simulate-reweight-recompute loop agrees with it."""
    wins, _ = _decision(fitted)
    rng = np.random.default_rng(0)
    for _ in range(20):
        mu = rng.uniform(0.05, 0.95, wins.shape[0])
        assert evsi(mu, 30, wins).evsi >= 0
    mu = predict(fitted, {"params": 72.7e9, "seq_len": 16384.0, "compression": 10.0,
                          "task": "VT"})[:, 0]  # fmt: skip
    value = evsi(mu, 20, wins)
    sims = []
    for _ in range(3000):
        truth = rng.integers(len(mu))
        y = rng.binomial(20, mu[truth])
        sims.append(wrong_probability(wins, reweight(mu, y, 20)))
    assert value.loss_after == pytest.approx(np.mean(sims), abs=0.01)
    assert value.evsi > 0.05


def test_candidate_at_the_decision_beats_one_far_from_it(
    fitted: FitResult, candidates: Candidates
) -> None:
    result = plan(fitted, candidates, [TARGET], archs(), gpu_hours=2.0)
    table = result.table
    assert (table["reduction"] >= 0).all()

    def value(size: str, task: str, length: int, c: float) -> float:
        row = table.filter(
            (pl.col("size") == size) & (pl.col("task") == task)
            & (pl.col("seq_len") == length) & (pl.col("compression") == c)
        )  # fmt: skip
        return float(row["reduction"][0])

    # the sparse 72B at 128K and the disputed ratio against a dense 7B at 16K (measured already)
    assert value("72B", "variable-tracking", 131072, 2.0) > 10 * value(
        "7B", "variable-tracking", 16384, 1.0
    )
    assert result.batch_loss < result.loss
    # fitted on 7B-14B at 16K-32K: the 128K target and the 32B and 72B models are beyond it
    assert [w for w in result.warnings if "outside" in w] == [
        "target L=128K outside the lengths the fit saw (16K to 32K): P(wrong) there rests on "
        "the law's form",
        "model sizes 32B, 72B outside those the fit saw (7.62B to 14.8B): their scores rest on "
        "the law's form",
    ]


def test_compressions_beyond_the_fit_are_noted_and_errors_keep_every_note(
    fitted: FitResult, candidates: Candidates
) -> None:
    result = plan(fitted, candidates, [TARGET], archs(), gpu_hours=2.0, compressions=[1, 2, 40])
    assert (
        "compressions C=40 outside those the fit saw (1 to 20): their scores rest on the law's "
        "form" in result.warnings
    )
    # a plan that fails still says every way its decision rests on the form
    with pytest.raises(PlanError, match=r"no candidate within") as failed:
        plan(fitted, candidates, [TARGET], archs(), gpu_hours=2.0, min_gain=0.99)
    said = str(failed.value)
    assert "; note: target L=128K outside" in said and "; note: model sizes 32B, 72B" in said


# --- the batch and its grid ----------------------------------------------------------------------
def test_written_grid_loads_and_holds_only_the_batch(
    fitted: FitResult, candidates: Candidates, tmp_path: Path, planning_grid: dict[str, Any]
) -> None:
    result = plan(fitted, candidates, [TARGET], archs(), gpu_hours=1.5, seed=3)
    path = result.write(tmp_path / "next.toml")
    grid = load_grid(path)
    keys = {c.compute_id for c in grid.configurations()}
    by_key = {c.key: c for c in candidates.items}
    assert keys <= set(by_key)  # only candidates
    assert keys == {c.key for c in result.batch}  # exactly the batch
    assert sum(by_key[k].gpu_hours for k in keys) <= 1.5
    chosen = result.table.filter("in_batch")
    assert chosen.height == len(keys)
    assert (
        grid.samples == 20 and grid.seed == 0 and set(grid.models) <= set(planning_grid["models"])
    )


def test_measuring_cost(planning_grid: dict[str, Any]) -> None:
    speed = MeasureSpeed(400e12, 2.5e12)
    a = get_architecture("qwen2.5", "72B")
    dense = speed.seconds_per_sample(a, "dense", 131072, 1.0, 0)
    assert dense == pytest.approx(prefill_flops(a, 131072, 1.0).total / 400e12)
    sparse = speed.seconds_per_sample(a, "vertical-slash", 131072, 10.0, 0)
    assert sparse < dense / 2  # attention dominates at 128K
    assert speed.seconds_per_sample(a, "quest", 131072, 10.0, 0) == pytest.approx(dense)
    assert model_architecture("/models/Qwen2.5-7B-Instruct").size == "7B"
    with pytest.raises(PlanError, match="no architecture"):
        model_architecture("tiny-llama")
    # an earlier sweep's times replace the cost model where they were measured
    table = pl.DataFrame({"model": [QWEN["7B"]], "seq_len": [16384], "method": ["dense"],
                          "compression": [1.0], "samples": [10], "wall_s": [50.0]})  # fmt: skip
    c = candidates_from_dict(planning_grid, levels=TASKS, timings=table)
    hits = [x for x in c.items if x.cost_source == "measured"]
    assert len(hits) == 2 and all(x.seconds == pytest.approx(5.0 * 20) for x in hits)
    assert all(x.cost_source.startswith("cost model x") for x in c.items if x not in hits)


def test_plan_is_reproducible(fitted: FitResult, candidates: Candidates) -> None:
    one = plan(fitted, candidates, [TARGET], archs(), gpu_hours=1.5, seed=7)
    two = plan(fitted, candidates, [TARGET], archs(), gpu_hours=1.5, seed=7)
    assert one.to_toml() == two.to_toml()
    assert one.table.equals(two.table)
    assert one.batch_loss == two.batch_loss


def test_nothing_to_plan_and_unidentified_parameters(
    fitted: FitResult, candidates: Candidates
) -> None:
    # gamma pinned in every draw (what a bootstrap does with dense-only data): the decision
    # looks certain, and the message says why it may not be
    draws = {k: v.copy() for k, v in fitted.draws.items()}
    draws["gamma"] = np.full_like(draws["gamma"], 0.0)
    pinned = FitResult(fitted.law, "lsq", draws, fitted.levels)
    with pytest.raises(PlanError, match=r"nothing to plan.*gamma.*bayes backend"):
        plan(pinned, candidates, [TARGET], archs(), gpu_hours=1.0)
    with pytest.raises(PlanError, match=r"no candidate fits in 0\.001 GPU-hours"):
        plan(fitted, candidates, [TARGET], archs(), gpu_hours=0.001)


def test_read_candidates_with_sample_counts(planning_grid_file: Path) -> None:
    path = planning_grid_file
    path.write_text(path.read_text().replace("samples = 20", "samples = [10, 40]"))
    c = read_candidates(path, levels=TASKS)
    assert {x.samples for x in c.items} == {10, 40}
    assert len(c.items) == 2 * 2 * 2 * 2 * 4  # samples x models x lengths x tasks x ratios
