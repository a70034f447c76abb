"""Figures of fits: posterior densities and traces (ArviZ), predictive checks, fitted curves.

`figure` draws one kind and returns its matplotlib Figure: drawn into the Axes given as ``ax=``,
or a new Figure that pyplot does not hold (a notebook shows it as a cell's value, or with
``display(fig)``; nothing piles up in a loop). `FitResult.plot` calls it. `plot` writes one to a
file for ``scalelaw plot``, whose errors name the command's flags where `figure`'s name Python
arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

# Agg (files, no display) unless a backend was chosen: a notebook's inline or widget backend,
# MPLBACKEND or matplotlib.use() are kept, so importing this module does not turn them off.
if getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: None)() is None:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

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


@dataclass(frozen=True)
class _Say:
    """What an error tells the user to change: a flag of `scalelaw plot`, or a Python argument."""

    kind_fit: str
    each_law: str
    data: str
    bayes: str


CLI = _Say(
    kind_fit="--kind fit",
    each_law="plot each law's own fit file for the others",
    data="pass the data with --data",
    bayes="fit with --backend bayes",
)
PYTHON = _Say(
    kind_fit="kind='fit'",
    each_law="plot each of its fits (stacked.fits[i]) for the others",
    data="it is not kept, so pass it again as data=table",
    bayes="fit with FitOptions(backend='bayes')",
)


def fitted_table(result: Any, data: Any = None, *, say: _Say = CLI) -> pl.DataFrame:
    """The table a fit was made from (or `data`: a path or a polars frame), with the fit's
    filters and column map."""
    first = result.fits[0] if hasattr(result, "fits") else result
    source = data if data is not None else first.meta.get("source")
    if source is None or (isinstance(source, str) and source in ("", "<table>")):
        raise ValueError(f"this fit was made from an in-memory table: {say.data}")
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


def figure(
    result: Any,
    kind: str = "fit",
    *,
    ax: Any = None,
    data: Any = None,
    prob: float = 0.9,
    tasks: Sequence[str] | None = None,
    var_names: Sequence[str] | None = None,
) -> Figure:
    """Draw `kind` for a fit (or a stacked fit, kind ``fit`` only) and return the Figure.

    ``fit``: the data and the fitted mean with its central `prob` band against the last
    covariate, one panel per task (`tasks` picks some), the other covariates at their most
    common value; observed against predicted when a covariate has many values. ``ppc``: the
    observed responses against replicated data sets. ``posterior``: the densities of the
    scalar parameters (or `var_names`). ``trace``: ArviZ's trace grid (chains of a Bayesian
    fit; it takes no `ax`).

    `ax`: an Axes, or a sequence or array of Axes with one per panel, to draw into; the Figure
    returned is theirs. `data`: the table for ``fit`` and ``ppc`` (a polars frame or a path);
    by default the file the fit was made from.
    """
    return _figure(
        result, kind, ax=ax, data=data, prob=prob, tasks=tasks, var_names=var_names, say=PYTHON
    )


def plot(result: Any, kind: str, out: str | Path, *, data: str | None = None) -> Path:
    """Write one figure of `kind` for `result` to `out` (PNG, PDF or SVG)."""
    fig = _figure(result, kind, data=data, say=CLI)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def _figure(
    result: Any,
    kind: str,
    *,
    say: _Say,
    ax: Any = None,
    data: Any = None,
    prob: float = 0.9,
    tasks: Sequence[str] | None = None,
    var_names: Sequence[str] | None = None,
) -> Figure:
    if kind not in KINDS:
        raise ValueError(f"unknown plot kind '{kind}' (choose {', '.join(KINDS)})")
    if hasattr(result, "fits") and kind != "fit":
        raise ValueError(f"a stacked fit draws {say.kind_fit} only; {say.each_law}")
    if kind in ("posterior", "trace"):
        return _arviz_plot(result, kind, ax, var_names, say)
    frame = fitted_table(result, data, say=say)
    if kind == "ppc":
        return _ppc(result, frame, ax)
    return _fit_curves(result, frame, ax, prob, tasks)


def _axes(ax: Any, need: int, what: str) -> list[Any]:
    """The Axes given as `ax` (one, or a sequence or array of them), at least `need` of them."""
    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) < need:
        raise ValueError(
            f"this figure has {need} panels ({what}) and ax= gives {len(axes)} Axes: "
            f"pass {need} (e.g. fig.subplots(1, {need}))"
        )
    return axes


def _collection(data: Any, axes: Sequence[Any]) -> Any:
    """An ArviZ PlotCollection that draws each variable of `data` into one of `axes`."""
    import xarray as xr
    from arviz_plots import PlotCollection

    names = list(data.data_vars)
    viz = {
        "/": xr.Dataset({"figure": np.array(axes[0].figure, dtype=object)}),
        "plot": xr.Dataset(
            {n: xr.DataArray(np.array(a, dtype=object)) for n, a in zip(names, axes, strict=False)}
        ),
        "row_index": xr.Dataset({n: xr.DataArray(0) for n in names}),
        "col_index": xr.Dataset({n: xr.DataArray(i) for i, n in enumerate(names)}),
    }
    return PlotCollection(data, xr.DataTree.from_dict(viz), backend="matplotlib")


def _own(pc: Any) -> Figure:
    """The Figure ArviZ drew, let go by pyplot (the caller keeps it; a notebook shows it once)."""
    fig = pc.viz["figure"].item()
    plt.close(fig)
    return fig


def _scalar_names(result: FitResult) -> list[str]:
    return [n for n in result.law.param_names if result.draws[n].ndim == 1]


def _arviz_plot(
    result: FitResult, kind: str, ax: Any, var_names: Sequence[str] | None, say: _Say
) -> Figure:
    import arviz as az

    if result.n_draws < 2:
        raise ValueError(
            "this fit holds one value per parameter (a published card, or a least-squares fit "
            "without bootstrap refits): it has no distribution to plot"
        )
    tree = result.to_datatree()
    names = list(var_names) if var_names else _scalar_names(result)
    unknown = [n for n in names if n not in result.law.param_names]
    if unknown:
        raise ValueError(
            f"law '{result.law.name}' has no parameter '{unknown[0]}' "
            f"(choose from {', '.join(result.law.param_names)})"
        )
    if kind == "trace":
        if "sample_stats" not in tree.children:
            raise ValueError(f"trace plots need MCMC chains: {say.bayes}")
        if ax is not None:
            raise ValueError(
                "a trace figure is ArviZ's own grid (a density and a trace per parameter): "
                "draw it without ax= and use the Figure returned"
            )
        return _own(az.plot_trace_dist(tree, var_names=names, backend="matplotlib"))
    if ax is None:
        return _own(az.plot_dist(tree, var_names=names, backend="matplotlib"))
    grouped = [n for n in names if n not in _scalar_names(result)]
    if grouped:
        raise ValueError(
            f"'{grouped[0]}' has one panel per level: draw it without ax=, or pick scalar "
            "parameters with var_names=[...]"
        )
    axes = _axes(ax, len(names), "one per parameter: " + ", ".join(names))
    posterior = tree["posterior"].to_dataset()[names]
    pc = az.plot_dist(
        tree, var_names=names, backend="matplotlib", plot_collection=_collection(posterior, axes)
    )
    return pc.viz["figure"].item()


def _ppc(result: FitResult, frame: pl.DataFrame, ax: Any, n_draws: int = 200) -> Figure:
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
    samples = min(50, reps.shape[0])
    if ax is None:
        return _own(az.plot_ppc_dist(tree, backend="matplotlib", num_samples=samples))
    axes = _axes(ax, 1, "one")
    pc = _collection(tree["posterior_predictive"].to_dataset(), axes[:1])
    az.plot_ppc_dist(tree, backend="matplotlib", num_samples=samples, plot_collection=pc)
    return axes[0].figure


def _fit_curves(
    result: FitResult,
    frame: pl.DataFrame,
    ax: Any = None,
    prob: float = 0.9,
    tasks: Sequence[str] | None = None,
) -> Figure:
    """Data and fitted mean with its band, one panel per task, against the last covariate."""
    law = result.law
    covs = list(law.covariates)
    cols = law.columns
    x_name = covs[-1]
    color_name = covs[0] if len(covs) > 1 else None
    if tasks is not None:
        frame = _only_tasks(frame, tasks)
    few_levels = all(frame[cols[c]].n_unique() <= 12 for c in covs)
    if not few_levels:
        return _observed_vs_predicted(result, frame, ax, prob)
    fixed: dict[str, float] = {}
    for c in covs[1:-1]:
        counts = frame[cols[c]].value_counts().sort(["count", cols[c]], descending=True)
        fixed[c] = float(counts[cols[c]][0])
    for c, v in fixed.items():
        frame = frame.filter(pl.col(cols[c]) == v)
    held = ", ".join(f"{AXIS_LABELS.get(c, c).split(' (')[0]} = {v:g}" for c, v in fixed.items())
    panels = sorted(frame["task"].unique().to_list()) if "task" in frame.columns else [None]
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    if ax is None:
        fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows))
        axes = list(fig.subplots(nrows, ncols, squeeze=False, sharey=True).flat)
    else:
        what = "one per task: " + ", ".join(map(str, panels)) + "; or pick with tasks=[...]"
        axes = _axes(ax, len(panels), what)
        fig = axes[0].figure
    colors = sorted(frame[cols[color_name]].unique().to_list()) if color_name else [None]
    cmap = matplotlib.colormaps["viridis"].resampled(max(2, len(colors)))
    xs = np.sort(frame[cols[x_name]].unique().to_numpy())
    grid_x = (
        np.geomspace(xs.min(), xs.max(), 60)
        if xs.min() > 0
        else np.linspace(xs.min(), xs.max(), 60)
    )
    for panel, task in zip(axes, panels, strict=False):
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
            panel.fill_between(grid_x, lo, hi, color=cmap(i), alpha=0.25, linewidth=0)
            panel.plot(grid_x, mu.mean(axis=0), color=cmap(i), label=label)
            panel.scatter(
                part[cols[x_name]],
                part[law.response],
                color=cmap(i),
                s=12,
                edgecolor="white",
                linewidth=0.4,
            )
        if xs.min() > 0 and xs.max() / xs.min() > 5:
            panel.set_xscale("log")
        title = str(task) if task is not None else fit_label(result)
        # in the caller's Axes there is no figure title to say where the other axes are held
        panel.set_title(title if ax is None or not held else f"{title} ({held})")
        panel.set_xlabel(AXIS_LABELS.get(x_name, x_name))
        panel.set_ylabel(law.response)
        panel.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if ax is not None:  # the caller's figure: a legend in its first panel, no figure title
        if handles:
            axes[0].legend(handles, labels, fontsize=8, frameon=False)
        return fig
    for unused in axes[len(panels) :]:
        unused.axis("off")
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(handles)), frameon=False)
    fig.suptitle(
        f"{fit_label(result)}: data and fitted mean with {prob:.0%} band"
        + (f" ({held})" if held else "")
    )
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 0.96))
    return fig


def _only_tasks(frame: pl.DataFrame, tasks: Sequence[str]) -> pl.DataFrame:
    """The rows of `tasks`, refusing a task the table does not have."""
    if isinstance(tasks, str):
        tasks = [tasks]
    known = sorted(frame["task"].unique().to_list()) if "task" in frame.columns else []
    missing = [t for t in tasks if t not in known]
    if missing:
        have = f"its tasks are {', '.join(map(str, known))}" if known else "it has no task column"
        raise ValueError(f"task '{missing[0]}' is not in the table ({have})")
    return frame.filter(pl.col("task").is_in(list(tasks)))


def _observed_vs_predicted(result: FitResult, frame: pl.DataFrame, ax: Any, prob: float) -> Figure:
    law = result.law
    mu = predict_draws(result, frame, max_draws=1000)
    lo, hi = np.quantile(mu, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    mean = mu.mean(axis=0)
    y = frame[law.response].to_numpy()
    if ax is None:
        fig = Figure(figsize=(5.5, 5))
        panel = fig.subplots()
    else:
        panel = _axes(ax, 1, "one")[0]
        fig = panel.figure
    panel.errorbar(
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
    panel.plot(span, span, color="black", linewidth=1, label="perfect fit")
    if law.transform == "log":
        panel.set_xscale("log")
        panel.set_yscale("log")
    panel.set_xlabel(f"observed {law.response}")
    panel.set_ylabel(f"predicted {law.response}")
    panel.set_title(f"{fit_label(result)}: observed vs predicted")
    panel.legend()
    panel.grid(alpha=0.3)
    if ax is None:
        fig.tight_layout()
    return fig


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
