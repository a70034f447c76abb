"""The decision per draw: the configurations competing at each target, whether sparse wins in
each posterior draw, and P(wrong decision), the loss that planning lowers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.frontier.architectures import Architecture
from scalelaw.frontier.planning.errors import PlanError
from scalelaw.frontier.planning.targets import MEAN_BUDGETS, Target

CostFn = Callable[[Architecture, float, float], float]


def decision_configs(
    archs: Sequence[Architecture],
    targets: Sequence[Target],
    cost_fn: CostFn,
    compressions: Sequence[float],
) -> pl.DataFrame:
    """Every (target, size, ratio) configuration with its cost."""
    if not archs:
        raise PlanError("no architectures compete in the decision")
    ratios = sorted({float(c) for c in compressions})
    if not ratios or ratios[0] < 1:
        raise PlanError("compression ratios must be >= 1 (1 means dense)")
    if ratios[0] != 1.0 or len(ratios) < 2:
        raise PlanError("compression ratios must include 1 (dense) and at least one value > 1")
    if any(t.budget is None for t in targets) and len(archs) < 2:
        raise PlanError("a budget=mean target needs at least two model sizes")
    rows: list[dict[str, Any]] = []
    for t, target in enumerate(targets):
        for a in archs:
            for c in ratios:
                rows.append(
                    {
                        "target": t,
                        "size": a.size,
                        "params": float(a.params()),
                        "seq_len": float(target.seq_len),
                        "compression": c,
                        "sparse": c > 1,
                        "cost": float(cost_fn(a, target.seq_len, c)),
                    }
                )
        here = [r for r in rows if r["target"] == t]
        if target.budget is None:
            continue
        for sparse, what in ((False, "dense"), (True, "sparse")):
            costs = [r["cost"] for r in here if r["sparse"] == sparse]
            if min(costs) > target.budget * (1 + 1e-12):
                raise PlanError(
                    f"target {target.label}: no {what} configuration fits the budget "
                    f"(the cheapest costs {min(costs):.3g})"
                )
    return pl.DataFrame(rows)


def _budgets(target: Target, cost: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    if target.budget is not None:
        return np.array([target.budget])
    dense = cost[~sparse]
    return np.geomspace(dense.min(), dense.max(), MEAN_BUDGETS + 1)[:-1]


def sparse_wins(mu: np.ndarray, configs: pl.DataFrame, targets: Sequence[Target]) -> np.ndarray:
    """Per draw and target, whether the best feasible sparse choice beats the best dense one
    (for ``budget=mean``: on average over the budgets, no feasible sparse choice scoring 0)."""
    which = configs["target"].to_numpy()
    sparse_all = configs["sparse"].to_numpy()
    cost_all = configs["cost"].to_numpy()
    out = np.zeros((mu.shape[0], len(targets)), dtype=bool)
    for t, target in enumerate(targets):
        here = which == t
        m, cost, sparse = mu[:, here], cost_all[here], sparse_all[here]
        budgets = _budgets(target, cost, sparse)
        feasible = cost[None, :] <= budgets[:, None] * (1 + 1e-12)
        best = {}
        for tag, mask in (("d", feasible & ~sparse), ("s", feasible & sparse)):
            masked = np.where(mask[None, :, :], m[:, None, :], -np.inf)
            best[tag] = masked.max(axis=2)
        best_s = np.where(np.isfinite(best["s"]), best["s"], 0.0)
        out[:, t] = (best_s - best["d"]).mean(axis=1) > 0
    return out


def wrong_probability(wins: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Expected share of the targets decided wrongly when each is decided by its likelier side."""
    p = _p_sparse(wins, weights)
    return float(np.minimum(p, 1 - p).mean())


def _p_sparse(wins: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    w = np.full(wins.shape[0], 1.0 / wins.shape[0]) if weights is None else weights
    return np.asarray(w @ wins.astype(float), dtype=float)
