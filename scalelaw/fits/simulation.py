"""Simulated accuracy tables: draw data from a published card or a fit on a grid.

Every simulated table carries a ``truth`` column (the law's expected response at each row), so
held-out validation can score predictions against the truth as well as against the noisy data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import read_frame
from scalelaw.errors import ScalelawError
from scalelaw.fits.catalog import get_card, get_law
from scalelaw.fits.prediction import as_fit, points_frame, predict_draws
from scalelaw.fits.result import FitResult
from scalelaw.study import STUDY_COMPRESSIONS, STUDY_LENGTHS, STUDY_MODELS

PAPER_MODELS = STUDY_MODELS
PAPER_LENGTHS = STUDY_LENGTHS
PAPER_COMPRESSIONS = STUDY_COMPRESSIONS


def paper_grid(tasks: Sequence[str]) -> pl.DataFrame:
    """The reference study's grid: 4 Qwen2.5 sizes x 4 lengths x 11 ratios x tasks."""
    rows = [
        {"model": m, "params": n, "seq_len": float(length), "compression": c, "task": t}
        for m, n in PAPER_MODELS.items()
        for length in PAPER_LENGTHS
        for c in PAPER_COMPRESSIONS
        for t in tasks
    ]
    return pl.DataFrame(rows)


def length_slope_card(
    kappa: float = -0.1, *, pivot: float = 32768, tasks: Sequence[str] | None = None
) -> FitResult:
    """A truth outside the study's law: the published prefill card with a compression slope
    that moves with length, gamma + kappa ln L (law ``sparse-frontier-lc``), equal to the
    card's gamma at `pivot`, so the two agree there and part with L. `tasks` keeps those
    tasks' offsets only (default: all nine)."""
    values = dict(get_card("sparse-frontier-v1:prefill").meta["values"])
    if tasks is not None:
        values["delta"] = {t: values["delta"][t] for t in tasks}
    values["gamma"] = values["gamma"] - kappa * float(np.log(pivot))
    return FitResult.card(get_law("sparse-frontier-lc"), {**values, "kappa": kappa})


def simulate(
    src: Any,
    grid: str | pl.DataFrame = "paper",
    *,
    samples: int = 100,
    seed: int = 0,
    noise: float = 0.02,
) -> pl.DataFrame:
    """Draw a dataset from a published card or a fit (posterior median) on a grid.

    Accuracy laws give binomial counts over `samples` trials; other laws add normal noise of
    standard deviation `noise` on the law's fitting scale.
    """
    src = as_fit(src)
    if not isinstance(src, FitResult):
        raise ScalelawError(
            "simulate from one fit or a published card; a stacked fit mixes several laws"
        )
    law = src.law
    if isinstance(grid, str):
        if grid != "paper":
            frame = read_frame(grid)
        else:
            frame = paper_grid(src.levels.get("task") or ["all"])
    else:
        frame = grid
    frame = points_frame(frame)
    point = FitResult(law, src.backend, src.estimates(), src.levels)
    mu = predict_draws(point, frame)[0]
    rng = np.random.default_rng(seed)
    if law.is_count or law.response == "score":
        correct = rng.binomial(samples, np.clip(mu, 0.0, 1.0))
        out = frame.with_columns(
            pl.Series("correct", correct, dtype=pl.Int64),
            pl.Series("samples", np.full(len(mu), samples), dtype=pl.Int64),
            pl.Series("score", correct / samples),
            pl.Series("truth", np.clip(mu, 0.0, 1.0)),
        )
    else:
        y = (
            np.log(mu) + rng.normal(0, noise, len(mu))
            if law.transform == "log"
            else mu + rng.normal(0, noise, len(mu))
        )
        out = frame.with_columns(
            pl.Series(law.response, np.exp(y) if law.transform == "log" else y),
            pl.Series("truth", mu),
        )
    phase = src.meta.get("phase")
    if phase and "phase" not in out.columns:
        out = out.with_columns(pl.lit(phase).alias("phase"))
    return out
