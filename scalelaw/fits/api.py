"""Fit, validate, predict and simulate: the Python API behind `scalelaw fit/predict/simulate`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import DataError, canonical, load_table, table_hash
from scalelaw.fits.design import Design, bind, group_levels
from scalelaw.fits.evaluate import card_levels, fixed_draws, mean_response
from scalelaw.fits.law import Law
from scalelaw.fits.result import FitResult, package_versions

Source = FitResult | Law

PAPER_MODELS = {
    "Qwen2.5-7B-Instruct": 7.62e9,
    "Qwen2.5-14B-Instruct": 14.77e9,
    "Qwen2.5-32B-Instruct": 32.76e9,
    "Qwen2.5-72B-Instruct": 72.71e9,
}
PAPER_LENGTHS = (16384, 32768, 65536, 131072)
PAPER_COMPRESSIONS = (1.0, 1.43, 1.67, 2.0, 2.5, 3.33, 5.0, 7.5, 10.0, 15.0, 20.0)


class FitWarning(UserWarning):
    """A fit finished but a diagnostic is off (R-hat, divergences, bounds, thin covariates)."""


class StrictFitError(RuntimeError):
    """Raised under ``strict=True`` when a fit's diagnostics are off."""


@dataclass
class FitOptions:
    backend: str = "bayes"
    seed: int = 0
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    loss: str = "huber"
    huber_delta: float | None = None  # 1e-3 on log scale (Epoch AI), 0.05 on scores
    bootstrap: int = 200
    refine: int = 8
    strict: bool = False
    loo: bool = True
    progressbar: bool = False


# --- fitting ---------------------------------------------------------------------------------
def fit(
    data: Any,
    law: Law,
    options: FitOptions | None = None,
    *,
    holdout: str | None = None,
    column_map: Mapping[str, str] | None = None,
    where: Mapping[str, str] | None = None,
) -> FitResult:
    """Fit `law` to a table (path, dataset name or polars frame).

    With `holdout` such as ``"N=max"`` the largest model size is left out of the fit and the
    result carries held-out MAE and Spearman rho per task in ``result.meta["holdout"]``.
    """
    opts = options or FitOptions()
    if law.is_published:
        law = law.with_options(fixed={})
    frame = load_table(
        data,
        require=list(law.columns.values()),
        labels=list(law.groups.values()),
        response=law.response,
        column_map=column_map,
        where=where,
    )
    source = data if isinstance(data, str) else "<table>"
    train, test, holdout_desc = split_holdout(frame, holdout, str(source))
    levels = group_levels(law, train, str(source))
    design = bind(law, train, levels, source=str(source))
    result = _fit_design(law, design, levels, opts)
    if design.fractional:
        result.meta["counts"] = "score x samples (partial credit)"
    result.meta.update(
        {
            "data_hash": table_hash(frame),
            "rows": train.height,
            "seed": opts.seed,
            "versions": package_versions(),
            "source": str(source),
        }
    )
    if column_map:
        result.meta["column_map"] = dict(column_map)
    if where:
        result.meta["where"] = dict(where)
    result.diagnostics["r2"] = r_squared(result, train)
    result.diagnostics["warnings"] = _warnings(result, law, train)
    if test is not None:
        result.meta["holdout"] = {"axis": holdout_desc, **holdout_scores(result, test)}
    for w in result.diagnostics["warnings"]:
        warnings.warn(w, FitWarning, stacklevel=2)
    if opts.strict and result.diagnostics["warnings"]:
        raise StrictFitError("; ".join(result.diagnostics["warnings"]))
    return result


