"""Validation: goodness of fit, held-out axes, and comparing laws on the same table.

Extrapolation is validated the way the reference study did it: hold out the largest (or
smallest) value of an axis, fit on the rest, and score the held-out slice, here by error,
rank correlation and the coverage of the nominal predictive interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import DataError, canonical
from scalelaw.fits.design import bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law
from scalelaw.fits.prediction import predict_draws, predictive_draws, thin
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


#: a (draws x rows) array a block of rows may take; evaluating a law makes a few of them
BLOCK_BYTES = 2e8


def row_blocks(rows: int, draws: int, budget: float = BLOCK_BYTES) -> list[tuple[int, int]]:
    """(start, stop) of blocks of rows whose (draws x rows) float arrays stay within budget."""
    step = max(1, int(budget / (8.0 * max(draws, 1))))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)] or [(0, 0)]


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
        raise DataError(f"--holdout '{spec}' leaves no rows to fit or none to test")
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
    from scipy.stats import spearmanr

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


def compare(
    data: Any,
    laws: Sequence[Law],
    options: Any = None,
    *,
    holdout: str | None = None,
    where: Mapping[str, str] | Sequence[Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Fit several laws to the same data; rank by ELPD-LOO (bayes) and held-out error."""
    from scalelaw.fits.fitting import FitWarning, fit

    rows = []
    for law in laws:
        if progress:
            progress(law.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            res = fit(data, law, options, where=where)
            row: dict[str, Any] = {
                "law": law.name,
                "params": len(law.param_names),
                "r2": res.diagnostics.get("r2"),
                "elpd_loo": res.diagnostics.get("elpd_loo"),
                "elpd_se": res.diagnostics.get("elpd_loo_se"),
                "pareto_k_bad": res.diagnostics.get("pareto_k_bad"),
                "rhat_max": res.diagnostics.get("rhat_max"),
                "converged": res.converged,
            }
            if holdout:
                held = fit(data, law, options, holdout=holdout, where=where)
                row["holdout_mae"] = held.meta["holdout"]["mae"]
                row["holdout_coverage"] = held.meta["holdout"]["coverage"]
        rows.append(row)
    table = pl.DataFrame(rows)
    key = "elpd_loo" if table["elpd_loo"].null_count() == 0 else None
    if key:
        table = table.sort(key, descending=True).with_columns(
            (pl.col(key) - pl.col(key).max()).alias("elpd_diff")
        )
    elif "holdout_mae" in table.columns:
        table = table.sort("holdout_mae")
    return table
