"""isoCost frontiers and the critical length, on synthetic draws, published cards and fits."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from scalelaw.frontier import (
    Architecture,
    FrontierError,
    average_over_tasks,
    cost,
    critical_length,
    family_sizes,
    isocost_frontier,
)
from scalelaw.frontier.isocost import _crossings, pareto

QWEN = [a for a in family_sizes("qwen2.5") if a.size in ("7B", "14B", "32B", "72B")]
LENGTHS = [2.0**k for k in range(12, 21)]


def _arch(size: str, layers: int) -> Architecture:
    return Architecture("toy", size, layers, 64, 4, 4, 16, 128, 100)


SMALL, LARGE = _arch("S", 2), _arch("L", 4)


def _toy_cost(a: Architecture, L: float, C: float) -> float:
    # half of the cost is attention: doubling C saves a quarter
    return a.layers * (0.5 + 0.5 / C)


def test_pareto() -> None:
    on = pareto(np.array([1.0, 2.0, 2.0, 3.0, 4.0]), np.array([0.1, 0.3, 0.2, 0.25, 0.5]))
    assert on.tolist() == [True, True, False, False, True]


def test_large_sparse_wins_when_it_is_cheaper_and_better() -> None:
    # LARGE at C=4 costs 4 * 0.625 = 2.5 > SMALL dense (2); at C=16 it costs 2.125; neither fits
    # budget 2, so dense wins there; at budget 2.5 LARGE at C=4 fits and scores higher.
    def draws(points: pl.DataFrame) -> np.ndarray:
        n = points["params"].to_numpy()
        c = points["compression"].to_numpy()
        return (0.3 + 0.2 * (n > SMALL.params()) - 0.01 * np.log(c))[None, :]

    f = isocost_frontier(
        draws, [SMALL, LARGE], 1.0, _toy_cost, compressions=[1, 4, 16], budgets=[2.0, 2.5]
    )
    b = f.budgets
    assert b["p_sparse_better"].to_list() == [0.0, 1.0]
    assert (b["sparse_size"][1], b["sparse_compression"][1]) == ("L", 4.0)
    assert b["dense_size"].to_list() == ["S", "S"]
    assert f.configs.filter(pl.col("dense_frontier"))["size"].to_list() == ["S", "L"]


def test_probability_is_computed_per_draw() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, size=(4000, 1))

    def exchangeable(points: pl.DataFrame) -> np.ndarray:
        return rng.normal(0.5, 0.1, size=(4000, points.height))

    def shifted(points: pl.DataFrame) -> np.ndarray:
        # every sparse configuration is exactly 0.01 better than its dense twin, in every draw
        return base + 0.01 * (points["compression"].to_numpy() > 1)[None, :]

    cost_fn = lambda a, L, C: 1.0  # noqa: E731 - everything costs the same
    p = isocost_frontier(exchangeable, [SMALL], 1.0, cost_fn, compressions=[1, 2], budgets=[1.0])
    assert p.budgets["p_sparse_better"][0] == pytest.approx(0.5, abs=0.03)
    q = isocost_frontier(shifted, [SMALL], 1.0, cost_fn, compressions=[1, 2], budgets=[1.0])
    # intervals of the two overlap almost entirely, yet sparse wins in every draw
    assert q.budgets["p_sparse_better"][0] == 1.0
    assert q.budgets["sparse_lower"][0] < q.budgets["dense_upper"][0]


def test_crossings() -> None:
    adv = np.array(
        [
            [-1.0, -1.0, 1.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
            [-1.0, 1.0, -1.0, -1.0],
            [1.0, -1.0, 3.0, 1.0],
        ]
    )
    got = _crossings(adv, np.log([1.0, 2.0, 4.0, 8.0]))
    assert got[0] == pytest.approx(np.sqrt(8.0))  # halfway between 2 and 4 in log length
    assert got[1] == 1.0 and np.isinf(got[2])
    assert got[3] == pytest.approx(2.0 * 2**0.25)  # last crossing: from -1 at 2 to 3 at 4


def test_bad_inputs() -> None:
    one = lambda p: np.zeros((1, p.height))  # noqa: E731
    with pytest.raises(FrontierError, match="must include 1"):
        isocost_frontier(one, [SMALL], 1.0, _toy_cost, compressions=[2, 4])
    with pytest.raises(FrontierError, match="shape"):
        isocost_frontier(lambda p: np.zeros(3), [SMALL], 1.0, _toy_cost)
    with pytest.raises(FrontierError, match="two model sizes"):
        critical_length(one, [SMALL], [1.0, 2.0], _toy_cost)


@pytest.fixture(scope="module")
def fits():  # type: ignore[no-untyped-def]
    """Least-squares fits (bootstrap draws) to data simulated from the two published cards."""
    from scalelaw.fits import FitOptions, fit, get_card, simulate
    from scalelaw.fits.catalog import sparse_frontier

    out = {}
    for phase in ("prefill", "decode"):
        data = simulate(get_card(f"sparse-frontier-v1:{phase}"), "paper", samples=100, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[phase] = fit(
                data, sparse_frontier(), FitOptions(backend="lsq", bootstrap=30, seed=1)
            )
    return out


@pytest.mark.parametrize(("phase", "batch"), [("prefill", 1), ("decode", 1), ("decode", 8)])
def test_larger_sparser_wins_beyond_a_length(fits, phase: str, batch: int) -> None:  # type: ignore[no-untyped-def]
    from scalelaw.fits import get_card, levels, predict_draws

    def cost_fn(a: Architecture, L: float, C: float) -> float:
        return cost(a, phase, L, C, batch=batch).total

    results = {}
    for name, src in (("card", get_card(f"sparse-frontier-v1:{phase}")), ("fit", fits[phase])):
        tasks = levels(src)["task"]
        fn = average_over_tasks(lambda p, s=src: predict_draws(s, p), tasks)
        results[name] = crit = critical_length(fn, QWEN, LENGTHS, cost_fn)
        adv = crit.by_length["advantage_mean"].to_numpy()
        assert adv[0] < 0 < adv[-1]  # small-dense wins at 4K, large-sparse at 1M
        assert 4096 < crit.median < 2**20
        assert crit.lower <= crit.median <= crit.upper
    # the fit recovers the card's answer, with an interval that covers it
    card, fit_ = results["card"].median, results["fit"]
    assert fit_.n_draws == 30 and fit_.upper > fit_.lower
    assert fit_.lower * 0.8 <= card <= fit_.upper * 1.25


def test_wide_posterior_gives_no_confident_winner() -> None:
    """A Bayesian fit that saw no sparse data: the frontier must not pick a winner."""
    from scalelaw.fits import FitOptions, fit, get_card, predict_draws, simulate
    from scalelaw.fits.catalog import sparse_frontier

    grid = pl.DataFrame(
        {
            "params": [7.62e9, 72.71e9, 7.62e9, 72.71e9, 14.77e9],
            "seq_len": [32768.0, 32768.0, 131072.0, 131072.0, 131072.0],
            "compression": [1.0] * 5,
            "task": ["QuALITY"] * 5,
        }
    )
    data = simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=50, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opts = FitOptions(backend="bayes", draws=150, tune=200, chains=2, seed=0, loo=False)
        res = fit(data, sparse_frontier(), opts)
    fn = average_over_tasks(lambda p: predict_draws(res, p), ["QuALITY"])

    def cost_fn(a: Architecture, L: float, C: float) -> float:
        return cost(a, "prefill", L, C).total

    budgets = isocost_frontier(fn, QWEN, 131072, cost_fn).budgets
    p = budgets["p_sparse_better"].to_numpy()
    assert np.all((p > 0.1) & (p < 0.9)), p  # no confident winner anywhere
    # At the largest budget no bigger model is affordable, so sparse wins exactly when compression
    # helps (gamma > 0): the prior's symmetric coin, 0.5.
    assert budgets["dense_size"][-1] == "72B" and budgets["sparse_size"][-1] == "72B"
    assert abs(p[-1] - 0.5) < 0.1
    # Below it, sparse can buy a bigger model at mild compression, which wins unless compression
    # hurts a lot: the probability leans towards sparse but stays short of certainty.
    gamma = res.draws["gamma"].ravel()
    assert np.mean(gamma > 0) < p.max() < 0.9
    crit = critical_length(fn, QWEN, LENGTHS, cost_fn)
    assert crit.lower <= 8192 and crit.upper >= 2**19  # the interval spans the scanned range
    # the published card, a single confident draw, says 0 or 1 everywhere
    card = get_card("sparse-frontier-v1:prefill")
    q = (
        isocost_frontier(
            average_over_tasks(lambda pts: predict_draws(card, pts), ["QuALITY"]),
            QWEN,
            131072,
            cost_fn,
        )
        .budgets["p_sparse_better"]
        .to_numpy()
    )
    assert set(q.tolist()) <= {0.0, 1.0}
