"""Validation: goodness of fit, held-out axes, and comparing laws on the same table.

Extrapolation is validated the way the reference study did it: hold out the largest (or
smallest) value of an axis, fit on the rest, and score the held-out slice, here by error,
rank correlation and the coverage of the nominal predictive interval.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from scalelaw.fits.bayes import ignore_arviz_nan
from scalelaw.fits.fitting import FitWarning, fit
from scalelaw.fits.holdout import holdout_scores, r_squared, split_holdout
from scalelaw.fits.law import Law, unique_names
from scalelaw.fits.likelihoods import (
    BLOCK_BYTES,
    POINTWISE_LOO,
    _has_log_likelihood,
    _has_pointwise_loo,
    row_blocks,
)
from scalelaw.fits.result import MIN_WEIGHT, FitResult

#: What ArviZ's `compare` gives, under the names `compare` prints them (its `diag_elpd`, the
#: count of rows whose Pareto k is above ArviZ's threshold, becomes `warning`).
ARVIZ_COLUMNS = {
    "rank": "rank",
    "elpd": "elpd_loo",
    "se": "se",
    "elpd_diff": "elpd_diff",
    "dse": "dse",
    "p": "p_loo",
    "weight": "weight",
    "diag_elpd": "warning",
}


def compare(
    data: Any,
    laws: Sequence[Law],
    options: Any = None,
    *,
    holdout: str | None = None,
    where: Mapping[str, str] | Sequence[Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Fit several laws to the same data and rank them.

    Bayesian fits are ranked by `arviz.compare` (PSIS-LOO, stacking weights): columns law,
    rank (0 is the best), elpd_loo, se, elpd_diff (to the best), dse (the standard error of
    that difference), p_loo, weight and warning (rows with Pareto k above ArviZ's threshold,
    where PSIS-LOO is unreliable), then params, r2, holdout_mae and holdout_coverage (with
    `holdout`), rhat_max and converged. Least-squares fits have no ELPD: the table has no ELPD
    columns and is ranked by held-out MAE (with `holdout`). `compare_notes(table)` says in
    words what the table leaves to the reader (near-tie weights, no ELPD).
    """
    names = unique_names([law.name for law in laws])
    rows, fits = [], {}
    for name, law in zip(names, laws, strict=True):
        if progress:
            progress(law.name)
        with warnings.catch_warnings():  # the fit's own R-hat NaN is filtered where it arises
            warnings.simplefilter("ignore", FitWarning)
            res = fit(data, law, options, where=where)
            row: dict[str, Any] = {
                "law": name,
                "params": len(law.param_names),
                "r2": res.diagnostics.get("r2"),
            }
            if holdout:
                held = fit(data, law, options, holdout=holdout, where=where)
                row["holdout_mae"] = held.meta["holdout"]["mae"]
                row["holdout_coverage"] = held.meta["holdout"]["coverage"]
        row["rhat_max"] = res.diagnostics.get("rhat_max")
        row["converged"] = res.converged
        rows.append(row)
        fits[name] = res
    table = pl.DataFrame(rows)
    if table["rhat_max"].null_count() == table.height:
        table = table.drop("rhat_max")  # least squares: no chains
    if any(f.backend == "lsq" for f in fits.values()):
        return table.sort("holdout_mae") if "holdout_mae" in table.columns else table
    return _with_elpd(table, fits)


def _elpd_input(f: FitResult) -> Any:
    """What `arviz.compare` takes for a fit: its DataTree, or (a table too large to keep the
    log-likelihood) ArviZ's result built from the PSIS-LOO that the fit ran in blocks of rows."""
    import arviz as az  # deferred: heavy
    import xarray as xr  # deferred: heavy

    assert f.idata is not None
    if "log_likelihood" in f.idata.children:
        return f.idata
    d, kept = f.diagnostics, f.idata[POINTWISE_LOO]
    post = f.idata["posterior"]
    samples = int(post.sizes["chain"] * post.sizes["draw"])
    good_k = min(1 - 1 / np.log10(samples), 0.7) if samples > 1 else 0.7  # ArviZ's threshold
    pareto_k = xr.DataArray(np.asarray(kept["pareto_k"].values, dtype=float), dims="row")
    return az.ELPDDataLOO(
        elpd=float(d["elpd_loo"]),
        se=float(d["elpd_loo_se"]),
        p=float(d["p_loo"]),
        n_samples=samples,
        n_data_points=int(pareto_k.size),
        scale="log",
        warning=bool((pareto_k > good_k).any()),
        good_k=good_k,
        elpd_i=xr.DataArray(np.asarray(kept["elpd_i"].values, dtype=float), dims="row"),
        pareto_k=pareto_k,
    )


