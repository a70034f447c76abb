"""isoCost frontiers: at equal cost, does a larger sparse model beat a smaller dense one?

Everything here works on a plain callable ``draws_fn(points) -> ndarray (n_draws, n_points)`` of
expected scores, so a posterior, a published card (one draw) or a synthetic matrix all fit.
Comparisons are made inside each draw (the best sparse and the best dense configuration are
chosen per draw) and only then summarised, so the probabilities carry the joint uncertainty of
all configurations rather than that of point estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from scalelaw.errors import ScalelawError
from scalelaw.frontier.architectures import Architecture
from scalelaw.study import STUDY_COMPRESSIONS

DrawsFn = Callable[[pl.DataFrame], np.ndarray]
CostFn = Callable[[Architecture, float, float], float]


class FrontierError(ScalelawError):
    """Bad input to a frontier computation."""


def average_over_tasks(draws_fn: DrawsFn, tasks: Sequence[str]) -> DrawsFn:
    """A draws function whose score is the mean over `tasks` (one prediction call in all)."""
    tasks = list(tasks)
    if not tasks:
        return draws_fn

    def averaged(points: pl.DataFrame) -> np.ndarray:
        stacked = pl.concat([points.with_columns(pl.lit(t).alias("task")) for t in tasks])
        mu = np.asarray(draws_fn(stacked), dtype=float)
        return mu.reshape(mu.shape[0], len(tasks), points.height).mean(axis=1)

    return averaged


def config_grid(
    archs: Sequence[Architecture],
    seq_lens: Sequence[float],
    compressions: Sequence[float],
    cost_fn: CostFn,
) -> pl.DataFrame:
    """Every (size, length, ratio) configuration with its cost."""
    if not archs:
        raise FrontierError("no architectures given")
    if any(c < 1 for c in compressions):
        raise FrontierError("compression ratios must be >= 1 (1 means dense)")
    if 1.0 not in [float(c) for c in compressions]:
        raise FrontierError("compression ratios must include 1 (dense) to compare against")
    if not any(c > 1 for c in compressions):
        raise FrontierError("compression ratios must include at least one value > 1")
    rows = [
        {
            "size": a.size,
            "params": float(a.params()),
            "seq_len": float(L),
            "compression": float(c),
            "sparse": bool(c > 1),
            "cost": float(cost_fn(a, float(L), float(c))),
        }
        for L in seq_lens
        for a in archs
        for c in sorted(set(compressions))
    ]
    return pl.DataFrame(rows)


def _checked_draws(draws_fn: DrawsFn, points: pl.DataFrame) -> np.ndarray:
    mu = np.asarray(draws_fn(points.select("params", "seq_len", "compression")), dtype=float)
    if mu.ndim != 2 or mu.shape[1] != points.height:
        raise FrontierError(
            f"prediction returned shape {mu.shape}; expected (n_draws, {points.height})"
        )
    if not np.all(np.isfinite(mu)):
        raise FrontierError("prediction returned non-finite scores")
    return mu


def _best(mu: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Per draw and budget, the best score among feasible configurations (-inf when none)."""
    masked = np.where(feasible[None, :, :], mu[:, None, :], -np.inf)
    return masked.max(axis=2)


