"""Stacking several laws fitted to the same table (Yao, Vehtari, Simpson, Gelman 2018).

A stacked fit predicts with the mixture of its laws' posterior predictive distributions, each
weighted by how well it predicts data it did not see. PSIS-LOO scores interpolation (ArviZ's
``compare(method="stacking")``). For extrapolation, the user's real question, the weights come
from each law's log predictive density on a held-out slice (``holdout="N=max"``: fit every law
without the largest model, score the largest model, choose the weights that maximise the
mixture's score); the mixture then uses the fits on all rows. When the laws disagree off the
grid, the mixture's intervals widen instead of inheriting one law's false certainty.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special

from scalelaw.data import load_table, table_hash
from scalelaw.errors import ScalelawError
from scalelaw.fits.fitting import FitOptions, FitWarning, fit
from scalelaw.fits.holdout import split_holdout
from scalelaw.fits.law import Law, unique_names
from scalelaw.fits.likelihoods import (
    _has_log_likelihood,
    _has_pointwise_loo,
    log_likelihood,
    pointwise_loo,
    pointwise_lpd,
)
from scalelaw.fits.points import as_frame
from scalelaw.fits.progress import announce, messages_only
from scalelaw.fits.result import MIN_WEIGHT, FitResult, StackedFit, stacked_from_tree
from scalelaw.fits.text import weights_table


class StackError(ScalelawError):
    """Fits that cannot be stacked (different data, no log-likelihood, one law)."""


#: Iterations the stacking weights' optimiser (BFGS) may take; a handful of laws converge in
#: tens.
STACK_MAXITER = 1000


def stacking_weights(lpd: np.ndarray) -> np.ndarray:
    """Weights on the simplex maximising sum_i log sum_k w_k exp(lpd_ik) (Yao et al. 2018).

    The optimiser stops after `STACK_MAXITER` iterations; when it does, or fails another way
    before its gradient is small, a `FitWarning` says so in one line (the weights it reached
    are returned)."""
    k = lpd.shape[1]
    if k == 1:
        return np.ones(1)
    dens = np.exp(lpd - lpd.max(axis=1, keepdims=True))

    def loss(z: np.ndarray) -> float:
        w = special.softmax(np.append(z, 0.0))
        return -float(np.sum(np.log(dens @ w + 1e-300)))

    best = optimize.minimize(
        loss, np.zeros(k - 1), method="BFGS", options={"maxiter": STACK_MAXITER}
    )
    if not best.success and _stopped_early(best, lpd.shape[0]):
        warnings.warn(
            f"stacking weights: the optimiser stopped after {best.nit} iterations "
            f"({' '.join(str(best.message).split())}) before converging; the weights are "
            "where it stopped",
            FitWarning,
            stacklevel=2,
        )
    return special.softmax(np.append(best.x, 0.0))


def _stopped_early(best: Any, rows: int) -> bool:
    """The cap of iterations, or a stop with a gradient still large. BFGS also reports a
    "precision loss" at an optimum whose objective is flat to rounding: that one is no stop."""
    if best.status == 1 or best.nit >= STACK_MAXITER:
        return True
    jac = np.asarray(getattr(best, "jac", np.zeros(1)), dtype=float)
    # the loss sums over rows: its gradient at an optimum flat to rounding is ~1e-5 per row
    steep = float(np.max(np.abs(jac), initial=0.0)) > 1e-3 * max(rows, 1)
    return steep or not np.all(np.isfinite(jac))


# --- building stacks -------------------------------------------------------------------------
def _check_same_data(fits: Sequence[Any]) -> None:
    if len(fits) < 2:
        raise StackError("stacking needs at least two fits")
    if any(not isinstance(f, FitResult) or f.is_card for f in fits):
        raise StackError("stack fits of a table, not stacked fits or published cards")
    hashes = {f.meta.get("data_hash") for f in fits}
    if len(hashes) > 1 or None in hashes:
        raise StackError(
            "fits were made on different tables (data hashes "
            + ", ".join(str(f.meta.get("data_hash")) for f in fits)
            + "); stack fits of one table"
        )
    holdouts = {bool(f.meta.get("holdout")) for f in fits}
    if True in holdouts:
        raise StackError("stack fits made on all rows, not fits with a held-out slice")
    if len({f.law.response for f in fits}) > 1:
        raise StackError("the fits predict different responses")


def stack(
    fits: Sequence[FitResult],
    *,
    data: Any = None,
    holdout: str | None = None,
    options: Any = None,
    progress: Any = None,
) -> StackedFit:
    """Stack fits of the same table.

    Without `holdout` the weights come from PSIS-LOO (Bayesian fits with log-likelihoods).
    With `holdout` (``"N=max"``, ``"L=max"``, ``"C=max"``), every law is refitted on the table
    (`data`, default: the fits' source) without the held-out slice, with the same options, and
    the weights maximise the held-out log predictive density of the mixture.

    `progress`, if given, is called with a message before each refit ("refitting NAME without
    N=max (2 of 5)"); see `announce` for a callback that counts.
    """
    fits = list(fits)
    _check_same_data(fits)
    names = unique_names([f.law.name for f in fits])
    if holdout is None:
        import arviz as az  # deferred: heavy

        missing = [
            n
            for n, f in zip(names, fits, strict=True)
            if not (_has_log_likelihood(f) or _has_pointwise_loo(f))
        ]
        if missing:
            raise StackError(
                f"PSIS-LOO stacking needs Bayesian fits with log-likelihoods; {', '.join(missing)} "
                "has none (use --holdout, which works for least-squares fits too)"
            )
        if all(_has_log_likelihood(f) for f in fits):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = az.compare(
                    {n: f.idata for n, f in zip(names, fits, strict=True)},
                    method="stacking",
                    round_to="none",  # its default rounds the weights to two decimals
                )
            weights = np.array([float(table.loc[n, "weight"]) for n in names])
            scores = {n: float(table.loc[n, "elpd"]) for n in names}
        else:  # a large table: each row's ELPD-LOO was kept instead of its log-likelihood
            lpd = np.column_stack([pointwise_loo(f) for f in fits])
            weights = stacking_weights(lpd)
            scores = {n: float(lpd[:, i].sum()) for i, n in enumerate(names)}
        method = "PSIS-LOO"
    else:
        source = data if data is not None else fits[0].meta.get("source")
        if source is None or (isinstance(source, str) and source == "<table>"):
            raise StackError(
                "give the table (data=...) to refit the laws without the held-out slice"
            )
        frame = table_of(fits[0], source)
        if table_hash(frame) != fits[0].meta.get("data_hash"):
            raise StackError(
                f"{source if isinstance(source, str) else 'the table given'} is not the table "
                "the fits were made on (its data hash differs)"
            )
        train, test, desc = split_holdout(frame, holdout, str(source))
        assert test is not None
        columns = []
        announce(progress, len(fits))
        for i, (n, f) in enumerate(zip(names, fits, strict=True), 1):
            if progress:
                progress(f"refitting {n} without {holdout} ({i} of {len(fits)})")
            opts = options or options_of(f)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                held = fit(train, f.law_for_refit(), opts)
            columns.append(pointwise_lpd(held, test))
        lpd = np.column_stack(columns)
        weights = stacking_weights(lpd)
        method = f"held-out {desc} log predictive density"
        scores = {n: float(lpd[:, i].sum()) for i, n in enumerate(names)}
    weights = np.clip(weights, 0.0, None)
    weights = weights / weights.sum()
    return StackedFit(
        fits=fits,
        weights=weights,
        method=method,
        meta={
            "data_hash": fits[0].meta.get("data_hash"),
            "source": fits[0].meta.get("source"),
            "laws": names,
            "scores": scores,
            "holdout": holdout,
        },
    )


def options_of(f: FitResult) -> Any:
    """The settings a fit was made with, for refitting it on part of its table."""
    d = f.diagnostics
    if f.backend == "lsq":
        return FitOptions(
            backend="lsq",
            seed=int(f.meta.get("seed", 0) or 0),
            loss=str(d.get("loss", "huber")),
            huber_delta=d.get("huber_delta"),
            bootstrap=int(d.get("bootstrap", 200)),
            loo=False,
        )
    retry = d.get("retry") or {}
    draws = int(d.get("draws", 1000))
    return FitOptions(
        backend="bayes",
        seed=int(f.meta.get("seed", 0) or 0),
        chains=int(d.get("chains", 4)),
        # a retried fit records its longer run; the refit starts where the first run started
        draws=int(retry.get("first_draws", draws)),
        tune=int(retry.get("first_tune", d.get("tune", draws))),
        loo=False,
    )


def table_of(f: FitResult, source: Any) -> Any:
    return load_table(
        as_frame(source),
        require=list(f.law.columns.values()),
        labels=list(f.law.groups.values()),
        response=f.law.response,
        column_map=f.meta.get("column_map"),
        where=f.meta.get("where"),
        replicates=bool(f.meta.get("replicates", False)),
        aggregate=f.meta.get("aggregate"),
    )


def stack_laws(
    data: Any,
    laws: Sequence[Law],
    options: Any = None,
    *,
    holdout: str | None = None,
    where: Any = None,
    progress: Any = None,
) -> StackedFit:
    """Fit each law to all rows of `data`, then stack them (see `stack`). `progress` is
    called with a message before each fit and each refit ("fitting NAME (1 of 3)")."""
    data = as_frame(data)
    fits = []
    announce(progress, len(laws) * (2 if holdout else 1))
    for i, law in enumerate(laws, 1):
        if progress:
            progress(f"fitting {law.name} ({i} of {len(laws)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            fits.append(fit(data, law, options, where=where))
    frame = data if not isinstance(data, str | Path) else None
    return stack(
        fits,
        data=frame if frame is not None else data,
        holdout=holdout,
        options=options,
        progress=messages_only(progress),
    )


__all__ = [
    "MIN_WEIGHT",
    "StackError",
    "StackedFit",
    "_has_log_likelihood",
    "_has_pointwise_loo",
    "announce",
    "log_likelihood",
    "messages_only",
    "options_of",
    "pointwise_loo",
    "pointwise_lpd",
    "stack",
    "stack_laws",
    "stacked_from_tree",
    "stacking_weights",
    "table_of",
    "weights_table",
]
