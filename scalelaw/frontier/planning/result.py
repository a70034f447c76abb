"""The plan: ranked candidates and the chosen batch, written as a sweep grid TOML."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
import tomli_w

from scalelaw.frontier.planning.candidates import Candidate, GridTemplate
from scalelaw.frontier.planning.errors import PlanError
from scalelaw.frontier.planning.sweep_grid import _grid_dict
from scalelaw.frontier.planning.targets import Target
from scalelaw.measure.grid import load_grid, parse_grid


@dataclass
class Plan:
    """The ranked candidates and the batch chosen within the GPU-hour budget."""

    targets: list[Target]
    p_sparse: list[float]
    loss: float
    table: pl.DataFrame
    batch: list[Candidate]
    batch_loss: float
    batch_ess: float
    gpu_hours: float
    n_draws: int
    sims: int
    template: GridTemplate
    warnings: list[str] = field(default_factory=list)
    grid_seed: int | None = None

    @property
    def batch_hours(self) -> float:
        return float(sum(c.gpu_hours for c in self.batch))

    def grid(self) -> dict[str, Any]:
        """The batch as a sweep grid (the parsed TOML)."""
        if not self.batch:
            raise PlanError("the plan holds no batch to write")
        seed = self.template.seed if self.grid_seed is None else self.grid_seed
        return _grid_dict(self.template, self.batch, seed)

    def to_toml(self) -> str:
        head = [
            f"# planned by scalelaw plan: {len(self.batch)} configurations, "
            f"{self.batch_hours:.3g} of {self.gpu_hours:g} GPU-hours",
            *(
                f"# target {t.label}: P(sparse better) = {p:.3f} now"
                for t, p in zip(self.targets, self.p_sparse, strict=True)
            ),
            f"# expected P(wrong decision): {self.loss:.3f} now, {self.batch_loss:.3f} after "
            "this batch",
        ]
        return "\n".join(head) + "\n" + tomli_w.dumps(self.grid())

    def write(self, path: str | Path) -> Path:
        """Write the grid, checked first to be exactly the batch as `scalelaw measure` reads it."""

        path = Path(path)
        text = self.to_toml()
        # a fresh seed changes every id, so compare the configurations under the old seed
        seed = self.template.seed
        parsed = parse_grid(tomllib.loads(text), str(path)).configurations()
        if {replace(c, seed=seed).compute_id for c in parsed} != {c.key for c in self.batch}:
            raise PlanError(f"{path}: the grid would not hold exactly the planned batch")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        load_grid(path)
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": [
                {"seq_len": t.seq_len, "budget": t.budget or "mean", "p_sparse_better": p}
                for t, p in zip(self.targets, self.p_sparse, strict=True)
            ],
            "p_wrong": self.loss,
            "p_wrong_after_batch": self.batch_loss,
            "batch_effective_draws": self.batch_ess,
            "gpu_hours_budget": self.gpu_hours,
            "batch_gpu_hours": self.batch_hours,
            "n_draws": self.n_draws,
            "simulations": self.sims,
            "batch": [c.config.label() for c in self.batch],
            "candidates": self.table.to_dicts(),
            "warnings": self.warnings,
        }
