"""Prediction from a fit, a stacked fit or a published card: expectations and new observations.

`predict_draws` gives the expected response per parameter draw. `predictive_draws` adds the
likelihood's noise, so its intervals are where a new measurement would fall: binomial or
beta-binomial counts over a number of samples, beta scores with the fitted precision, and
normal or Student-t noise with the fitted scale on the law's fitting scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import ALIASES, DataError
from scalelaw.fits.likelihoods import noise_draws, observe, require_noise, thin
from scalelaw.fits.points import (
    Points,
    _fits,
    as_fit,
    as_frame,
    checked_points,
    column_maps,
    fit_draws,
    points_frame,
    renames,
)
from scalelaw.fits.result import FitResult
from scalelaw.spans import SPAN_SLACK, edges, outside, readable


def levels(src: Any) -> dict[str, list[str]]:
    """Group levels (for example the tasks) a fit saw or a published card knows, by column."""
    src = as_fit(src)
    return {k: list(v) for k, v in src.levels.items()}


def predict_draws(
    src: Any,
    points: Points,
    max_draws: int = 2000,
    *,
    source: str = "points",
    joint: bool = False,
) -> np.ndarray:
    """Expected response at each point for each draw: shape (n_draws, n_points).

    `src` is a `FitResult`, a `StackedFit` (draws of each law in proportion to its weight) or a
    published law card (one draw). Points outside the table's ranges (N <= 0, C < 1, ...) are
    refused, naming `source`, the row and the column. `joint` is for points that will be
    compared: a stack weighted per axis beyond its table's ranges then weights every point
    alike (see `StackedFit.point_weights`).
    """
    src = as_fit(src)
    frame = checked_points(src, points, source)
    if not isinstance(src, FitResult):
        return src.predict_draws(frame, max_draws, joint=joint)
    return fit_draws(src, frame, max_draws, source)


def predictive_draws(
    src: Any,
    points: Points,
    *,
    samples: Sequence[int] | np.ndarray | int | None = None,
    seed: int = 0,
    max_draws: int = 2000,
) -> np.ndarray:
    """New observations at each point (draws, points): the expectation plus the noise."""
    src = as_fit(src)
    rng = np.random.default_rng(seed)
    if not isinstance(src, FitResult):
        frame = checked_points(src, points)
        return src.predictive_draws(frame, samples=samples, rng=rng, max_draws=max_draws)
    require_noise(src)
    mu = predict_draws(src, points, max_draws)
    # few draws (a card, a point fit) are repeated so the noise is well sampled
    reps = max(1, 4000 // mu.shape[0])
    mu = np.repeat(mu, reps, axis=0)
    noise = noise_draws(src, mu.shape[0])
    n = None if samples is None else np.asarray(samples)
    return observe(src.law, mu, noise, n, rng)


def predict_table(
    src: Any,
    points: Points,
    *,
    prob: float = 0.9,
    samples: int | None = None,
    seed: int = 0,
    max_draws: int = 2000,
    source: str = "points",
) -> pl.DataFrame:
    """Mean, median and central interval of the expected response at each point.

    With `samples`, adds the posterior predictive interval (`pred_lower`, `pred_upper`) of a new
    measurement: a score over that many trials for count laws, a draw with the fitted noise
    for normal, Student-t and beta laws.

    `points` is a polars or pandas frame or a dict of columns. The table keeps the columns
    under the names they were given: ``N``, ``L`` and ``C`` (or ``params``, ``seq_len`` and
    ``compression``), or the user's own columns of a fit made with a `column_map`.
    """
    if not 0 < prob < 1:
        raise DataError(f"interval probability must lie in (0, 1), got {prob}")
    given = as_frame(points, source)
    frame = checked_points(src, given, source)
    mu = predict_draws(src, frame, max_draws, source=source)
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    out = frame.with_columns(
        pl.Series("mean", mu.mean(axis=0)),
        pl.Series("median", np.median(mu, axis=0)),
        pl.Series("lower", np.quantile(mu, lo_q, axis=0)),
        pl.Series("upper", np.quantile(mu, hi_q, axis=0)),
    )
    if samples:
        obs = predictive_draws(src, frame, samples=samples, seed=seed, max_draws=max_draws)
        out = out.with_columns(
            pl.Series("pred_lower", np.quantile(obs, lo_q, axis=0)),
            pl.Series("pred_upper", np.quantile(obs, hi_q, axis=0)),
        )
    if isinstance(given, pl.DataFrame):
        back = {name: column for column, name in renames(given.columns, column_maps(src)).items()}
        out = out.rename({k: v for k, v in back.items() if k in out.columns})
    return out


def fitted_spans(src: Any) -> dict[str, tuple[float, float]]:
    """Per covariate (by its symbol: ``N``, ``L``, ``C``, ...) the smallest and largest value
    `src` was fitted on: the spans its file records for a fit or a stack, the study's grid
    less the held-out slice for its published cards (none for a fit saved before fits
    recorded them, or a card made from coefficients alone). The study's axes are there even
    where the law has no term for one (the table held it fixed): a prediction at another
    value of it is the fit's answer at the value it saw."""
    ranges = _fits(as_fit(src))[0].meta.get("ranges") or {}
    columns = _span_columns(src)
    return {
        symbol: (float(ranges[column][0]), float(ranges[column][1]))
        for symbol, column in columns.items()
        if column in ranges
    }


def _span_columns(src: Any) -> dict[str, str]:
    """Symbol -> column of every covariate a span may be recorded for: the laws' own, and the
    study's axes (N, L, C) where no law names their columns."""
    columns = {s: c for f in _fits(as_fit(src)) for s, c in f.law.columns.items()}
    return columns | {s: c for s, c in ALIASES.items() if c not in columns.values()}


def beyond_fitted(src: Any, points: Points, source: str = "points") -> str | None:
    """One line when some of `points` lie outside the covariate spans `src` was fitted on
    (how many, and which covariates, above or below); None when all lie inside or the spans
    are unknown. There a prediction is the law's form carried beyond its data, and its
    interval does not hold the doubt about that form."""
    frame = checked_points(src, as_frame(points, source), source)
    spans = fitted_spans(src)
    columns = _span_columns(src)
    far = np.zeros(frame.height, dtype=bool)
    parts = []
    for symbol, (lo, hi) in spans.items():
        if columns[symbol] not in frame.columns:  # an axis the law has no term for, not given
            continue
        values = frame[columns[symbol]].to_numpy().astype(float)
        low, high = edges((lo, hi))
        for side, mask, edge in (("below", values < low, lo), ("above", values > high, hi)):
            if mask.any():
                far |= mask
                parts.append(f"{symbol} {side} {readable(symbol, edge)} ({int(mask.sum())})")
    if not far.any():
        return None
    return (
        f"{int(far.sum())} of {frame.height} point{'s' if frame.height > 1 else ''} "
        f"{'lies' if far.sum() == 1 else 'lie'} outside what the fit saw: "
        f"{', '.join(parts)}; there the prediction is the law's form carried beyond its data"
    )


__all__ = [
    "SPAN_SLACK",
    "Points",
    "_fits",
    "as_fit",
    "as_frame",
    "beyond_fitted",
    "checked_points",
    "edges",
    "fitted_spans",
    "levels",
    "noise_draws",
    "observe",
    "outside",
    "points_frame",
    "predict_draws",
    "predict_table",
    "predictive_draws",
    "readable",
    "require_noise",
    "thin",
]
