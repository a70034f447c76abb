"""The planning benchmark refits after a batch that repeats a configuration."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "planning_benchmark", REPO / "benchmarks" / "planning.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_a_repeated_configuration_is_pooled_not_refused() -> None:
    pb = _benchmark()
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
