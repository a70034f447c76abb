"""Figures of fits: posterior densities and traces (ArviZ), predictive checks, fitted curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from scalelaw.data import load_table
from scalelaw.fits.prediction import predict_draws
from scalelaw.fits.result import FitResult

KINDS = ("posterior", "trace", "ppc", "fit")
AXIS_LABELS = {
    "N": "model size N (parameters)",
    "L": "sequence length L (tokens)",
    "C": "compression ratio C (1 = dense)",
    "D": "training tokens D",
}


def fitted_table(result: FitResult, data: str | None = None) -> pl.DataFrame:
    """The table a fit was made from (or `data`), with the fit's filters and column map."""
    first = result.fits[0] if hasattr(result, "fits") else result
    source = data or first.meta.get("source")
    if not source or source == "<table>":
        raise ValueError("this fit was made from an in-memory table: pass the data with --data")
    law = result.law
    return load_table(
        source,
        require=list(law.columns.values()),
        labels=list(law.groups.values()),
        response=law.response,
        column_map=first.meta.get("column_map"),
        where=first.meta.get("where"),
        replicates=bool(first.meta.get("replicates", False)),
        aggregate=first.meta.get("aggregate"),
    )


def fit_label(result: Any) -> str:
    """A fit's law name, or a stacked fit's laws with their weights."""
    if hasattr(result, "fits"):
        parts = [f"{f.law.name} {w:.2f}" for f, w in zip(result.fits, result.weights, strict=True)]
        return "stack of " + ", ".join(parts)
    return str(result.law.name)


def plot(result: FitResult, kind: str, out: str | Path, *, data: str | None = None) -> Path:
    """Write one figure of `kind` for `result` to `out` (PNG)."""
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind '{kind}' (choose {', '.join(KINDS)})")
    if hasattr(result, "fits") and kind != "fit":
        raise ValueError(
            "a stacked fit draws --kind fit only; plot each law's own fit file for the others"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("posterior", "trace"):
        _arviz_plot(result, kind, out)
    elif kind == "ppc":
        _ppc(result, fitted_table(result, data), out)
    else:
        _fit_curves(result, fitted_table(result, data), out)
    return out


def _scalar_names(result: FitResult) -> list[str]:
    return [n for n in result.law.param_names if result.draws[n].ndim == 1]


def _arviz_plot(result: FitResult, kind: str, out: Path) -> None:
    import arviz as az

    if result.idata is None:
        raise ValueError("this fit holds no sampler output to plot")
    names = _scalar_names(result)
    if kind == "posterior":
        pc = az.plot_dist(result.idata, var_names=names, backend="matplotlib")
    else:
        if "sample_stats" not in result.idata.children:
            raise ValueError("trace plots need MCMC chains: fit with --backend bayes")
        pc = az.plot_trace_dist(result.idata, var_names=names, backend="matplotlib")
    pc.savefig(out, dpi=110)
    plt.close("all")


def _ppc(result: FitResult, frame: pl.DataFrame, out: Path, n_draws: int = 200) -> None:
    """Observed score distribution against replicated datasets from the posterior."""
    import arviz as az

    law = result.law
    mu = predict_draws(result, frame, max_draws=n_draws)
    rng = np.random.default_rng(int(result.meta.get("seed", 0)))
    y = frame[law.response].to_numpy()
    if "samples" in frame.columns and (law.is_count or law.response == "score"):
        n = frame["samples"].to_numpy().astype(int)
        reps = rng.binomial(n[None, :], np.clip(mu, 0, 1)) / n[None, :]
    else:
        spread = float(np.std(y - mu.mean(axis=0)))
        reps = mu + rng.normal(0, spread, mu.shape)
    tree = az.from_dict(
        {
            "posterior_predictive": {law.response: reps[None, ...]},
            "observed_data": {law.response: y},
        },
        dims={law.response: ["row"]},
    )
    pc = az.plot_ppc_dist(tree, backend="matplotlib", num_samples=min(50, reps.shape[0]))
    pc.savefig(out, dpi=110)
    plt.close("all")


def _fit_curves(result: FitResult, frame: pl.DataFrame, out: Path, prob: float = 0.9) -> None:
    """Data and fitted mean with its band, one panel per task, against the last covariate."""
    law = result.law
    covs = list(law.covariates)
    cols = law.columns
    x_name = covs[-1]
    color_name = covs[0] if len(covs) > 1 else None
    few_levels = all(frame[cols[c]].n_unique() <= 12 for c in covs)
    if not few_levels:
        _observed_vs_predicted(result, frame, out, prob)
        return
    fixed: dict[str, float] = {}
    for c in covs[1:-1]:
        counts = frame[cols[c]].value_counts().sort(["count", cols[c]], descending=True)
        fixed[c] = float(counts[cols[c]][0])
    for c, v in fixed.items():
        frame = frame.filter(pl.col(cols[c]) == v)
    tasks = sorted(frame["task"].unique().to_list()) if "task" in frame.columns else [None]
    ncols = min(3, len(tasks))
    nrows = int(np.ceil(len(tasks) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, sharey=True
    )
    colors = sorted(frame[cols[color_name]].unique().to_list()) if color_name else [None]
    cmap = plt.get_cmap("viridis", max(2, len(colors)))
    xs = np.sort(frame[cols[x_name]].unique().to_numpy())
    grid_x = (
        np.geomspace(xs.min(), xs.max(), 60)
        if xs.min() > 0
        else np.linspace(xs.min(), xs.max(), 60)
    )
    for ax, task in zip(axes.flat, tasks, strict=False):
        sub = frame if task is None else frame.filter(pl.col("task") == task)
        for i, cval in enumerate(colors):
            part = sub if cval is None else sub.filter(pl.col(cols[color_name]) == cval)  # type: ignore[index]
            points: dict[str, Any] = {cols[x_name]: grid_x}
            for c, v in fixed.items():
                points[cols[c]] = np.full_like(grid_x, v)
            if color_name:
                points[cols[color_name]] = np.full_like(grid_x, cval)
            if task is not None:
                points["task"] = [task] * len(grid_x)
            mu = predict_draws(result, pl.DataFrame(points), max_draws=1000)
            lo, hi = np.quantile(mu, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
            label = None if cval is None else f"{color_name}={cval:.3g}"
            ax.fill_between(grid_x, lo, hi, color=cmap(i), alpha=0.25, linewidth=0)
            ax.plot(grid_x, mu.mean(axis=0), color=cmap(i), label=label)
            ax.scatter(
                part[cols[x_name]],
                part[law.response],
                color=cmap(i),
                s=12,
                edgecolor="white",
                linewidth=0.4,
            )
        if xs.min() > 0 and xs.max() / xs.min() > 5:
            ax.set_xscale("log")
        ax.set_title(str(task) if task is not None else fit_label(result))
        ax.set_xlabel(AXIS_LABELS.get(x_name, x_name))
        ax.set_ylabel(law.response)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(handles)), frameon=False)
    held = ", ".join(f"{AXIS_LABELS.get(c, c).split(' (')[0]} = {v:g}" for c, v in fixed.items())
    fig.suptitle(
        f"{fit_label(result)}: data and fitted mean with {prob:.0%} band"
        + (f" ({held})" if held else "")
    )
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 0.96))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _observed_vs_predicted(result: FitResult, frame: pl.DataFrame, out: Path, prob: float) -> None:
    law = result.law
    mu = predict_draws(result, frame, max_draws=1000)
    lo, hi = np.quantile(mu, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    mean = mu.mean(axis=0)
    y = frame[law.response].to_numpy()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.errorbar(
        y,
        mean,
        yerr=[mean - lo, hi - mean],
        fmt="o",
        ms=3,
        alpha=0.6,
        elinewidth=0.8,
        label=f"fitted mean, {prob:.0%} interval",
    )
    span = [min(y.min(), lo.min()), max(y.max(), hi.max())]
    ax.plot(span, span, color="black", linewidth=1, label="perfect fit")
    if law.transform == "log":
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"observed {law.response}")
    ax.set_ylabel(f"predicted {law.response}")
    ax.set_title(f"{fit_label(result)}: observed vs predicted")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


