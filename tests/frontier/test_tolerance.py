"""The tolerable-compression test: exact size, family-wise error rate, known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binom

from scalelaw.data import DataError
from scalelaw.frontier.tolerance import (
    fixed_sequence,
    noninferiority_counts,
    restricted_mle,
    tolerance_summary,
    tolerance_table,
)

RATIOS = [2.0, 5.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"), [(85, 100, 51, 80), (3, 50, 31, 40), (100, 100, 97, 100)]
)
def test_restricted_mle_maximises_the_constrained_likelihood(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    d = -0.05

    def nll(p2: float) -> float:
        p1 = p2 + d
        return -float(binom.logpmf(x1, n1, p1) + binom.logpmf(x2, n2, p2))

    best = minimize_scalar(
        nll, bounds=(-d + 1e-9, 1 - 1e-9), method="bounded", options={"xatol": 1e-10}
    )
    r1, r2 = restricted_mle(np.array(x1), np.array(n1), np.array(x2), np.array(n2), d)
    assert float(r2) == pytest.approx(best.x, abs=1e-6)
    assert float(r1) - float(r2) == pytest.approx(d)


@pytest.mark.parametrize("n", [20, 100])
@pytest.mark.parametrize("margin", [0.05, 0.1])
def test_exact_size_at_most_alpha(n: int, margin: float) -> None:
    """Enumerate every outcome: at the H0 boundary the rejection chance never exceeds alpha."""
    alpha = 0.05
    x = np.arange(n + 1)
    xd, xs = np.meshgrid(x, x, indexing="ij")
    reject = noninferiority_counts(xd, n, xs, n, margin) <= alpha
    p_dense = np.linspace(margin + 0.01, 0.995, 120)
    size = [(binom.pmf(xd, n, p) * binom.pmf(xs, n, p - margin) * reject).sum() for p in p_dense]
    assert max(size) <= alpha
    assert max(size) > alpha / 2  # not uselessly conservative


def test_fixed_sequence_counts_leading_rejections() -> None:
    p = np.array([[0.01, 0.02, 0.5, 0.01], [0.2, 0.01, 0.01, 0.01], [0.01, 0.01, 0.01, np.nan]])
    assert fixed_sequence(p, 0.05).tolist() == [2, 0, 3]


def _simulate(rng: np.random.Generator, reps: int, p_dense: float, p_sparse: list[float], n: int):  # type: ignore[no-untyped-def]
    xd = rng.binomial(n, p_dense, size=(reps, 1))
    xs = rng.binomial(n, np.asarray(p_sparse), size=(reps, len(p_sparse)))
    return xd, xs


def test_family_wise_error_rate_over_repeated_simulations() -> None:
    """True losses 0, 0.02, 0.05 (= margin), 0.15: declaring C = 10 or more is an error."""
    rng = np.random.default_rng(0)
    alpha, margin, reps, n = 0.05, 0.05, 40_000, 100
    xd, xs = _simulate(rng, reps, 0.8, [0.8, 0.78, 0.75, 0.65], n)
    k = fixed_sequence(noninferiority_counts(xd, n, xs, n, margin), alpha)
    error = float(np.mean(k >= 3))
    assert error <= alpha  # Monte Carlo s.e. about 0.001
    # every hypothesis at the boundary: the error rate is close to alpha, still not above it
    xd, xs = _simulate(rng, reps, 0.6, [0.55] * 4, n)
    k = fixed_sequence(noninferiority_counts(xd, n, xs, n, margin), alpha)
    assert 0.02 < float(np.mean(k >= 1)) <= alpha


def _table(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Two models; 7B loses 0.3 from C=10 on, 72B keeps its accuracy to C=20."""
    rows = []
    for model, params, drop_from in (("7B", 7e9, 10.0), ("72B", 72e9, 99.0)):
        for task in ("a", "b"):
            for c in [1.0, *RATIOS]:
                p = 0.8 - (0.3 if c >= drop_from else 0.0)
                rows.append(
                    {"model": model, "params": params, "seq_len": 16384.0, "compression": c,
                     "task": task, "method": "dense" if c == 1 else "quest", "phase": "decode",
                     "correct": int(rng.binomial(n, p)), "samples": n}
                )  # fmt: skip
    return pl.DataFrame(rows)


def test_known_answer_from_counts() -> None:
    result = tolerance_table(_table(np.random.default_rng(1), 2000), margin=0.05, alpha=0.05)
    got = {
        (r["model"], r["task"]): r["max_tolerable_compression"]
        for r in result.iter_rows(named=True)
    }
    assert got == {("7B", "a"): 5.0, ("7B", "b"): 5.0, ("72B", "a"): 20.0, ("72B", "b"): 20.0}
    assert result.filter(pl.col("model") == "7B")["stopped_at"].to_list() == [10.0, 10.0]
    summary = tolerance_summary(result)
    assert summary.sort("params")["median"].to_list() == [5.0, 20.0]


def test_known_answer_from_variances() -> None:
    frame = _table(np.random.default_rng(2), 2000)
    frame = frame.with_columns((pl.col("correct") / pl.col("samples")).alias("score"))
    frame = frame.with_columns((pl.col("score") * (1 - pl.col("score"))).alias("score_var"))
    result = tolerance_table(frame.drop("correct"), margin=0.05, alpha=0.05)
    assert result["test"][0] == "welch-z"
    assert sorted(result["max_tolerable_compression"].to_list()) == [5.0, 5.0, 20.0, 20.0]


def test_clear_errors() -> None:
    frame = _table(np.random.default_rng(3), 50)
    with pytest.raises(DataError, match=r"no dense row for model=72B, seq_len=16384\.0, task=b"):
        tolerance_table(
            frame.filter(
                ~(
                    (pl.col("model") == "72B")
                    & (pl.col("task") == "b")
                    & (pl.col("compression") == 1)
                )
            )
        )
    with pytest.raises(DataError, match="needs 'correct' and 'samples'"):
        tolerance_table(frame.drop("correct"))
    with pytest.raises(DataError, match="row 21: a second dense row"):
        tolerance_table(pl.concat([frame, frame.head(1)]))