def _fit_design(
    law: Law, design: Design, levels: dict[str, list[str]], opts: FitOptions
) -> FitResult:
    from scalelaw.fits import lsq

    if opts.backend == "lsq":
        delta = opts.huber_delta
        if delta is None:
            delta = 1e-3 if law.transform == "log" else 0.05
        res = lsq.fit(
            law, design, lsq.LsqSettings(opts.loss, delta, opts.refine, opts.bootstrap, opts.seed)
        )
        return FitResult(
            law=law,
            backend="lsq",
            draws=res.draws,
            levels=levels,
            point=res.point,
            diagnostics={
                "cost": res.cost,
                "starts": res.n_starts,
                "at_bounds": res.at_bounds,
                "loss": opts.loss,
                "huber_delta": delta,
                "bootstrap": opts.bootstrap,
            },
        )
    if opts.backend != "bayes":
        raise ValueError(f"unknown backend '{opts.backend}' (choose bayes or lsq)")
    from scalelaw.fits import bayes

    initvals = None
    if bayes_needs_start(law):
        start = lsq.fit(law, design, lsq.LsqSettings(bootstrap=0, seed=opts.seed))
        initvals = {k: float(v[0]) for k, v in start.point.items() if np.ndim(v[0]) == 0}
    settings = bayes.SampleSettings(
        opts.draws, opts.tune, opts.chains, opts.seed, opts.target_accept, opts.progressbar
    )
    idata = bayes.sample(law, design, settings, initvals=initvals)
    result = FitResult(
        law=law,
        backend="bayes",
        draws=bayes.posterior_draws(idata, law),
        levels=levels,
        idata=idata,
    )
    result.diagnostics.update(sampling_diagnostics(idata, law, opts.loo))
    return result


def bayes_needs_start(law: Law) -> bool:
    """Non-linear laws start the sampler at the least-squares optimum."""
    from scalelaw.fits.design import linear_form

    return linear_form(law) is None


def sampling_diagnostics(idata: Any, law: Law, loo: bool = True) -> dict[str, Any]:
    import arviz as az

    names = law.param_names
    rhat = az.rhat(idata, var_names=names)
    ess = az.ess(idata, var_names=names, method="bulk")
    out: dict[str, Any] = {
        "rhat_max": float(max(float(rhat[n].max()) for n in names)),
        "ess_bulk_min": float(min(float(ess[n].min()) for n in names)),
        "divergences": int(np.asarray(idata["sample_stats"]["diverging"].values).sum()),
        "chains": int(idata["posterior"].sizes["chain"]),
        "draws": int(idata["posterior"].sizes["draw"]),
    }
    out["rhat"] = {n: float(rhat[n].max()) for n in names}
    if loo:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                elpd = az.loo(idata, var_name="obs")
            except (ValueError, FloatingPointError) as e:
                # a degenerate fit (every score 0) has constant pointwise log-likelihoods,
                # whose Pareto tails cannot be fitted: report it, keep the fit
                out["loo_error"] = str(e)
                return out
        k = np.asarray(elpd.pareto_k).ravel()
        out["elpd_loo"] = float(elpd.elpd)
        out["elpd_loo_se"] = float(elpd.se)
        out["p_loo"] = float(elpd.p)
        out["pareto_k_max"] = float(np.max(k))
        out["pareto_k_bad"] = int(np.sum(k > 0.7))
    return out


def _warnings(result: FitResult, law: Law, frame: pl.DataFrame) -> list[str]:
    d = result.diagnostics
    out = []
    if d.get("rhat_max", 0.0) > 1.01:
        out.append(f"R-hat {d['rhat_max']:.3f} > 1.01: chains disagree; sample longer")
    if d.get("divergences", 0) > 0:
        out.append(f"{d['divergences']} divergent transitions; raise --target-accept")
    if d.get("at_bounds"):
        out.append(f"parameters at their bounds: {', '.join(d['at_bounds'])}")
    if law.response in frame.columns and frame[law.response].n_unique() == 1:
        out.append(
            f"every row has {law.response} = {frame[law.response][0]:g}: the data cannot tell "
            "how the covariates move it"
        )
    if d.get("loo_error"):
        out.append(f"ELPD-LOO not computed: {d['loo_error']}")
    for name, column in law.columns.items():
        n_levels = frame[column].n_unique()
        if n_levels == 1:
            value = frame[column][0]
            out.append(
                f"covariate {name} ({column}) is {value:g} in every row: the data say nothing "
                f"about how the score moves with {name}, so predictions at other values of "
                f"{name} come from the prior (bayes) or are arbitrary (lsq)"
            )
        elif n_levels < 3:
            out.append(f"covariate {name} has only {n_levels} distinct values (< 3)")
    return out


