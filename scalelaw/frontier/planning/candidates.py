"""Candidates: every configuration of a sweep grid TOML, with its fit coordinates (N, L, C,
task level) and its measuring cost."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from scalelaw.frontier.architectures import Architecture
from scalelaw.frontier.planning.errors import PlanError
from scalelaw.frontier.planning.measure_cost import MeasureSpeed, _Calibration, model_architecture
from scalelaw.kernels.specs import is_dense
from scalelaw.measure.grid import GridError, parse_grid
from scalelaw.measure.tasks import TaskError, get_task

#: The reference study's task names (v1 cards) for the generated tasks of `scalelaw measure`.
V1_TASK_NAMES: dict[str, str] = {
    "niah-multikey": "NIAH",
    "variable-tracking": "VT",
    "common-words": "CWE",
    "story-retrieval": "StoryRetrieval",
    "story-multihop": "StoryMultihop",
    "story-filtering": "StoryFiltering",
}


def task_level(task: str, levels: Sequence[str], task_map: Mapping[str, str] | None) -> str:
    """The fit's task level a grid task is scored as: the same name, --task-map, or the v1 name."""
    mapped = (task_map or {}).get(task)
    if mapped is not None:
        if levels and mapped not in levels:
            raise PlanError(
                f"--task-map {task}={mapped}: '{mapped}' is not a task of the fit "
                f"({', '.join(levels)})"
            )
        return mapped
    if not levels or task in levels:
        return task
    folded = {lv.lower(): lv for lv in levels}
    for name in (task, V1_TASK_NAMES.get(task, "")):
        if name.lower() in folded:
            return folded[name.lower()]
    raise PlanError(
        f"task '{task}' of the candidates is not a task of the fit ({', '.join(levels)}); "
        "map it with --task-map NAME=LEVEL"
    )


@dataclass(frozen=True)
class Candidate:
    """One configuration a sweep could measure, its fit coordinates and its measuring cost."""

    config: Any  # scalelaw.measure.grid.Configuration
    arch: Architecture
    level: str | None
    seconds: float
    cost_source: str = "cost model"

    @property
    def key(self) -> str:
        """Configurations with equal keys are one measurement (C = 1 of a method is dense)."""
        return str(self.config.compute_id)

    @property
    def gpu_hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def samples(self) -> int:
        return int(self.config.samples)

    def point(self) -> dict[str, Any]:
        c = self.config
        row: dict[str, Any] = {
            "params": float(self.arch.params()),
            "seq_len": float(c.seq_len),
            "compression": float(c.compression),
        }
        if self.level is not None:
            row["task"] = self.level
        return row


@dataclass(frozen=True)
class GridTemplate:
    """What a written grid copies from the candidates file, and its axes' order."""

    name: str
    seed: int
    dtype: str
    max_new_tokens: int
    models: tuple[str, ...]
    methods: tuple[tuple[str, str], ...]
    tasks: tuple[tuple[str, str], ...]


@dataclass
class Candidates:
    items: list[Candidate]
    template: GridTemplate
    source: str = ""


def read_candidates(
    path: str | Path,
    *,
    levels: Sequence[str] = (),
    task_map: Mapping[str, str] | None = None,
    speed: MeasureSpeed | None = None,
    timings: pl.DataFrame | None = None,
) -> Candidates:
    """Every configuration of a sweep grid TOML as a candidate.

    The file is a `scalelaw measure` grid, except that `samples` may be a list: each sample
    count is a separate candidate. `timings` (a table from an earlier sweep) replaces the cost
    model where it measured the configuration and calibrates it elsewhere.
    """

    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block for ever, a device never end
        raise PlanError(f"{path}: not a regular file, expected a grid TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the candidates ({exc.strerror})") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise PlanError(f"{path}: not valid TOML (nested too deeply)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: not valid TOML ({exc})") from None
    try:
        return candidates_from_dict(
            data,
            where=str(path),
            levels=levels,
            task_map=task_map,
            speed=speed,
            timings=timings,
        )
    except GridError as exc:
        raise PlanError(str(exc)) from None


def candidates_from_dict(
    data: Mapping[str, Any],
    *,
    where: str = "<candidates>",
    levels: Sequence[str] = (),
    task_map: Mapping[str, str] | None = None,
    speed: MeasureSpeed | None = None,
    timings: pl.DataFrame | None = None,
) -> Candidates:
    """As `read_candidates`, from the parsed TOML."""

    speed = speed or MeasureSpeed()
    raw = data.get("samples", 10)
    counts = raw if isinstance(raw, list) else [raw]
    if not counts:
        raise PlanError(f"{where}: 'samples' is an empty list")
    grids = [parse_grid({**data, "samples": n}, where) for n in counts]
    first = grids[0]
    archs = {m: model_architecture(m) for m in first.models}
    tasks: dict[tuple[str, str], tuple[str, int]] = {}
    for name, params in first.tasks:
        try:
            task = get_task(name, **json.loads(params))
        except (TaskError, TypeError, ValueError) as exc:
            raise PlanError(f"{where}: task '{name}': {exc}") from None
        tasks[(name, params)] = (task_level(name, levels, task_map), int(task.max_new_tokens))
    calibration = _Calibration(timings, speed) if timings is not None else None
    items: dict[str, Candidate] = {}
    for grid in grids:
        for c in grid.configurations():
            if c.compute_id in items:
                continue
            arch = archs[c.model]
            level, cap = tasks[(c.task, c.task_params)]
            method = "dense" if is_dense(c.compression) else c.method
            knobs = json.loads(c.method_params) if method != "dense" else {}
            per = speed.seconds_per_sample(
                arch, method, c.seq_len, c.compression, c.max_new_tokens or cap, knobs
            )
            source = "cost model"
            if calibration is not None:
                per, source = calibration.adjust(c.model, c.seq_len, method, c.compression, per)
            items[c.compute_id] = Candidate(
                c, arch, level if levels else None, per * c.samples, source
            )
    template = GridTemplate(
        first.name, first.seed, first.dtype, first.max_new_tokens, first.models,
        first.methods, first.tasks,
    )  # fmt: skip
    return Candidates(list(items.values()), template, where)
