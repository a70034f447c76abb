"""Where a fit predicts: points as a frame checked by the table's rules, and one fit's
expected response there (what `prediction` and a stacked fit's mixture both draw from)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import DataError, canonical, validate_points
from scalelaw.fits.design import bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law
from scalelaw.fits.likelihoods import thin

Points = pl.DataFrame | Mapping[str, Any]


def as_fit(src: Any) -> Any:
    """Fits, stacked fits and cards (fits with one draw) pass; a bare law is refused."""
    if isinstance(src, Law):
        raise DataError(
            f"law '{src.name}' has no coefficients: fit it to data first, or use a published card"
        )
    return src


def points_frame(points: Points, source: str = "points") -> pl.DataFrame:
    """Points as a frame with canonical column names (N -> params, ...).

    Both a short name and its long one (`N` and `params`) are refused, as in a table.
    """
    if isinstance(points, pl.DataFrame):
        frame = points
    else:
        frame = pl.DataFrame(
            {
                k: list(v) if isinstance(v, list | tuple | np.ndarray) else [v]
                for k, v in points.items()
            }
        )
    for column in frame.columns:
        if canonical(column) != column and canonical(column) in frame.columns:
            raise DataError(
                f"{source}: columns '{column}' and '{canonical(column)}' both give "
                f"{canonical(column)}; keep one of them"
            )
    return frame.rename({c: canonical(c) for c in frame.columns if canonical(c) != c})


def _fits(src: Any) -> list[Any]:
    """The fits behind a source: each law of a stacked fit, or the fit (or card) itself."""
    fits = getattr(src, "fits", None)
    if fits is not None:
        return list(fits)
    return [src] if hasattr(src, "draws") and hasattr(src, "law") else []


def checked_points(src: Any, points: Points, source: str = "points") -> pl.DataFrame:
    """Points as a frame, checked by the rules of the table's rows (`data.validate_points`).

    A negative size or a compression below 1 would otherwise give a number (or NaN) that
    looks like a prediction.
    """
    fits = _fits(as_fit(src))
    covariates = [c for f in fits for c in f.law.columns.values()]
    labels = [c for f in fits for c in f.law.groups.values()]
    return validate_points(points_frame(points, source), covariates, labels, source=source)


def fit_draws(fit: Any, frame: pl.DataFrame, max_draws: int, source: str = "points") -> np.ndarray:
    """Expected response of one fit (or card) at checked points: (n_draws, n_points)."""
    design = bind(fit.law, frame, fit.levels, observed=False, source=source)
    return mean_response(fit.law, design, thin(fit.draws, max_draws))


def expected_draws(fit: Any, points: Points, max_draws: int) -> np.ndarray:
    """`fit_draws` at points not yet checked (checked against this fit's own columns)."""
    return fit_draws(fit, checked_points(fit, points), max_draws)