def pareto(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mask of configurations no cheaper-or-equal configuration beats."""
    order = np.lexsort((-score, cost))
    on = np.zeros(len(cost), dtype=bool)
    best = -np.inf
    for i in order:
        if score[i] > best:
            on[i] = True
            best = score[i]
    return on


@dataclass
class Frontier:
    """Result of `isocost_frontier` at one sequence length."""

    configs: pl.DataFrame
    budgets: pl.DataFrame
    prob: float
    n_draws: int
    meta: dict[str, Any] = field(default_factory=dict)


def _interval(x: np.ndarray, prob: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return np.quantile(x, (1 - prob) / 2, axis=axis), np.quantile(x, (1 + prob) / 2, axis=axis)


def isocost_frontier(
    draws_fn: DrawsFn,
    archs: Sequence[Architecture],
    seq_len: float,
    cost_fn: CostFn,
    *,
    compressions: Sequence[float] = STUDY_COMPRESSIONS,
    budgets: Sequence[float] | int = 12,
    prob: float = 0.9,
) -> Frontier:
    """Predicted score of every configuration and, per cost budget, best dense versus best sparse.

    `budgets` is a list of budgets or a count of log-spaced budgets between the cheapest and the
    dearest dense configuration. `p_sparse_better` is the share of draws in which the best
    feasible sparse configuration scores above the best feasible dense one.
    """
    if not 0 < prob < 1:
        raise FrontierError(f"interval probability must lie in (0, 1), got {prob}")
    configs = config_grid(archs, [seq_len], compressions, cost_fn)
    mu = _checked_draws(draws_fn, configs)
    lo, hi = _interval(mu, prob)
    cost = configs["cost"].to_numpy()
    sparse = configs["sparse"].to_numpy()
    mean = mu.mean(axis=0)
    dense_front = pareto(np.where(sparse, np.inf, cost), np.where(sparse, -np.inf, mean))
    sparse_front = pareto(np.where(sparse, cost, np.inf), np.where(sparse, mean, -np.inf))
    configs = configs.with_columns(
        pl.Series("mean", mean),
        pl.Series("lower", lo),
        pl.Series("upper", hi),
        pl.Series("dense_frontier", dense_front & ~sparse),
        pl.Series("sparse_frontier", sparse_front & sparse),
    )
    if isinstance(budgets, int):
        dense_costs = cost[~sparse]
        grid = np.geomspace(dense_costs.min(), dense_costs.max(), budgets)
    else:
        grid = np.asarray(sorted(float(b) for b in budgets))
    if grid.size == 0 or np.any(grid <= 0):
        raise FrontierError("budgets must be positive")
    feasible = cost[None, :] <= grid[:, None] * (1 + 1e-12)
    fd, fs = feasible & ~sparse[None, :], feasible & sparse[None, :]
    best_d, best_s = _best(mu, fd), _best(mu, fs)
    both = np.isfinite(best_d) & np.isfinite(best_s)
    wins = np.where(both, best_s > best_d, False)
    n = mu.shape[0]
    diff = np.where(both, best_s - best_d, np.nan)
    rows = []
    for j, b in enumerate(grid):
        row: dict[str, Any] = {"budget": float(b)}
        for tag, f in (("dense", fd[j]), ("sparse", fs[j])):
            if f.any():
                # the configuration reported is the one with the best posterior mean
                i = int(np.flatnonzero(f)[np.argmax(mean[f])])
                row |= {
                    f"{tag}_size": configs["size"][i],
                    f"{tag}_compression": float(configs["compression"][i]),
                    f"{tag}_cost": float(cost[i]),
                    f"{tag}_mean": float(mean[i]),
                    f"{tag}_lower": float(lo[i]),
                    f"{tag}_upper": float(hi[i]),
                }
            else:
                row |= {
                    f"{tag}_size": None,
                    f"{tag}_compression": None,
                    f"{tag}_cost": None,
                    f"{tag}_mean": None,
                    f"{tag}_lower": None,
                    f"{tag}_upper": None,
                }
        ok = bool(both[:, j].all())
        d = diff[:, j]
        row |= {
            "diff_mean": float(d.mean()) if ok else None,
            "diff_lower": float(np.quantile(d, (1 - prob) / 2)) if ok else None,
            "diff_upper": float(np.quantile(d, (1 + prob) / 2)) if ok else None,
            "p_sparse_better": float(wins[:, j].mean()) if ok else None,
            # binomial Monte Carlo error of that share (draws treated as independent)
            "p_mc_error": (
                float(np.sqrt(max(wins[:, j].mean() * (1 - wins[:, j].mean()), 0.25 / n) / n))
                if ok and n > 1
                else None
            ),
        }
        rows.append(row)
    table = pl.DataFrame(rows, infer_schema_length=None)
    return Frontier(configs, table, prob, mu.shape[0], {"seq_len": float(seq_len)})


@dataclass
class CriticalLength:
    """Where large-sparse starts to beat small-dense at equal cost, with its uncertainty.

    `by_length` holds, per length, the mean advantage of the best sparse over the best dense
    configuration (averaged over log-spaced budgets spanning the dense sizes' costs), its
    interval, and the share of draws in which sparse wins. The critical length of a draw is the
    length from which its advantage stays positive up to the end of the scanned range.
    """

    by_length: pl.DataFrame
    median: float
    lower: float
    upper: float
    prob: float
    share_beyond: float
    share_below: float
    n_draws: int

    def describe(self) -> str:
        def fmt(x: float) -> str:
            return "beyond range" if not np.isfinite(x) else f"{x / 1024:,.0f}K"

        lengths = self.by_length["seq_len"].to_numpy()
        if self.share_beyond == 1.0:
            return (
                f"large-sparse does not beat small-dense at equal cost up to "
                f"{lengths.max() / 1024:,.0f}K tokens"
            )
        if self.n_draws == 1:
            return f"critical length {fmt(self.median)} tokens (point estimate: one draw)"
        text = (
            f"critical length {fmt(self.median)} tokens "
            f"({self.prob:.0%} interval {fmt(self.lower)} to {fmt(self.upper)})"
        )
        notes = []
        if self.share_below > 0:
            notes.append(
                f"{self.share_below:.0%} of draws at or below {lengths.min() / 1024:,.0f}K"
            )
        if self.share_beyond > 0:
            notes.append(f"{self.share_beyond:.0%} beyond {lengths.max() / 1024:,.0f}K")
        return text + (f"; {', '.join(notes)}" if notes else "")


def critical_length(
    draws_fn: DrawsFn,
    archs: Sequence[Architecture],
    lengths: Sequence[float],
    cost_fn: CostFn,
    *,
    compressions: Sequence[float] = STUDY_COMPRESSIONS,
    prob: float = 0.9,
    n_budgets: int = 24,
) -> CriticalLength:
    """Scan lengths; per draw, find the length beyond which the best sparse choice wins.

    At each length the budgets are `n_budgets` log-spaced values from the cost of the smallest
    dense model up to (not including) that of the largest, where a larger model exists to run
    sparse; the advantage is the mean over those budgets of the best sparse minus the best dense
    score, the signed area between the two frontiers per unit of log cost. Crossings are
    interpolated linearly in log length.
    """
    if len(archs) < 2:
        raise FrontierError("a critical length needs at least two model sizes")
    lengths = sorted(float(x) for x in lengths)
    if len(lengths) < 2:
        raise FrontierError("a critical length needs at least two sequence lengths")
    configs = config_grid(archs, lengths, compressions, cost_fn)
    mu = _checked_draws(draws_fn, configs)
    seq = configs["seq_len"].to_numpy()
    cost = configs["cost"].to_numpy()
    sparse = configs["sparse"].to_numpy()
    adv = np.empty((mu.shape[0], len(lengths)))
    for k, L in enumerate(lengths):
        here = seq == L
        dense_costs = cost[here & ~sparse]
        budgets = np.geomspace(dense_costs.min(), dense_costs.max(), n_budgets + 1)[:-1]
        feasible = (cost[None, :] <= budgets[:, None] * (1 + 1e-12)) & here[None, :]
        best_d = _best(mu, feasible & ~sparse[None, :])
        best_s = _best(mu, feasible & sparse[None, :])
        # no feasible sparse configuration counts as a loss of the whole dense score
        best_s = np.where(np.isfinite(best_s), best_s, 0.0)
        adv[:, k] = (best_s - best_d).mean(axis=1)
    lo, hi = _interval(adv, prob)
    by_length = pl.DataFrame(
        {
            "seq_len": lengths,
            "advantage_mean": adv.mean(axis=0),
            "advantage_lower": lo,
            "advantage_upper": hi,
            "p_sparse_better": (adv > 0).mean(axis=0),
        }
    )
    crit = _crossings(adv, np.log(np.asarray(lengths)))
    share_beyond = float(np.mean(~np.isfinite(crit)))
    share_below = float(np.mean(crit <= lengths[0]))
    # order statistics, so that draws which never cross (+inf) count without breaking quantiles
    lower, median, upper = (
        float(np.quantile(crit, q, method="inverted_cdf"))
        for q in ((1 - prob) / 2, 0.5, (1 + prob) / 2)
    )
    return CriticalLength(
        by_length, median, lower, upper, prob, share_beyond, share_below, mu.shape[0]
    )


def _crossings(adv: np.ndarray, log_len: np.ndarray) -> np.ndarray:
    """Per draw, the length from which the advantage stays > 0 (inf if it is not > 0 at the end)."""
    positive = adv > 0
    # index of the first length of the final run of positive advantages
    tail_neg = np.where(~positive, np.arange(adv.shape[1])[None, :], -1).max(axis=1)
    start = tail_neg + 1
    n = adv.shape[1]
    rows = np.arange(adv.shape[0])
    j = np.minimum(start, n - 1)
    prev = np.maximum(j - 1, 0)
    a0, a1 = adv[rows, prev], adv[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(a1 != a0, a0 / (a0 - a1), 1.0)
    log_cross = log_len[prev] + t * (log_len[j] - log_len[prev])
    out = np.where(start == 0, np.exp(log_len[0]), np.exp(log_cross))
    return np.where(start >= n, np.inf, out)
