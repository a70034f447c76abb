"""Where a fit predicts: points as a frame checked by the table's rules, and one fit's
expected response there (what `prediction` and a stacked fit's mixture both draw from)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import DataError, canonical, validate_points
from scalelaw.fits.design import bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law
from scalelaw.fits.likelihoods import thin

#: Points as the user has them: a polars or pandas frame, or a dict of columns (or of one
#: value each).
Points = pl.DataFrame | Mapping[str, Any] | Any


def as_fit(src: Any) -> Any:
    """Fits, stacked fits and cards (fits with one draw) pass; a bare law is refused."""
    if isinstance(src, Law):
        raise DataError(
            f"law '{src.name}' has no coefficients: fit it to data first, or use a published card"
        )
    return src


def _is_pandas(data: Any) -> bool:
    # pandas is not a dependency of its own: recognised by its module, read by polars
    return type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns")


def _is_column(value: Any) -> bool:
    """A sequence of values (list, array, polars or pandas series), not one value (a number,
    a task name)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return False
    return not (isinstance(value, np.ndarray) and value.ndim == 0)


def _column(value: Any) -> list[Any]:
    """A dict value as a column: a sequence's values, or the one value."""
    if _is_column(value):
        return list(value)
    return [value.item() if isinstance(value, np.ndarray) else value]


def as_frame(data: Any, source: str = "table") -> Any:
    """A polars frame from a pandas frame (its index left out) or a dict of columns; a polars
    frame, a path or a dataset name is returned as it is."""
    if isinstance(data, pl.DataFrame):
        return data
    if _is_pandas(data):
        try:
            return pl.from_pandas(data)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"{source}: cannot read the pandas frame: {exc}") from None
    if isinstance(data, Mapping):
        columns = {str(k): _column(v) for k, v in data.items()}
        # one value beside columns of n values (`"task": "SQuAD"`) holds for every row
        lengths = {len(v) for k, v in columns.items() if _is_column(data[k])}
        if len(lengths) == 1:
            n = lengths.pop()
            columns = {k: v * n if not _is_column(data[k]) else v for k, v in columns.items()}
        try:
            return pl.DataFrame(columns)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"{source}: cannot read the columns given: {exc}") from None
    return data


def renames(columns: Sequence[str], column_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's column names that are read as another (canonical) one: a column the fit's
    `column_map` (covariate -> column) names, or a short name (`N` -> `params`)."""
    mapped = {column: canonical(target) for target, column in (column_map or {}).items()}
    out = {}
    for column in columns:
        name = mapped.get(column, canonical(column))
        if name != column:
            out[column] = name
    return out


def points_frame(
    points: Points, source: str = "points", column_map: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """Points as a frame with canonical column names (N -> params, and the columns of the
    fit's `column_map` to what they were mapped to).

    Both a short name and its long one (`N` and `params`) are refused, as in a table.
    """
    frame = as_frame(points, source)
    if not isinstance(frame, pl.DataFrame):
        raise DataError(
            f"{source}: give points as a polars or pandas frame or a dict of columns, "
            f"not {type(points).__name__}"
        )
    rename = renames(frame.columns, column_map)
    seen: dict[str, str] = {}
    for column in frame.columns:
        name = rename.get(column, column)
        if name in seen:
            raise DataError(
                f"{source}: columns '{seen[name]}' and '{column}' both give {name}; "
                "keep one of them"
            )
        seen[name] = column
    return frame.rename(rename)


def column_maps(src: Any) -> dict[str, str]:
    """The column maps (covariate -> column) the fits behind `src` were made with."""
    out: dict[str, str] = {}
    for f in _fits(src):
        out.update(getattr(f, "meta", {}).get("column_map") or {})
    return out


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
    frame = points_frame(points, source, column_maps(src))
    return validate_points(frame, covariates, labels, source=source)


def fit_draws(fit: Any, frame: pl.DataFrame, max_draws: int, source: str = "points") -> np.ndarray:
    """Expected response of one fit (or card) at checked points: (n_draws, n_points)."""
    design = bind(fit.law, frame, fit.levels, observed=False, source=source)
    return mean_response(fit.law, design, thin(fit.draws, max_draws))


def expected_draws(fit: Any, points: Points, max_draws: int) -> np.ndarray:
    """`fit_draws` at points not yet checked (checked against this fit's own columns)."""
    return fit_draws(fit, checked_points(fit, points), max_draws)