def r_squared(result: FitResult, frame: pl.DataFrame) -> float:
    """R^2 of the observed response against the fitted mean (posterior mean or optimum)."""
    design = bind(result.law, frame, result.levels)
    mu = mean_response(result.law, design, result.estimates())[0] if result.point else None
    if mu is None:
        mu = mean_response(result.law, design, _thin(result.draws, 500)).mean(axis=0)
    assert design.y is not None
    y = design.y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - mu) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


# --- held-out validation ---------------------------------------------------------------------
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


def holdout_scores(result: FitResult, test: pl.DataFrame) -> dict[str, Any]:
    """Held-out MAE and Spearman rho, overall and per task, of the predicted mean score."""
    from scipy.stats import spearmanr

    table = predict_table(result, test, prob=0.9)
    observed = test[result.law.response].to_numpy()
    pred = table["mean"].to_numpy()
    by = "task" if "task" in test.columns else None
    per: dict[str, dict[str, float | None]] = {}
    groups = sorted(set(test[by].to_list())) if by else ["all"]
    for g in groups:
        m = (test[by] == g).to_numpy() if by else np.ones(test.height, bool)
        rho = None
        if m.sum() > 2 and np.ptp(observed[m]) > 0 and np.ptp(pred[m]) > 0:
            rho = float(spearmanr(observed[m], pred[m]).statistic)
        per[str(g)] = {
            "mae": float(np.abs(observed[m] - pred[m]).mean()),
            "spearman": rho,
            "n": int(m.sum()),
        }
    return {"mae": float(np.abs(observed - pred).mean()), "rows": test.height, "per_task": per}


# --- prediction ------------------------------------------------------------------------------
def _thin(draws: Mapping[str, np.ndarray], max_draws: int) -> dict[str, np.ndarray]:
    n = next(iter(draws.values())).shape[0]
    if n <= max_draws:
        return dict(draws)
    idx = np.linspace(0, n - 1, max_draws).round().astype(int)
    return {k: v[idx] for k, v in draws.items()}


def _source_parts(
    src: Source, max_draws: int
) -> tuple[Law, dict[str, np.ndarray], dict[str, list[str]]]:
    if isinstance(src, FitResult):
        return src.law, _thin(src.draws, max_draws), src.levels
    if not src.is_published:
        raise DataError(f"law '{src.name}' has no fixed coefficients: fit it to data first")
    levels = card_levels(src)
    return src, fixed_draws(src, levels), levels


def levels(src: Source) -> dict[str, list[str]]:
    """Group levels (for example the tasks) a fit saw or a published card knows, by column."""
    if isinstance(src, FitResult):
        return {k: list(v) for k, v in src.levels.items()}
    return card_levels(src)


def _points(law: Law, points: pl.DataFrame | Mapping[str, Any]) -> pl.DataFrame:
    if isinstance(points, pl.DataFrame):
        frame = points
    else:
        frame = pl.DataFrame(
            {
                k: list(v) if isinstance(v, list | tuple | np.ndarray) else [v]
                for k, v in points.items()
            }
        )
    renames = {
        c: canonical(c)
        for c in frame.columns
        if canonical(c) != c and canonical(c) not in frame.columns
    }
    return frame.rename(renames)


def predict_draws(
    src: Source, points: pl.DataFrame | Mapping[str, Any], max_draws: int = 2000
) -> np.ndarray:
    """Expected response at each point for each draw: shape (n_draws, n_points).

    `src` is a `FitResult` or a published law card (one draw).
    """
    law, draws, levels = _source_parts(src, max_draws)
    frame = _points(law, points)
    design = bind(law, frame, levels, observed=False, source="points")
    return mean_response(law, design, draws)


