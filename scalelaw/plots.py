"""Figures of fits: posterior densities and traces (ArviZ), predictive checks, fitted curves.

`figure` draws one kind and returns its matplotlib Figure: drawn into the Axes given as ``ax=``,
or a new Figure that pyplot does not hold (a notebook shows it as a cell's value, or with
``display(fig)``; nothing piles up in a loop). `FitResult.plot` calls it. `plot` writes one to a
file for ``scalelaw plot``, whose errors name the command's flags where `figure`'s name Python
arguments.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from scalelaw.data import DataError, load_table
from scalelaw.fits.prediction import predict_draws, predictive_draws
from scalelaw.fits.result import FitResult

KINDS = ("posterior", "trace", "ppc", "fit")
#: Resolution of PNG figures (PDF and SVG are vector).
DPI = 200
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
    at: Mapping[str, float] | None = None,
    var_names: Sequence[str] | None = None,
) -> Figure:
    """Draw `kind` for a fit (or a stacked fit, kind ``fit`` only) and return the Figure.

    ``fit``: the data, the fitted mean, the central `prob` band of the expected score (dark)
    and of a new measurement (light) against the last covariate, a colour per value of the
    first, one panel per task and per value of the others (a sequence length), so every row is
    shown; `tasks` picks tasks and `at` fixes covariates (``at={"L": 16384}``, by symbol or
    column) for fewer panels; observed against predicted when a covariate has many values.
    ``ppc``: the observed responses against replicated data sets. ``posterior``: the densities
    of the parameters, task offsets included (or `var_names`). ``trace``: ArviZ's trace grid
    (chains of a Bayesian fit; it takes no `ax`).

    `ax`: an Axes, or a sequence or array of Axes with one per panel, to draw into; the Figure
    returned is theirs. `data`: the table for ``fit`` and ``ppc`` (a polars frame or a path);
    by default the file the fit was made from.
    """
    return _figure(
        result, kind, ax=ax, data=data, prob=prob, tasks=tasks, at=at, var_names=var_names,
        say=PYTHON,
    )  # fmt: skip


def plot(result: Any, kind: str, out: str | Path, *, data: str | None = None) -> Path:
    """Write one figure of `kind` for `result` to `out` (PNG at 200 dpi, PDF or SVG: the suffix
    chooses)."""
    fig = _figure(result, kind, data=data, say=CLI)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
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
    at: Mapping[str, float] | None = None,
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
    return _fit_curves(result, frame, ax, prob, tasks, at)


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
    # deferred: xarray and arviz_plots, loaded for the ArviZ kinds only
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


def _free_levels(tree: Any, names: Sequence[str]) -> dict[str, list[Any]]:
    """Per level dimension of `names`, the levels that vary (a pinned reference level, such as
    the first task's offset fixed at 0, has no density to draw)."""
    post = tree["posterior"].to_dataset()
    coords: dict[str, list[Any]] = {}
    for name in names:
        var = post[name]
        for dim in var.dims:
            if dim in ("chain", "draw"):
                continue
            spread = var.std(dim=[d for d in var.dims if d != dim]).values
            coords[dim] = [
                lv for lv, s in zip(var[dim].values.tolist(), spread, strict=True) if s > 0
            ]
    return coords


def _pinned(result: FitResult, names: Sequence[str]) -> str:
    """``delta[QuALITY] = 0`` for the group levels fixed as references, for a title."""
    parts = []
    for name in names:
        value = np.asarray(result.draws[name])
        if value.ndim != 2:
            continue
        group = result.law.groups.get(name)
        levels = result.levels.get(group, []) if group else []
        for i, lv in enumerate(levels):
            if np.ptp(value[:, i]) == 0:
                parts.append(f"{name}[{lv}] = {value[0, i]:g}")
    return ", ".join(parts)


def _titled(fig: Figure, title: str) -> Figure:
    """ArviZ's panels with one-line titles (``delta[CWE]``) that do not run into the ticks,
    under a figure title."""

    def one_line(text: str) -> str:
        name, *rest = text.split("\n")
        return f"{name}[{', '.join(rest)}]" if rest else name

    for panel in fig.axes:
        if "\n" in panel.get_title():
            panel.set_title(one_line(panel.get_title()), fontsize=10)
        panel.set_xlabel(one_line(panel.get_xlabel()))
        panel.set_ylabel(one_line(panel.get_ylabel()))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def _arviz_plot(
    result: FitResult, kind: str, ax: Any, var_names: Sequence[str] | None, say: _Say
) -> Figure:
    import arviz as az  # deferred: ArviZ (about 1 s), for the posterior and trace kinds

    if result.n_draws < 2:
        raise ValueError(
            "this fit holds one value per parameter (a published card, or a least-squares fit "
            "without bootstrap refits): it has no distribution to plot"
        )
    tree = result.to_datatree()
    # its own figure: every parameter, task offsets too; into the caller's Axes: the scalars
    default = result.law.param_names if ax is None else _scalar_names(result)
    names = list(var_names) if var_names else list(default)
    unknown = [n for n in names if n not in result.law.param_names]
    if unknown:
        raise ValueError(
            f"law '{result.law.name}' has no parameter '{unknown[0]}' "
            f"(choose from {', '.join(result.law.param_names)})"
        )
    coords = _free_levels(tree, names)
    pinned = _pinned(result, names)
    what = "bootstrap refits" if result.backend == "lsq" else "posterior draws"
    note = f" ({pinned}: the reference)" if pinned else ""
    if kind == "trace":
        if "sample_stats" not in tree.children:
            raise ValueError(f"trace plots need MCMC chains: {say.bayes}")
        if ax is not None:
            raise ValueError(
                "a trace figure is ArviZ's own grid (a density and a trace per parameter): "
                "draw it without ax= and use the Figure returned"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pc = az.plot_trace_dist(
                tree, var_names=names, coords=coords, compact=False, backend="matplotlib"
            )
        chains = int(tree["posterior"].sizes.get("chain", 1))
        fig = _own(pc)
        rows = max(1, len(fig.axes) // 2)
        fig.set_size_inches(10.0, 0.6 + 1.15 * rows)
        traces = [a for a in fig.axes if a.get_xlabel() == "Draw"]
        for panel in traces:  # the density beside names the parameter; the last row says Draw
            panel.set_ylabel("")
            panel.set_xlabel("draw" if panel is traces[-1] else "")
        for panel in fig.axes:
            panel.tick_params(labelsize=8)
        _titled(fig, f"{result.law.name}: densities and traces of {chains} chains{note}")
        if traces:  # one line per chain, in the chain's colour
            lines = traces[0].get_lines()[:chains]
            fig.legend(lines, [f"chain {i}" for i in range(len(lines))], loc="upper center",
                       bbox_to_anchor=(0.5, 1 - 0.45 / fig.get_figheight()), ncol=len(lines),
                       fontsize=8, frameon=False)  # fmt: skip
            fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / fig.get_figheight()))
        return fig
    if ax is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pc = az.plot_dist(tree, var_names=names, coords=coords, backend="matplotlib")
        return _titled(
            _own(pc),
            f"{result.law.name}: densities of {result.n_draws} {what}, mean and 94% HDI{note}",
        )
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
    import arviz as az  # deferred: ArviZ (about 1 s)

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
        fig = _own(az.plot_ppc_dist(tree, backend="matplotlib", num_samples=samples))
        panel = fig.axes[0]
    else:
        axes = _axes(ax, 1, "one")
        pc = _collection(tree["posterior_predictive"].to_dataset(), axes[:1])
        az.plot_ppc_dist(tree, backend="matplotlib", num_samples=samples, plot_collection=pc)
        panel, fig = axes[0], axes[0].figure
    replicated = "bootstrap refits" if result.backend == "lsq" else "posterior draws"
    panel.legend(
        [Line2D([], [], color="black", lw=1.5), Line2D([], [], color="C0", lw=1.5, alpha=0.5)],
        [f"observed ({len(y)} rows)", f"replicated tables ({samples} {replicated})"],
        loc="upper center", fontsize=8, frameon=False,
    )  # fmt: skip
    panel.set_xlabel(law.response)
    if ax is None:
        _titled(fig, f"{fit_label(result)}: posterior predictive check of the {law.response}")
    return fig


def human(symbol: str, value: float) -> str:
    """A covariate's value as a person writes it: N 7.6B, L 16K, C 10, D 1.4T."""
    x = float(value)
    if symbol == "L":
        for unit, size in (("M", 1024.0**2), ("K", 1024.0)):
            if x >= size:
                return f"{x / size:.3g}{unit}"
        return f"{x:g}"
    if symbol in ("N", "D"):
        for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if abs(x) >= size:
                v = x / size
                return (f"{v:.1f}".removesuffix(".0") if v < 10 else f"{v:.3g}") + unit
        return f"{x:g}"
    return f"{x:.3g}"


def labelled(symbol: str, value: float) -> str:
    """``N = 7.6B``, ``L = 16K``, ``C = 10``."""
    return f"{symbol} = {human(symbol, value)}"


#: Okabe-Ito colours (colour-blind safe), without its yellow (unreadable on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def palette(n: int) -> list[Any]:
    """`n` colours told apart with any colour vision: Okabe-Ito, cividis beyond seven."""
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    return [matplotlib.colormaps["cividis"](v) for v in np.linspace(0.0, 0.9, n)]


def _human_log_axis(axis: Any, symbol: str) -> None:
    """Log ticks at 1, 2 and 5 times each power of ten, labelled in `human` units."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: human(symbol, v)))
    axis.set_minor_formatter(NullFormatter())


def _held_value(frame: pl.DataFrame, law: Any, key: str, value: float) -> tuple[str, float]:
    """The covariate (law symbol) that `key` names (a symbol or its column), checked in `frame`."""
    cols = law.columns
    symbol = key if key in cols else next((s for s, c in cols.items() if c == key), None)
    if symbol is None:
        raise ValueError(
            f"at={{'{key}': ...}}: '{key}' is not a covariate of law '{law.name}' "
            f"(choose {', '.join(cols)})"
        )
    have = sorted(frame[cols[symbol]].unique().to_list())
    if not any(np.isclose(float(value), h) for h in have):
        raise ValueError(
            f"at={{'{key}': {value:g}}}: the table has {symbol} = "
            + ", ".join(f"{h:g}" for h in have)
        )
    return symbol, float(value)


def _fit_curves(
    result: FitResult,
    frame: pl.DataFrame,
    ax: Any = None,
    prob: float = 0.9,
    tasks: Sequence[str] | None = None,
    at: Mapping[str, float] | None = None,
) -> Figure:
    """Data, fitted mean, expectation band and predictive band against the last covariate: a
    colour per value of the first covariate, one panel per task and per value of the others
    (every row of the table is in a panel; `at` fixes covariates to draw fewer panels)."""
    law = result.law
    covs = list(law.covariates)
    cols = law.columns
    x_name = covs[-1]
    color_name = covs[0] if len(covs) > 1 else None
    if tasks is not None:
        frame = _only_tasks(frame, tasks)
    fixed = dict(_held_value(frame, law, k, v) for k, v in (at or {}).items())
    for c, v in fixed.items():
        frame = frame.filter((pl.col(cols[c]) - v).abs() <= 1e-9 * max(1.0, abs(v)))
    few_levels = all(frame[cols[c]].n_unique() <= 12 for c in covs if c not in fixed)
    if not few_levels:
        return _observed_vs_predicted(result, frame, ax, prob)
    facets = [c for c in covs[1:-1] if c not in fixed]
    combos = (
        frame.select([cols[c] for c in facets]).unique().sort([cols[c] for c in facets]).rows()
        if facets
        else [()]
    )
    task_list = sorted(frame["task"].unique().to_list()) if "task" in frame.columns else [None]
    panels = [
        (task, dict(zip(facets, combo, strict=True))) for combo in combos for task in task_list
    ]
    if len(combos) > 1 and len(task_list) > 1:
        nrows, ncols = len(combos), len(task_list)
    else:
        ncols = min(3, len(panels))
        nrows = int(np.ceil(len(panels) / ncols))
    if ax is None:
        width, height = (2.3, 1.85) if len(panels) > 6 else (4.0, 3.2)
        fig = Figure(figsize=(width * ncols + 0.4, height * nrows + 0.9))
        axes = list(fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).flat)
    else:
        what = (
            "one per task"
            + (" and " + " and ".join(facets) if facets else "")
            + ": "
            + "; ".join(_panel_name(t, h) for t, h in panels)
            + "; pick fewer with tasks=[...]"
            + (f" or at={{'{facets[0]}': ...}}" if facets else "")
        )
        axes = _axes(ax, len(panels), what)
        fig = axes[0].figure
    colors = sorted(frame[cols[color_name]].unique().to_list()) if color_name else [None]
    shades = palette(len(colors))
    xs = np.sort(frame[cols[x_name]].unique().to_numpy())
    grid_x = (
        np.geomspace(xs.min(), xs.max(), 40)
        if xs.min() > 0
        else np.linspace(xs.min(), xs.max(), 40)
    )
    q = [(1 - prob) / 2, (1 + prob) / 2]
    predictive_drawn = False
    for panel, (task, held) in zip(axes, panels, strict=False):
        sub = frame if task is None else frame.filter(pl.col("task") == task)
        for c, v in held.items():
            sub = sub.filter(pl.col(cols[c]) == v)
        points: dict[str, Any] = {cols[x_name]: np.tile(grid_x, len(colors))}
        for c, v in {**fixed, **held}.items():
            points[cols[c]] = np.full(len(grid_x) * len(colors), float(v))
        if color_name:
            points[cols[color_name]] = np.repeat(np.asarray(colors, dtype=float), len(grid_x))
        if task is not None:
            points["task"] = [task] * (len(grid_x) * len(colors))
        grid = pl.DataFrame(points)
        mu = predict_draws(result, grid, max_draws=1000)
        lo, hi = np.quantile(mu, q, axis=0)
        bounds = _predictive_band(result, grid, sub, mu, q)
        predictive_drawn |= bounds is not None
        if bounds is not None:
            plo, phi = bounds
        for i, cval in enumerate(colors):
            part = sub if cval is None else sub.filter(pl.col(cols[color_name]) == cval)  # type: ignore[index]
            span = slice(i * len(grid_x), (i + 1) * len(grid_x))
            label = None if cval is None else labelled(color_name, cval)  # type: ignore[arg-type]
            if bounds is not None:
                panel.fill_between(grid_x, plo[span], phi[span], color=shades[i], alpha=0.12, lw=0)
            panel.fill_between(grid_x, lo[span], hi[span], color=shades[i], alpha=0.35, lw=0)
            panel.plot(grid_x, mu[:, span].mean(axis=0), color=shades[i], lw=1.2, label=label)
            panel.scatter(
                part[cols[x_name]], part[law.response], color=shades[i], s=10,
                edgecolor="white", linewidth=0.4, zorder=3,
            )  # fmt: skip
        if xs.min() > 0 and xs.max() / xs.min() > 5:
            panel.set_xscale("log")
            _human_log_axis(panel.xaxis, x_name)
        name = _panel_name(task, {**fixed, **held})
        panel.set_title(name or fit_label(result), fontsize=9 if len(panels) > 6 else 10)
        panel.tick_params(labelsize=7 if len(panels) > 6 else 8)
        panel.grid(alpha=0.3)
    for i, panel in enumerate(axes[: len(panels)]):
        spec = panel.get_subplotspec() if ax is not None else None
        first_col = spec.is_first_col() if spec is not None else i % ncols == 0
        last_row = spec.is_last_row() if spec is not None else i >= len(panels) - ncols
        if first_col or (ax is not None and spec is None):
            panel.set_ylabel(law.response)
        if last_row or (ax is not None and spec is None):
            panel.set_xlabel(AXIS_LABELS.get(x_name, x_name), fontsize=8 if len(panels) > 6 else 10)
            panel.xaxis.set_tick_params(labelbottom=True)
    handles, labels = axes[0].get_legend_handles_labels()
    handles, labels = list(handles), list(labels)
    handles.append(Patch(color="0.35", alpha=0.45, lw=0))
    labels.append(f"{prob:.0%} band of the expected score")
    if predictive_drawn:
        handles.append(Patch(color="0.35", alpha=0.15, lw=0))
        labels.append(f"{prob:.0%} band of a new measurement")
    if ax is not None:  # the caller's figure: a legend in its first panel, no figure title
        axes[0].legend(handles, labels, fontsize=7, frameon=False)
        return fig
    for unused in axes[len(panels) :]:
        unused.axis("off")
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(handles)), frameon=False,
               fontsize=9)  # fmt: skip
    fig.suptitle(
        f"{fit_label(result)}: data, fitted mean and {prob:.0%} bands"
        + (" (every row of the table)" if not fixed and tasks is None else "")
    )
    rows_in_inches = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.45 / rows_in_inches, 1, 1 - 0.35 / rows_in_inches))
    return fig


def _panel_name(task: Any, held: Mapping[str, float]) -> str:
    parts = [] if task is None else [str(task)]
    return ", ".join(parts + [labelled(c, v) for c, v in held.items()])


def _predictive_band(
    result: Any, grid: pl.DataFrame, rows: pl.DataFrame, mu: np.ndarray, q: Sequence[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where a new measurement at `grid` falls (quantiles `q`), with the panel's typical number
    of samples; None when the fit has no noise to draw from (a normal-likelihood card).

    Binomial counts: the exact quantiles of the mixture over draws (smooth curves); other
    likelihoods: quantiles of `predictive_draws`."""
    samples = None
    if "samples" in rows.columns and rows.height:
        samples = int(np.median(rows["samples"].to_numpy()))
    law = result.law
    if getattr(law, "likelihood", None) == "binomial" and law.is_count:
        from scipy.stats import binom  # deferred: scipy.stats (about 0.8 s)

        n = samples or 100
        p = np.clip(mu[:: max(1, mu.shape[0] // 200)], 0.0, 1.0)  # at most ~200 draws
        k = np.arange(n + 1)[:, None, None]
        cdf = binom.cdf(k, n, p[None, :, :]).mean(axis=1)  # (n + 1, points)
        lo = (cdf >= q[0]).argmax(axis=0) / n
        hi = (cdf >= q[1]).argmax(axis=0) / n
        return lo, hi
    try:
        new = predictive_draws(result, grid, samples=samples, seed=0, max_draws=250)
    except DataError:
        return None
    lo, hi = np.quantile(new, q, axis=0)
    return lo, hi


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
        figure.savefig(path, dpi=DPI)
    return figure
