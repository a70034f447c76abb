"""Extrapolation honesty you can see: refit without a held-out slice, score each law and the stack.

`check_holdout` takes a table (the law family is fitted, as `fit --law auto` does), a fit, or a
stacked fit, holds out the largest (or smallest) value of an axis, refits every law on the rest
with the settings it was made with, and scores each law and the stack on the held-out rows:
mean absolute error of the predictive mean, coverage of the observed scores by the central
predictive interval, and that interval's median width. Intervals that are narrow and miss are
the failure this makes visible; `HoldoutCheck.plot` draws predicted against observed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import canonical, load_table
from scalelaw.errors import ScalelawError
from scalelaw.fits.family import AUTO, _held_axes, extrapolation_stack, fit_family
from scalelaw.fits.fitting import FitWarning, fit
from scalelaw.fits.prediction import predictive_draws
from scalelaw.fits.progress import announce, messages_only
from scalelaw.fits.result import FitResult
from scalelaw.fits.stacking import (
    StackedFit,
    options_of,
    stack,
    table_of,
)
from scalelaw.fits.validation import split_holdout

STACK = "stack"


@dataclass
class HoldoutCheck:
    """Scores per law and for the stack on a held-out slice, and the points to draw."""

    holdout: str
    table: pl.DataFrame
    points: pl.DataFrame
    prob: float
    #: what makes the scores mean less than they seem (the command prints them as warnings)
    notes: list[str] = field(default_factory=list)

    def plot(self, path: str | Path | None = None, ax: Any = None) -> Any:
        """Predicted (with its predictive interval) against observed, held-out rows marked."""
        # deferred: matplotlib (about 1 s); plots sits above fits, a declared hand-over
        from scalelaw.plots import holdout_figure

        return holdout_figure(self, path, ax=ax)


def interval_scores(
    src: Any, test: pl.DataFrame, prob: float = 0.9, seed: int = 0
) -> dict[str, Any]:
    """MAE, coverage and median width of the central `prob` predictive interval on `test`."""
    response = src.law.response
    samples = test["samples"].to_numpy() if "samples" in test.columns else None
    obs = predictive_draws(src, test, samples=samples, seed=seed)
    lo, hi = np.quantile(obs, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    y = test[response].to_numpy().astype(float)
    mean = obs.mean(axis=0)
    return {
        "mae": float(np.abs(mean - y).mean()),
        "coverage": float(((y >= lo) & (y <= hi)).mean()),
        "width": float(np.median(hi - lo)),
        "mean": mean,
        "lower": lo,
        "upper": hi,
        "observed": y,
    }


def check_holdout(
    source: Any,
    holdout: str,
    *,
    data: Any = None,
    options: Any = None,
    prob: float = 0.9,
    progress: Callable[[str], None] | None = None,
) -> HoldoutCheck:
    """Refit `source` without the `holdout` slice (``"N=max"``) and score it there.

    `source` is a table (polars frame or path: the law family), a `FitResult` or a
    `StackedFit` (refitted on `data`, default the table it was made on). `progress` is called
    with a message before each fit and refit ("refitting NAME without N=max (2 of 6)"); one
    that counts is told how many there are (`scalelaw.fits.progress.announce`).
    """
    if isinstance(source, FitResult | StackedFit):
        fits = [source] if isinstance(source, FitResult) else list(source.fits)
        if any(f.is_card for f in fits):
            raise ScalelawError("a published card has no table to refit: check a fit or a table")
        table = data if data is not None else fits[0].meta.get("source")
        if table is None or table == "<table>":
            raise ScalelawError("give the table the fit was made on (--data)")
        frame = table_of(fits[0], table)
        train, test, desc = split_holdout(frame, holdout, str(table))
        assert test is not None
        auto = isinstance(source, StackedFit) and source.meta.get("holdout") == AUTO
        loo = (
            isinstance(source, StackedFit)
            and source.method == "PSIS-LOO"
            and all((options or options_of(f)).backend == "bayes" for f in fits)
        )
        # each law refitted without the slice; a stack's weights then refit them again
        again = len(_held_axes(train)) if auto else int(isinstance(source, StackedFit) and not loo)
        announce(progress, len(fits) * (1 + again))
        refits = []
        for i, f in enumerate(fits, 1):
            if progress:
                progress(f"refitting {f.law.name} without {desc} ({i} of {len(fits)})")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                refits.append(fit(train, f.law_for_refit(), options or options_of(f)))
        stacked = None
        messages = messages_only(progress)
        if auto:
            stacked = extrapolation_stack(refits, train, options or options_of(fits[0]), messages)
        elif isinstance(source, StackedFit):
            stacked = (
                stack(refits)
                if loo
                else stack(refits, data=train, holdout=holdout, progress=messages)
            )
    else:
        frame = load_table(source)
        train, test, desc = split_holdout(frame, holdout, str(source))
        assert test is not None
        stacked = fit_family(train, options, progress=progress)
        refits = list(stacked.fits)
    weights = stacked.weights if stacked is not None else np.ones(1)
    if stacked is not None and (beyond := stacked.point_weights(test)) is not None:
        weights = beyond.mean(axis=0)  # what the stack predicts the held-out rows with
    sources: list[tuple[str, Any, float]] = [
        (r.law.name, r, float(w)) for r, w in zip(refits, weights, strict=True)
    ]
    if stacked is not None and len(refits) > 1:
        sources.append((STACK, stacked, 1.0))
    rows, points = [], []
    for name, src, weight in sources:
        s = interval_scores(src, test, prob)
        rows.append(
            {
                "source": name,
                "weight": weight,
                "mae": s["mae"],
                "coverage": s["coverage"],
                "width": s["width"],
                "rows": test.height,
                "diagnostics": (src.headline() or "").split(":")[0],
            }
        )
        fitted = interval_scores(src, train, prob)
        for part, sc, held in ((train, fitted, False), (test, s, True)):
            points.append(
                pl.DataFrame(
                    {
                        "source": [name] * part.height,
                        "observed": sc["observed"],
                        "mean": sc["mean"],
                        "lower": sc["lower"],
                        "upper": sc["upper"],
                        "held_out": [held] * part.height,
                    }
                )
            )
    table = pl.DataFrame(rows).with_columns(pl.col("weight", "mae", "coverage", "width").round(3))
    return HoldoutCheck(
        desc or holdout, table, pl.concat(points), prob, _one_value_left(train, holdout, desc)
    )


def _one_value_left(train: pl.DataFrame, holdout: str, desc: str | None) -> list[str]:
    """A note when the rows left to fit hold one value of the held-out axis: no law can learn
    how the score moves along it, so the held-out rows test a constant, not an extrapolation."""
    symbol = holdout.partition("=")[0].strip()  # read as `split_holdout` reads it
    column = canonical(symbol)
    if column not in train.columns or train[column].n_unique() != 1:
        return []
    return [
        f"holding out {desc or holdout} leaves one value of {symbol} to fit "
        f"({train[column][0]:g}): no law can learn how the score moves with it, so these "
        "scores test a constant, not an extrapolation; hold out less, or measure more values"
    ]


__all__ = ["HoldoutCheck", "check_holdout", "interval_scores"]
