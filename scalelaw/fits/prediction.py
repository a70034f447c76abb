"""Prediction from a fit, a stacked fit or a published card: expectations and new observations.

`predict_draws` gives the expected response per parameter draw. `predictive_draws` adds the
likelihood's noise, so its intervals are where a new measurement would fall: binomial or
beta-binomial counts over a number of samples, beta scores with the fitted precision, and
normal or Student-t noise with the fitted scale on the law's fitting scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import DataError, canonical, validate_points
from scalelaw.fits import lack_of_fit
from scalelaw.fits.design import bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law
from scalelaw.fits.result import FitResult

Points = pl.DataFrame | Mapping[str, Any]


def thin(draws: Mapping[str, np.ndarray], max_draws: int) -> dict[str, np.ndarray]:
    """At most `max_draws` draws, evenly spaced (deterministic)."""
    n = next(iter(draws.values())).shape[0]
    if n <= max_draws:
        return dict(draws)
    idx = np.linspace(0, n - 1, max_draws).round().astype(int)
    return {k: v[idx] for k, v in draws.items()}


def as_fit(src: Any) -> Any:
    """Fits, stacked fits and cards (fits with one draw) pass; a bare law is refused."""
    if isinstance(src, Law):
        raise DataError(
            f"law '{src.name}' has no coefficients: fit it to data first, or use a published card"
        )
    return src


def levels(src: Any) -> dict[str, list[str]]:
    """Group levels (for example the tasks) a fit saw or a published card knows, by column."""
    src = as_fit(src)
    return {k: list(v) for k, v in src.levels.items()}


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


def _fits(src: Any) -> list[FitResult]:
    """The fits behind a source: itself, or each law of a stacked fit."""
    return [src] if isinstance(src, FitResult) else list(getattr(src, "fits", []))


def checked_points(src: Any, points: Points, source: str = "points") -> pl.DataFrame:
    """Points as a frame, checked by the rules of the table's rows (`data.validate_points`).

    A negative size or a compression below 1 would otherwise give a number (or NaN) that
    looks like a prediction.
    """
    fits = _fits(as_fit(src))
    covariates = [c for f in fits for c in f.law.columns.values()]
    labels = [c for f in fits for c in f.law.groups.values()]
    return validate_points(points_frame(points, source), covariates, labels, source=source)


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
    design = bind(src.law, frame, src.levels, observed=False, source=source)
    return mean_response(src.law, design, thin(src.draws, max_draws))


def noise_draws(result: FitResult, n: int) -> dict[str, np.ndarray]:
    """The likelihood's noise parameters for `n` draws (thinned like the law's draws)."""
    out = {}
    for k, v in result.noise.items():
        v = np.asarray(v, float).ravel()
        idx = np.linspace(0, len(v) - 1, n).round().astype(int) if len(v) > 1 else np.zeros(n, int)
        out[k] = v[idx]
    return out


def observe(
    law: Law,
    mu: np.ndarray,
    noise: Mapping[str, np.ndarray],
    samples: np.ndarray | int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """One new observation per draw and point, given expectations `mu` (draws, points)."""

    def column(name: str) -> np.ndarray:
        return np.asarray(noise[name], float)[:, None]

    if law.is_count:
        p = np.clip(mu, 0.0, 1.0)
        n = np.broadcast_to(np.asarray(samples if samples is not None else 100), p.shape)
        if law.likelihood == "beta_binomial" and "kappa" in noise:
            kappa = column("kappa")
            q = np.clip(p, 1e-9, 1 - 1e-9)
            p = rng.beta(q * kappa, (1 - q) * kappa)
        if law.likelihood == lack_of_fit.NAME and "tau" in noise:
            theta = lack_of_fit.logit_of(p, "identity")
            p = lack_of_fit.draw_probability(theta, column("tau"), rng, p.shape)
        return rng.binomial(n.astype(np.int64), p) / n
    if law.likelihood == "beta" and "kappa" in noise:
        q = np.clip(mu, 1e-9, 1 - 1e-9)
        kappa = column("kappa")
        return rng.beta(q * kappa, (1 - q) * kappa)
    if law.likelihood in ("normal", "student_t") and "sigma" in noise:
        with np.errstate(divide="ignore", invalid="ignore"):
            loc = np.log(mu) if law.transform == "log" else mu
        sigma = column("sigma")
        if law.likelihood == "student_t" and "nu" in noise:
            eps = rng.standard_t(column("nu"), size=mu.shape)
        else:
            eps = rng.standard_normal(mu.shape)
        y = loc + sigma * eps
        return np.exp(y) if law.transform == "log" else y
    if law.response == "score" and samples is not None:
        p = np.clip(mu, 0.0, 1.0)
        return rng.binomial(int(np.max(samples)), p) / np.max(samples)
    return mu


def require_noise(fit: FitResult) -> None:
    """Normal, Student-t and beta laws need a fitted noise for predictive intervals."""
    if fit.law.likelihood not in ("normal", "student_t", "beta") or fit.noise:
        return
    why = (
        "a published card has coefficients but no noise scale"
        if fit.is_card
        else "this fit stores no noise scale (it was made by an older scalelaw): refit it"
    )
    raise DataError(f"{fit.law.name}: no predictive interval: {why}")


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
        return src.predictive_draws(points, samples=samples, rng=rng, max_draws=max_draws)
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
    """
    if not 0 < prob < 1:
        raise DataError(f"interval probability must lie in (0, 1), got {prob}")
    frame = checked_points(src, points, source)
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
    return out