def predict_table(
    src: Source,
    points: pl.DataFrame | Mapping[str, Any],
    *,
    prob: float = 0.9,
    samples: int | None = None,
    seed: int = 0,
    max_draws: int = 2000,
) -> pl.DataFrame:
    """Mean, median and central interval of the expected response at each point.

    With `samples`, adds the posterior predictive interval of the score observed over that many
    trials (binomial counts for accuracy laws).
    """
    if not 0 < prob < 1:
        raise ValueError(f"interval probability must lie in (0, 1), got {prob}")
    law = src.law if isinstance(src, FitResult) else src
    frame = _points(law, points)
    mu = predict_draws(src, frame, max_draws)
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    out = frame.with_columns(
        pl.Series("mean", mu.mean(axis=0)),
        pl.Series("median", np.median(mu, axis=0)),
        pl.Series("lower", np.quantile(mu, lo_q, axis=0)),
        pl.Series("upper", np.quantile(mu, hi_q, axis=0)),
    )
    if samples:
        rng = np.random.default_rng(seed)
        reps = max(1, 4000 // mu.shape[0])
        p = np.clip(np.repeat(mu, reps, axis=0), 0.0, 1.0)
        counts = law.is_count or law.response == "score"
        obs = rng.binomial(samples, p) / samples if counts else p
        out = out.with_columns(
            pl.Series("pred_lower", np.quantile(obs, lo_q, axis=0)),
            pl.Series("pred_upper", np.quantile(obs, hi_q, axis=0)),
        )
    return out


# --- simulation ------------------------------------------------------------------------------
def paper_grid(tasks: Sequence[str]) -> pl.DataFrame:
    """The reference study's grid: 4 Qwen2.5 sizes x 4 lengths x 11 ratios x tasks."""
    rows = [
        {"model": m, "params": n, "seq_len": float(length), "compression": c, "task": t}
        for m, n in PAPER_MODELS.items()
        for length in PAPER_LENGTHS
        for c in PAPER_COMPRESSIONS
        for t in tasks
    ]
    return pl.DataFrame(rows)


def simulate(
    src: Source,
    grid: str | pl.DataFrame = "paper",
    *,
    samples: int = 100,
    seed: int = 0,
    noise: float = 0.02,
) -> pl.DataFrame:
    """Draw a dataset from a law card or a fit (posterior median) on a grid.

    Accuracy laws give binomial counts over `samples` trials; other laws add normal noise of
    standard deviation `noise` on the law's fitting scale.
    """
    law = src.law if isinstance(src, FitResult) else src
    if isinstance(grid, str):
        if grid != "paper":
            from scalelaw.data import read_frame

            frame = read_frame(grid)
        else:
            tasks = card_levels(law).get("task") if law.is_published else None
            if tasks is None and isinstance(src, FitResult):
                tasks = src.levels.get("task")
            frame = paper_grid(tasks or ["all"])
    else:
        frame = grid
    frame = _points(law, frame)
    if isinstance(src, FitResult):
        point = FitResult(law, src.backend, src.estimates(), src.levels)
        mu = predict_draws(point, frame)[0]
    else:
        mu = predict_draws(src, frame)[0]
    rng = np.random.default_rng(seed)
    if law.is_count or law.response == "score":
        correct = rng.binomial(samples, np.clip(mu, 0.0, 1.0))
        out = frame.with_columns(
            pl.Series("correct", correct, dtype=pl.Int64),
            pl.Series("samples", np.full(len(mu), samples), dtype=pl.Int64),
            pl.Series("score", correct / samples),
        )
    else:
        y = (
            np.log(mu) + rng.normal(0, noise, len(mu))
            if law.transform == "log"
            else mu + rng.normal(0, noise, len(mu))
        )
        out = frame.with_columns(
            pl.Series(law.response, np.exp(y) if law.transform == "log" else y)
        )
    if ":" in law.name and "phase" not in out.columns:
        out = out.with_columns(pl.lit(law.name.split(":")[1]).alias("phase"))
    return out


# --- comparison ------------------------------------------------------------------------------
def compare(
    data: Any,
    laws: Sequence[Law],
    options: FitOptions | None = None,
    *,
    holdout: str | None = None,
    where: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Fit several laws to the same data; rank by ELPD-LOO (bayes) and held-out MAE."""
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
            }
            if holdout:
                held = fit(data, law, options, holdout=holdout, where=where)
                row["holdout_mae"] = held.meta["holdout"]["mae"]
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
