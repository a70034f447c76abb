"""Held-out rows: the slice a fit leaves out (``N=max``), and how well a fit predicts it.

`split_holdout` splits a table on an axis's largest (or smallest, or a given) value;
`holdout_scores` scores a fit, stacked fit or card on the rows held out; `r_squared` is the
fit's R^2 on the rows it saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from scalelaw.data import DataError, canonical
from scalelaw.fits.design import bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.likelihoods import row_blocks, thin
from scalelaw.fits.prediction import predict_draws, predictive_draws
from scalelaw.fits.result import FitResult


def r_squared(result: FitResult, frame: pl.DataFrame) -> float:
    """R^2 of the observed response against the fitted mean (posterior mean or optimum)."""
    design = bind(result.law, frame, result.levels)
    if result.point:
        mu = mean_response(result.law, design, result.estimates())[0]
    else:
        draws = thin(result.draws, 500)
        mu = np.concatenate(
            [
                mean_response(result.law, design.rows(a, b), draws).mean(axis=0)
                for a, b in row_blocks(design.n, 500)
            ]
        )
    assert design.y is not None
    y = design.y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - mu) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def split_holdout(
    frame: pl.DataFrame, spec: str | None, source: str = "<table>"
) -> tuple[pl.DataFrame, pl.DataFrame | None, str | None]:
    """Split off the rows where an axis takes its largest (or smallest, or a given) value."""
    if not spec:
        return frame, None, None
    axis, sep, which = spec.partition("=")
    if not sep:
        raise DataError(f"--holdout '{spec}' is not of the form AXIS=max|min|VALUE")
    column = canonical(axis.strip())
    if column not in frame.columns:
        raise DataError(f"{source}: cannot hold out '{axis}': no column '{column}'")
    which = which.strip()
    values = frame[column]
    if not values.dtype.is_numeric():
        raise DataError(f"{source}: cannot hold out '{axis}': column '{column}' is not numeric")
    target: float
    if which == "max":
        target = float(values.max())  # type: ignore[arg-type]
    elif which == "min":
        target = float(values.min())  # type: ignore[arg-type]
    else:
        try:
            target = float(which)
        except ValueError:
            raise DataError(f"--holdout '{spec}': '{which}' is not max, min or a number") from None
    mask = values == target
    test, train = frame.filter(mask), frame.filter(~mask)
    if test.height == 0 or train.height == 0:
        seen = sorted(values.unique().to_list())
        shown = ", ".join(f"{v:g}" for v in seen[:8]) + (", ..." if len(seen) > 8 else "")
        raise DataError(
            f"{source}: --holdout '{spec}' leaves "
            + ("no rows to test" if test.height == 0 else "no rows to fit")
            + f"; {column} takes {shown}"
        )
    return train, test, f"{axis.strip()}={target:g}"


def _samples(test: pl.DataFrame) -> np.ndarray | None:
    return test["samples"].cast(pl.Int64).to_numpy() if "samples" in test.columns else None


def holdout_scores(src: Any, test: pl.DataFrame, prob: float = 0.9) -> dict[str, Any]:
    """Held-out error, Spearman rho and interval coverage, overall and per task.

    `mae` and `coverage` compare the observed response with the predicted mean and with the
    central `prob` predictive interval of a new measurement (same number of samples per row).
    With a ``truth`` column (simulated tables), `mae_truth` and `coverage_truth` compare the
    true expectation with the predicted mean and the expectation interval.
    """
    law = src.law if hasattr(src, "law") else src.laws[0]
    mu = predict_draws(src, test)
    obs_draws = predictive_draws(src, test, samples=_samples(test), seed=0)
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    pred = mu.mean(axis=0)
    p_lo, p_hi = np.quantile(obs_draws, [lo_q, hi_q], axis=0)
    e_lo, e_hi = np.quantile(mu, [lo_q, hi_q], axis=0)
    observed = test[law.response].to_numpy().astype(float)
    truth = test["truth"].to_numpy().astype(float) if "truth" in test.columns else None
    by = "task" if "task" in test.columns else None
    groups = sorted(set(test[by].to_list())) if by else ["all"]

    def scores(m: np.ndarray) -> dict[str, Any]:
        rho = None
        if m.sum() > 2 and np.ptp(observed[m]) > 0 and np.ptp(pred[m]) > 0:
            rho = float(spearmanr(observed[m], pred[m]).statistic)
        out: dict[str, Any] = {
            "mae": float(np.abs(observed[m] - pred[m]).mean()),
            "coverage": float(((observed[m] >= p_lo[m]) & (observed[m] <= p_hi[m])).mean()),
            "spearman": rho,
            "n": int(m.sum()),
        }
        if truth is not None:
            out["mae_truth"] = float(np.abs(truth[m] - pred[m]).mean())
            out["coverage_truth"] = float(((truth[m] >= e_lo[m]) & (truth[m] <= e_hi[m])).mean())
        return out

    per = {
        str(g): scores((test[by] == g).to_numpy() if by else np.ones(test.height, bool))
        for g in groups
    }
    overall = scores(np.ones(test.height, bool))
    overall.pop("spearman")
    overall.pop("n")
    return {**overall, "prob": prob, "rows": test.height, "per_task": per}