def _has_elpd(f: FitResult) -> bool:
    return _has_log_likelihood(f) or (_has_pointwise_loo(f) and "elpd_loo" in f.diagnostics)


def _pareto_words(diag: Any) -> str:
    """ArviZ's ``3 k̂ > 0.66`` in words."""
    if not isinstance(diag, str):  # pandas' missing string
        return ""
    found = re.fullmatch(r"\s*(\d+)\s*k\S*\s*>\s*(\S+)\s*", diag)
    if not found:
        return diag
    n = int(found[1])
    return f"Pareto k > {found[2]}: {n} row{'s' if n != 1 else ''}"


def _with_elpd(table: pl.DataFrame, fits: Mapping[str, FitResult]) -> pl.DataFrame:
    """The ELPD columns of `arviz.compare` in front of the table, ranked as ArviZ ranks."""
    import arviz as az  # deferred: heavy

    scored = {n: f for n, f in fits.items() if _has_elpd(f)}
    missing = [n for n in fits if n not in scored]
    columns = list(ARVIZ_COLUMNS.values())
    elpd = pl.DataFrame(
        schema={
            "law": pl.String,
            **dict.fromkeys(columns, pl.Float64),
            "rank": pl.Int64,
            "warning": pl.String,
        }
    )
    if scored:
        with warnings.catch_warnings():
            # the Pareto k warning is the table's `warning` column (ArviZ's diag_elpd)
            warnings.filterwarnings(
                "ignore",
                "Estimated shape parameter of Pareto distribution",
                UserWarning,
                module=r"arviz_stats\.",
            )
            ignore_arviz_nan()
            ranked = az.compare(
                {n: _elpd_input(f) for n, f in scored.items()}, var_name="obs", round_to="none"
            )
        elpd = pl.DataFrame(
            {
                "law": [str(n) for n in ranked.index],
                **{
                    ours: [
                        _pareto_words(v) if ours == "warning" else float(v)
                        for v in ranked[theirs].tolist()
                    ]
                    for theirs, ours in ARVIZ_COLUMNS.items()
                },
            }
        ).with_columns(pl.col("rank").cast(pl.Int64))
    if missing:
        why = [
            "no ELPD-LOO: "
            + " ".join(str(fits[n].diagnostics.get("loo_error") or "not computed").split())
            for n in missing
        ]
        elpd = pl.concat(
            [elpd, pl.DataFrame({"law": missing, "warning": why})], how="diagonal_relaxed"
        )
    joined = elpd.join(table, on="law", how="left", maintain_order="left")
    return joined.select(["law", *columns, *[c for c in table.columns if c != "law"]])


def compare_notes(table: pl.DataFrame) -> list[str]:
    """What the `compare` table leaves to the reader, one line each: near-tie stacking weights
    (a law weighted below 1% whose ELPD difference to the best is within two of its standard
    errors, or under 4 when that is 0), and no ELPD for least-squares fits."""
    if "elpd_loo" not in table.columns:
        return [
            "least squares: no ELPD-LOO, standard errors or stacking weights (they need a "
            "posterior; fit with --backend bayes)"
            + ("; ranked by held-out MAE" if "holdout_mae" in table.columns else "")
        ]
    ties = []
    best = table.filter(pl.col("rank") == 0)["law"].to_list()
    for row in table.filter(pl.col("weight") < MIN_WEIGHT).iter_rows(named=True):
        diff, dse = row["elpd_diff"], row["dse"]
        if row["rank"] == 0 or not (abs(diff) < 2 * dse or (dse == 0 and abs(diff) < 4)):
            continue
        within = f"within 2 x its standard error, dse {dse:.2f}" if dse > 0 else "under 4, dse 0"
        ties.append(
            f"{row['law']} has weight {row['weight']:.2g} yet predicts about as well as "
            f"{best[0]} (elpd_diff {diff:.2f}, {within})"
        )
    if not ties:
        return []
    return [
        f"near tie: {'; '.join(ties)}. Stacking weights are not probabilities of being right: "
        "of laws that predict alike, stacking keeps the one that adds most to the mixture and "
        "may give the other almost nothing."
    ]


__all__ = [
    "BLOCK_BYTES",
    "compare",
    "compare_notes",
    "holdout_scores",
    "r_squared",
    "row_blocks",
    "split_holdout",
]
