"""`plan`: rank the candidates by EVSI per GPU-hour and choose a batch within the budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.frontier.architectures import Architecture
from scalelaw.frontier.decide import FlopsCost, fitted_axes
from scalelaw.frontier.planning.batches import ProgressFn, _greedy
from scalelaw.frontier.planning.candidates import Candidates
from scalelaw.frontier.planning.decision import (
    CostFn,
    _p_sparse,
    decision_configs,
    sparse_wins,
    wrong_probability,
)
from scalelaw.frontier.planning.degenerate import _flag_degenerate
from scalelaw.frontier.planning.errors import PlanError
from scalelaw.frontier.planning.result import Plan
from scalelaw.frontier.planning.targets import Target
from scalelaw.frontier.planning.value import Value, _Simulator, evsi
from scalelaw.spans import outside, readable_span
from scalelaw.study import STUDY_COMPRESSIONS

#: Below this share of the draws, the effective sample size of the weights has collapsed.
ESS_SHARE = 0.05
#: Greedy batch building stops when an addition lowers the expected P(wrong) by less.
MIN_GAIN = 1e-3


def plan(
    source: Any,
    candidates: Candidates,
    targets: Sequence[Target],
    architectures: Sequence[Architecture],
    *,
    gpu_hours: float,
    cost_fn: CostFn | None = None,
    compressions: Sequence[float] | None = None,
    tasks: Sequence[str] | None = None,
    max_draws: int = 1000,
    sims: int = 512,
    pool: int = 40,
    seed: int = 0,
    min_gain: float = MIN_GAIN,
    grid_seed: int | None = None,
    progress: ProgressFn | None = None,
) -> Plan:
    """Rank candidate measurements by EVSI per GPU-hour and choose a batch within `gpu_hours`.

    `source` is a fit, stacked fit or fit file with posterior (or bootstrap) draws, or a data
    table, which is fitted with the law family (`scalelaw.fits.family.fit_family`). The decision
    at each target averages the score over `tasks` (default: every task of the source); its
    cost is `cost_fn(arch, L, C)` (default: prefill FLOPs). The loss is P(wrong decision),
    averaged over targets. `pool` candidates with the best EVSI per GPU-hour are considered for
    the batch, whose value is estimated jointly from `sims` simulated outcomes (seeded).
    """
    # deferred: `scalelaw.fits` loads the fitting code and more of scipy (about 0.9 s), which
    # only planning itself needs, not importing the package
    from scalelaw.fits import levels as levels_of
    from scalelaw.fits import predict_draws
    from scalelaw.fits.family import load_or_fit

    if not targets:
        raise PlanError("give at least one target (e.g. 'L=128K,budget=4e16')")
    if not gpu_hours > 0:
        raise PlanError(f"the GPU-hour budget must be positive, got {gpu_hours}")
    if not candidates.items:
        raise PlanError("no candidate configurations")
    src = load_or_fit(source)
    known = levels_of(src)
    others = [k for k in known if k != "task"]
    if others:
        raise PlanError(
            f"the fit has group effects by {', '.join(others)}; planning handles task effects only"
        )
    task_levels = list(known.get("task", []))
    chosen = list(tasks) if tasks else task_levels
    unknown = [t for t in chosen if task_levels and t not in task_levels]
    if unknown:
        raise PlanError(f"task '{unknown[0]}' is not a task of the fit ({', '.join(task_levels)})")
    if cost_fn is None:
        cost_fn = FlopsCost()
    ratios = list(compressions or STUDY_COMPRESSIONS)
    configs = decision_configs(architectures, targets, cost_fn, ratios)
    base = configs.select("params", "seq_len", "compression")
    decision_rows = (
        pl.concat([base.with_columns(pl.lit(t).alias("task")) for t in chosen]) if chosen else base
    )
    items = candidates.items
    if task_levels and any(c.level is None for c in items):
        raise PlanError("the candidates were read without the fit's tasks (pass levels=...)")
    cand_rows = pl.DataFrame([c.point() for c in items])
    if chosen:
        cand_rows = cand_rows.select(decision_rows.columns)
    else:
        cand_rows = cand_rows.select(base.columns)
    # one prediction call, so that draw i is the same parameter draw in both blocks
    mu_all = np.asarray(
        predict_draws(src, pl.concat([decision_rows, cand_rows]), max_draws, joint=True),
        dtype=float,
    )
    if not np.all(np.isfinite(mu_all)):
        raise PlanError("the fit predicts non-finite scores")
    if mu_all.min() < -1e-9 or mu_all.max() > 1 + 1e-9:
        raise PlanError("planning needs a law of scores in [0, 1] (a binomial view of samples)")
    m = mu_all.shape[0]
    if m < 2:
        raise PlanError(
            "planning needs posterior draws; a published card or a point fit has one "
            "(fit data with the bayes or lsq backend)"
        )
    n_dec = decision_rows.height
    mu_dec = mu_all[:, :n_dec]
    if chosen:
        mu_dec = mu_dec.reshape(m, len(chosen), base.height).mean(axis=1)
    mu_c = mu_all[:, n_dec:]
    wins = sparse_wins(mu_dec, configs, targets)
    p_now = _p_sparse(wins, None)
    loss_now = wrong_probability(wins)
    notes = _flag_degenerate(src)
    headline = src.headline() if hasattr(src, "headline") else None
    if headline:
        notes.append(f"this fit is {headline}")
    notes += _beyond_the_fit(src, targets, architectures, ratios)
    if loss_now == 0:
        said = "; ".join(
            f"{t.label}: P(sparse better) = {p:.2f}" for t, p in zip(targets, p_now, strict=True)
        )
        raise PlanError(
            f"nothing to plan: every one of the {m} draws makes the same decision ({said})"
            + "".join(f"; note: {n}" for n in notes)
        )

    values: list[Value] = []
    tick = progress("value of each candidate", len(items)) if progress else None
    for k, c in enumerate(items):
        values.append(evsi(mu_c[:, k], c.samples, wins))
        if tick:
            tick(1)
    hours = np.array([c.gpu_hours for c in items])
    gain = np.array([v.evsi for v in values])
    ratio = gain / hours
    order = sorted(range(len(items)), key=lambda k: (-ratio[k], k))
    collapsed = [k for k in range(len(items)) if values[k].ess < max(ESS_SHARE * m, 10)]

    sim = _Simulator(mu_c, wins, sims, seed, [c.key for c in items])
    batch_idx, batch_loss, batch_ess = _greedy(
        items, candidates.template, sim, order, gain, gpu_hours, pool, min_gain, progress
    )
    if not batch_idx:
        fits = [k for k in order if hours[k] <= gpu_hours]
        if not fits:
            raise PlanError(
                f"no candidate fits in {gpu_hours:g} GPU-hours (the cheapest needs "
                f"{hours.min():.3g})"
            )
        raise PlanError(
            f"no candidate within {gpu_hours:g} GPU-hours lowers the expected P(wrong) by "
            f"{min_gain:g} or more (best: {gain[fits].max():.2g})"
            + "".join(f"; note: {n}" for n in notes)
        )
    in_batch = set(batch_idx)
    rank = {k: r + 1 for r, k in enumerate(order)}
    table = pl.DataFrame(
        {
            "rank": [rank[k] for k in order],
            "model": [items[k].config.model for k in order],
            "size": [items[k].arch.size for k in order],
            "task": [items[k].config.task for k in order],
            "seq_len": [int(items[k].config.seq_len) for k in order],
            "method": [items[k].config.method for k in order],
            "compression": [float(items[k].config.compression) for k in order],
            "samples": [items[k].samples for k in order],
            "gpu_hours": [float(hours[k]) for k in order],
            "p_wrong_after": [values[k].loss_after for k in order],
            "reduction": [float(gain[k]) for k in order],
            "reduction_per_gpu_hour": [float(ratio[k]) for k in order],
            "effective_draws": [values[k].ess for k in order],
            "cost_source": [items[k].cost_source for k in order],
            "in_batch": [k in in_batch for k in order],
        }
    )
    if collapsed:
        notes.append(
            f"the importance weights collapse for {len(collapsed)} of {len(items)} candidates "
            f"(fewer than {max(ESS_SHARE * m, 10):.0f} of {m} effective draws after the "
            "measurement): their values rest on few draws; measure, refit and plan again"
        )
    if batch_ess < max(ESS_SHARE * m, 10):
        notes.append(
            f"after the whole batch about {batch_ess:.0f} of {m} draws keep weight: the "
            "expected P(wrong) after it is coarse; refit after measuring"
        )
    return Plan(
        list(targets),
        [float(p) for p in p_now],
        loss_now,
        table,
        [items[k] for k in sorted(batch_idx)],
        batch_loss,
        batch_ess,
        float(gpu_hours),
        m,
        sim.sims,
        candidates.template,
        notes,
        grid_seed,
    )


def _beyond_the_fit(
    src: Any,
    targets: Sequence[Target],
    archs: Sequence[Architecture],
    compressions: Sequence[float],
) -> list[str]:
    """A note for target lengths, one for compared model sizes and one for compared
    compressions outside those the fit saw: there P(wrong) rests on the law's form, which
    measuring near them tests as well."""
    said = []
    spans = fitted_axes(src)
    lengths, sizes, ratios = spans["L"], spans["N"], spans["C"]
    far = [t.label.split(",")[0] for t in targets if outside(t.seq_len, lengths)]
    if far and lengths is not None:
        said.append(
            f"target {', '.join(far)} outside the lengths the fit saw "
            f"({readable_span('L', lengths)}): P(wrong) there rests on the law's form"
        )
    strays = [a.size for a in archs if outside(float(a.params()), sizes)]
    if strays and sizes is not None:
        said.append(
            f"model sizes {', '.join(strays)} outside those the fit saw "
            f"({readable_span('N', sizes)}): their scores rest on the law's form"
        )
    beyond = [f"{c:g}" for c in compressions if outside(c, ratios)]
    if beyond and ratios is not None:
        said.append(
            f"compressions C={', '.join(beyond)} outside those the fit saw "
            f"({readable_span('C', ratios)}): their scores rest on the law's form"
        )
    return said
