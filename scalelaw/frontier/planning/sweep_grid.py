"""A batch of candidates as a `scalelaw measure` sweep grid: its axes (a cross product) and the
configurations that cross product makes a sweep run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scalelaw.frontier.planning.candidates import Candidate, GridTemplate
from scalelaw.frontier.planning.errors import PlanError
from scalelaw.measure.grid import parse_grid


def _axes(items: Sequence[Candidate]) -> dict[str, set[Any]]:
    return {
        "models": {c.config.model for c in items},
        "lengths": {int(c.config.seq_len) for c in items},
        "compression": {float(c.config.compression) for c in items},
        "methods": {(c.config.method, c.config.method_params) for c in items},
        "tasks": {(c.config.task, c.config.task_params) for c in items},
    }


def _grid_dict(template: GridTemplate, items: Sequence[Candidate], seed: int) -> dict[str, Any]:
    ax = _axes(items)
    samples = {c.samples for c in items}
    if len(samples) != 1:
        raise PlanError("a batch has one sample count")

    def ordered(pairs: set[tuple[str, str]], order: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return {name: json.loads(params) for name, params in order if (name, params) in pairs}

    out: dict[str, Any] = {
        "name": f"{template.name}-plan",
        "seed": seed,
        "samples": samples.pop(),
        "lengths": sorted(ax["lengths"]),
        "compression": sorted(ax["compression"]),
        "models": [m for m in template.models if m in ax["models"]],
        "dtype": template.dtype,
    }
    if template.max_new_tokens:
        out["max_new_tokens"] = template.max_new_tokens
    out["methods"] = ordered(ax["methods"], template.methods)
    out["tasks"] = ordered(ax["tasks"], template.tasks)
    return out


def _hull_keys(template: GridTemplate, items: Sequence[Candidate]) -> list[str]:
    """Compute ids of every configuration the cross product of `items` makes a sweep run."""

    grid = parse_grid(_grid_dict(template, items, template.seed), "<batch>")
    return list(dict.fromkeys(c.compute_id for c in grid.configurations()))
