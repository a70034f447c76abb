"""Vectorised evaluation of a law over many parameter draws and many points at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from scalelaw.fits.design import Design
from scalelaw.fits.law import Law, inverse_link


def linear_predictor(law: Law, design: Design, draws: Mapping[str, np.ndarray]) -> np.ndarray:
    """eta with shape (n_draws, n_points); scalar draws have shape (S,), group draws (S, G)."""
    env: dict[str, np.ndarray] = {k: v[None, :] for k, v in design.covariates.items()}
    n_draws = 1
    for name in law.param_names:
        value = np.asarray(draws[name], dtype=float)
        n_draws = max(n_draws, value.shape[0])
        if name in design.groups:
            g = design.groups[name]
            env[f"{name}[{g.column}]"] = value[:, g.index]
        else:
            env[name] = value[:, None]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        eta = np.asarray(law.expr.evaluate(env), dtype=float)
    return np.broadcast_to(eta, (n_draws, design.n))


def mean_response(law: Law, design: Design, draws: Mapping[str, np.ndarray]) -> np.ndarray:
    """Expected response (score or loss) per draw and point: shape (n_draws, n_points)."""
    with np.errstate(over="ignore"):
        return np.asarray(inverse_link(law.link, linear_predictor(law, design, draws)))


def card_draws(
    law: Law, values: Mapping[str, Any], levels: Mapping[str, list[str]]
) -> dict[str, np.ndarray]:
    """Fixed coefficients as a single draw, group values ordered by `levels`."""
    out: dict[str, np.ndarray] = {}
    for name in law.param_names:
        value = values[name]
        if isinstance(value, Mapping):
            column = law.groups[name]
            out[name] = np.array([[float(value[lv]) for lv in levels[column]]])
        else:
            out[name] = np.array([float(value)])
    return out


def card_levels(law: Law, values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Group levels that fixed coefficients name."""
    return {
        column: list(values[param])
        for param, column in law.groups.items()
        if isinstance(values.get(param), Mapping)
    }


def insensitive(law: Law, design: Design, point: Mapping[str, np.ndarray]) -> list[str]:
    """Parameters that do not move the mean on any row: not identified by the table.

    A slope whose covariate never varies (gamma when every row has C = 1) is the typical case:
    predictions at the table's own values do not depend on it, so it is a warning, not a
    failure to converge; predictions elsewhere rest on its prior. Checked by a small step of
    each parameter (a group's levels together) at `point` (one draw).
    """
    base = mean_response(law, design, point)
    out = []
    for name in law.param_names:
        value = np.asarray(point[name], dtype=float)
        step = 1e-3 * (1.0 + np.abs(value))
        moved = mean_response(law, design, {**point, name: value + step})
        with np.errstate(invalid="ignore"):
            if np.all(np.abs(moved - base) <= 1e-12 * (1.0 + np.abs(base))):
                out.append(name)
    return out
