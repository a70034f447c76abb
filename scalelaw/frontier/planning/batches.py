"""Greedy batches: grow the batch's cross product within a GPU-hour budget, valued jointly
over simulated outcomes, against the best single addition."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scalelaw.frontier.planning.candidates import Candidate, GridTemplate
from scalelaw.frontier.planning.sweep_grid import _hull_keys
from scalelaw.frontier.planning.value import _Simulator

ProgressFn = Callable[[str, int | None], Callable[[int], None]]


def _greedy(
    items: list[Candidate],
    template: GridTemplate,
    sim: _Simulator,
    order: list[int],
    gain: np.ndarray,
    budget_hours: float,
    pool: int,
    min_gain: float,
    progress: ProgressFn | None,
) -> tuple[list[int], float, float]:
    """Grow the batch's cross product by the addition with the best joint gain per GPU-hour.

    The classic knapsack safeguard applies: the result is compared with the best single
    addition, and the better of the two is kept.
    """
    index = {c.key: k for k, c in enumerate(items)}
    hours = np.array([c.gpu_hours for c in items])
    considered = [k for k in order if gain[k] > 0 and hours[k] <= budget_hours][: max(pool, 1)]
    loglik: dict[int, np.ndarray] = {}

    def ll(k: int) -> np.ndarray:
        if k not in loglik:
            loglik[k] = sim.loglik(k, items[k].samples)
        return loglik[k]

    def extension(chosen: list[int], k: int) -> list[int] | None:
        if chosen and items[k].samples != items[chosen[0]].samples:
            return None
        keys = _hull_keys(template, [items[i] for i in (*chosen, k)])
        if any(key not in index for key in keys):
            return None
        have = set(chosen)
        return [index[key] for key in keys if index[key] not in have]

    loss0, ess0 = sim.loss(None)

    def run() -> tuple[list[int], float, float]:
        chosen: list[int] = []
        total: np.ndarray | None = None
        loss, ess = loss0, ess0
        spent = 0.0
        tick = progress("choosing the batch", None) if progress else None
        while True:
            best: tuple[float, list[int], np.ndarray, float, float] | None = None
            for k in considered:
                if k in chosen:
                    continue
                new = extension(chosen, k)
                if not new or spent + hours[new].sum() > budget_hours * (1 + 1e-12):
                    continue
                add = _stack_sum([ll(i) for i in new])
                trial = add if total is None else total + add
                trial_loss, trial_ess = sim.loss(trial)
                score = (loss - trial_loss) / float(hours[new].sum())
                if best is None or score > best[0]:
                    best = (score, new, trial, trial_loss, trial_ess)
            if best is None or loss - best[3] < min_gain:
                break
            _, new, total, loss, ess = best
            chosen += new
            spent += float(hours[new].sum())
            if tick:
                tick(1)
            if len(loglik) > 2 * max(pool, 1):
                # bounded memory: streams are seeded per configuration, so recomputing is exact
                loglik.clear()
        return chosen, loss, ess

    greedy = run()
    single = _best_single(considered, extension, ll, sim, hours, budget_hours, loss0, min_gain)
    if single is not None and single[1] < greedy[1] - 1e-12:
        return single
    return greedy


def _stack_sum(arrays: list[np.ndarray]) -> np.ndarray:
    out = arrays[0].copy()
    for a in arrays[1:]:
        out += a
    return out


def _best_single(
    considered: list[int],
    extension: Callable[[list[int], int], list[int] | None],
    ll: Callable[[int], np.ndarray],
    sim: _Simulator,
    hours: np.ndarray,
    budget_hours: float,
    loss0: float,
    min_gain: float,
) -> tuple[list[int], float, float] | None:
    best: tuple[list[int], float, float] | None = None
    for k in considered:
        new = extension([], k)
        if not new or hours[new].sum() > budget_hours * (1 + 1e-12):
            continue
        loss, ess = sim.loss(_stack_sum([ll(i) for i in new]))
        if loss0 - loss >= min_gain and (best is None or loss < best[1]):
            best = (new, loss, ess)
    return best