#: Colour-blind-safe pair (Okabe-Ito): fitted rows, held-out rows.
FITTED_COLOUR, HELD_COLOUR = "#999999", "#D55E00"


def holdout_figure(check: Any, path: str | Path | None = None, *, ax: Any = None) -> Any:
    """Predicted against observed for the stack (or the one law) of a held-out check.

    Fitted rows in grey, held-out rows in colour, each with its central predictive interval;
    a held-out point whose bar misses the diagonal is an interval that did not cover.
    Returns the figure; writes it to `path` when given (PNG, PDF or SVG, 200 dpi).
    """
    pts = check.points
    name = "stack" if "stack" in pts["source"].unique().to_list() else pts["source"][0]
    pts = pts.filter(pl.col("source") == name)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 5.0))
    for held, colour, label in (
        (False, FITTED_COLOUR, "fitted rows"),
        (True, HELD_COLOUR, f"held out ({check.holdout})"),
    ):
        part = pts.filter(pl.col("held_out") == held)
        mean = part["mean"].to_numpy()
        ax.errorbar(
            part["observed"].to_numpy(),
            mean,
            yerr=[mean - part["lower"].to_numpy(), part["upper"].to_numpy() - mean],
            fmt="o",
            ms=3.5,
            color=colour,
            ecolor=colour,
            alpha=0.45 if not held else 0.9,
            elinewidth=0.8,
            label=label,
        )
    lo = float(min(pts["observed"].min(), pts["lower"].min()))  # type: ignore[arg-type]
    hi = float(max(pts["observed"].max(), pts["upper"].max()))  # type: ignore[arg-type]
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="predicted = observed")
    row = check.table.filter(pl.col("source") == name).row(0, named=True)
    ax.set_title(
        f"{name}: held-out {check.prob:.0%} coverage {row['coverage']:.2f}, "
        f"median width {row['width']:.2f}",
        fontsize=10,
    )
    ax.set_xlabel("observed")
    ax.set_ylabel(f"predicted (mean, {check.prob:.0%} predictive interval)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    figure = fig or ax.figure
    if path is not None:
        figure.tight_layout()
        figure.savefig(path, dpi=200)
    return figure
