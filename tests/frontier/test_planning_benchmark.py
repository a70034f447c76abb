"""The planning benchmark: repeats pooled, baselines filled to equal spend, scored against the
truth."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def pb(benchmark_script):
    return benchmark_script("planning")


def small_run(pb):
    """A run over a small grid (7B and 14B, two lengths, three ratios) and its GPU-hours."""
    from scalelaw.frontier.planning import candidates_from_dict

    grid = pb.candidate_grid()
    grid.update(lengths=[16384, 32768], compression=[1.0, 5.0, 20.0], models=pb.MODELS[:2])
    candidates = candidates_from_dict(grid, levels=list(pb.TASKS.values()))
    hours = {c.key: c.gpu_hours for c in candidates.items}
    return pb.Run("0", pb.Lab(candidates.items, 0), hours), hours


def test_a_repeated_configuration_is_pooled_not_refused(pb) -> None:
    run, hours = small_run(pb)
    keys = list(hours)
    run.measure(keys)
    run.measure(keys[:3])  # the planner asked for three configurations again
    assert run.table().height == len(keys) + 3
    result = pb.refit_law(run, pb.fit_options("lsq", 0))
    assert result.meta["rows"] == len(keys)
    assert result.meta.get("aggregate") == "mean"


def test_a_baseline_is_filled_to_the_planners_spend_without_repeats(pb) -> None:
    run, hours = small_run(pb)
    cheapest = sorted(hours, key=lambda k: (hours[k], k))
    target = sum(hours[k] for k in cheapest[:5]) + 0.4 * hours[cheapest[5]]
    run.fill_to(cheapest, target)
    assert list(run.counts) == cheapest[:5]  # 0.4 of the next would overshoot by more
    run.fill_to(cheapest, target + 0.7 * hours[cheapest[5]])
    assert list(run.counts) == cheapest[:6]  # ...and now it brings the spend nearer
    assert all(k == 1 for k in run.counts.values())
    # a shuffled order skips what does not fit and keeps filling
    run2, _ = small_run(pb)
    order = list(reversed(cheapest))
    goal = hours[cheapest[0]] + hours[cheapest[1]]
    run2.fill_to(order, goal)
    assert abs(run2.hours - goal) <= hours[cheapest[0]]


def test_the_kappa_world_is_outside_the_planners_law_and_scored_against_its_truth(pb) -> None:
    import numpy as np
    import polars as pl
    from scipy.special import logit

    from scalelaw.fits import predict_draws

    card, kappa = pb.truth("card"), pb.truth("kappa")
    assert kappa.source.law.name != "sparse-frontier"
    task = next(iter(pb.TASKS.values()))
    pts = pl.DataFrame(
        {"params": [7.6e9] * 3, "seq_len": [16384.0, 32768.0, 131072.0],
         "compression": [10.0] * 3, "task": [task] * 3}
    )  # fmt: skip
    a, b = predict_draws(card.source, pts)[0], predict_draws(kappa.source, pts)[0]
    assert abs(logit(a[1]) - logit(b[1])) < 1e-6  # equal slopes at the pivot, 32K
    # steeper beyond it: kappa ln(128K / 32K) ln(C) = -0.32 on the logit scale
    assert logit(b[2]) - logit(a[2]) == pytest.approx(-0.1 * np.log(4) * np.log(10), rel=1e-3)
    # scored against the truth, not the fit's own belief: the card, asked about the kappa
    # world, makes the right 128K call but misses its critical length by a few percent
    s = pb.score(card.source, kappa, hours=1.0)
    assert s.p_wrong == 0.0 and s.right and not s.confident_error
    assert s.crit_error == pytest.approx(abs(card.critical / kappa.critical - 1), rel=1e-6)
    assert 0.01 < s.crit_error < 0.2
