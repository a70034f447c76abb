"""The planning benchmark refits after a batch that repeats a configuration."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def pb(benchmark_script):
    return benchmark_script("planning")


def test_a_repeated_configuration_is_pooled_not_refused(pb) -> None:
    from scalelaw.frontier.planning import candidates_from_dict

    grid = pb.candidate_grid()
    grid.update(lengths=[16384, 32768], compression=[1.0, 5.0, 20.0], models=pb.MODELS[:2])
    candidates = candidates_from_dict(grid, levels=list(pb.TASKS.values()))
    run = pb.Run("0", pb.Lab(candidates.items, 0), {c.key: c.gpu_hours for c in candidates.items})
    keys = [c.key for c in candidates.items]
    run.measure(keys)
    run.measure(keys[:3])  # the planner asked for three configurations again
    assert run.table().height == len(keys) + 3
    result = pb.refit_law(run, pb.fit_options("lsq", 0))
    assert result.meta["rows"] == len(keys)
    assert result.meta.get("aggregate") == "mean"
