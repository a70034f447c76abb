"""Figures of frontiers and tolerable compression (matplotlib, written to a file: PNG at 200 dpi,
PDF or SVG by the suffix)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from scalelaw.frontier.isocost import CriticalLength, Frontier


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib  # deferred: matplotlib (about 0.5 s), for figures only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_x(ax) -> None:  # type: ignore[no-untyped-def]
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # deferred: matplotlib

    # budgets often span less than a decade: label 1, 2 and 5 times each power of ten
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0e}".replace("e+", "e")))
    ax.xaxis.set_minor_formatter(NullFormatter())


#: Resolution of PNG figures.
DPI = 200
#: Colour for what the law was not fitted on.
EXTRAPOLATED = "0.85"


def _palette(n: int) -> list:  # type: ignore[type-arg]
    from scalelaw.plots import palette  # deferred: matplotlib and ArviZ (about 1.4 s)

    return palette(n)


def _draws(n: int) -> str:
    return "1 draw: a point estimate" if n == 1 else f"{n} posterior draws"


def _tokens(x: float) -> str:
    if x >= 1024**2:
        return f"{x / 1024**2:.3g}M"
    return f"{x / 1024:,.0f}K" if x >= 1024 else f"{x:g}"


def frontier_figure(
    front: Frontier,
    path: str | Path,
    *,
    critical: CriticalLength | None = None,
    cost_label: str = "cost",
    title: str = "",
    fitted_lengths: tuple[float, float] | None = None,
    extrapolated_sizes: Collection[str] = (),
) -> Path:
    """Scores of every configuration against cost, the dense and sparse frontiers with bands,
    the probability that sparse wins per budget, and (if given) the advantage over lengths.

    `fitted_lengths`: the shortest and longest length the law was fitted on; lengths outside
    are shaded as extrapolated (and said so in the first panel's title). `extrapolated_sizes`:
    model sizes outside those the law was fitted on, drawn faded and marked `*` in the legend.
    Bands and their legend entries are drawn only when there is more than one draw.
    """
    plt = _pyplot()
    panels = 3 if critical is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4), constrained_layout=True)
    ax = axes[0]
    cfg = front.configs
    sizes = list(dict.fromkeys(cfg.sort("params")["size"].to_list()))
    colours = _palette(len(sizes))
    for size, colour in zip(sizes, colours, strict=True):
        far = size in extrapolated_sizes
        fade = 0.45 if far else 1.0
        rows = cfg.filter(pl.col("size") == size).sort("compression")
        ax.plot(rows["cost"], rows["mean"], color=colour, lw=0.8, alpha=0.5 * fade)
        d = rows.filter(~pl.col("sparse"))
        s = rows.filter(pl.col("sparse"))
        ax.scatter(
            d["cost"], d["mean"], color=colour, marker="o", s=46, zorder=3, alpha=fade,
            label=f"{size}*" if far else f"{size}",
        )  # fmt: skip
        ax.scatter(
            s["cost"], s["mean"], facecolor="none", edgecolor=colour, marker="o",
            s=10 + 3 * s["compression"].to_numpy(), zorder=3, alpha=fade,
        )  # fmt: skip
    b = front.budgets
    for tag, colour, style, label in (
        ("dense", "black", "-", "best dense"),
        ("sparse", "0.35", "--", "best sparse"),
    ):
        rows = b.filter(pl.col(f"{tag}_mean").is_not_null())
        ax.step(
            rows["budget"], rows[f"{tag}_mean"], where="post", color=colour, ls=style, lw=1.6,
            label=label,
        )  # fmt: skip
        if front.n_draws > 1:
            ax.fill_between(
                rows["budget"], rows[f"{tag}_lower"], rows[f"{tag}_upper"],
                step="post", color=colour, alpha=0.15, lw=0,
            )  # fmt: skip
    # a legend for C: hollow markers of the sizes the sparse configurations are drawn with
    ratios = sorted(cfg.filter(pl.col("sparse"))["compression"].unique().to_list())
    shown = sorted({ratios[0], ratios[len(ratios) // 2], ratios[-1]}) if ratios else []
    for c in shown:
        ax.scatter(
            [], [], facecolor="none", edgecolor="0.3", marker="o", s=10 + 3 * c,
            label=f"sparse, C = {c:.3g}",
        )  # fmt: skip
    _log_x(ax)
    ax.set_xlabel(f"{cost_label} (log scale)")
    ax.set_ylabel("predicted score")
    seq_len = float(front.meta["seq_len"])
    beyond = fitted_lengths is not None and not (fitted_lengths[0] <= seq_len <= fitted_lengths[1])
    ax.set_title(
        f"configurations at L = {_tokens(seq_len)}"
        + (
            f" (extrapolated: fitted {_tokens(fitted_lengths[0])}-{_tokens(fitted_lengths[1])})"
            if beyond and fitted_lengths is not None
            else ""
        )
        + "\n(filled: dense; hollow: sparse, size grows with C)",
        fontsize=10,
    )
    band = f", {front.prob:.0%} band" if front.n_draws > 1 else ""
    starred = (
        "\n*: outside the fitted sizes (faded)" if set(extrapolated_sizes) & set(sizes) else ""
    )
    ax.legend(
        fontsize=7, loc="lower right", ncol=2, title=f"colour: model size{band}{starred}",
        title_fontsize=7,
    )  # fmt: skip
    ax.grid(alpha=0.3, which="both")

    ax = axes[1]
    rows = b.filter(pl.col("p_sparse_better").is_not_null())
    ax.step(
        rows["budget"],
        rows["p_sparse_better"],
        where="post",
        color="black",
        label="P(best sparse > best dense)",
    )
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    # shade the budgets where neither answer is likely (0.1 < P < 0.9): decide there only with
    # more data
    p = rows["p_sparse_better"].to_numpy()
    x = rows["budget"].to_numpy()
    unsure = (p > 0.1) & (p < 0.9)
    if unsure.any():
        edges = np.append(x, x[-1] * (x[-1] / x[-2]) if len(x) > 1 else x[-1] * 1.1)
        for i in np.flatnonzero(unsure):
            ax.axvspan(
                edges[i], edges[i + 1], color="#E69F00", alpha=0.2, lw=0,
                label="uncertain (0.1 < P < 0.9)" if i == np.flatnonzero(unsure)[0] else None,
            )  # fmt: skip
        ax.legend(fontsize=7, loc="best")
    ax.set_ylim(-0.03, 1.03)
    _log_x(ax)
    ax.set_xlabel(f"budget: {cost_label} (log scale)")
    ax.set_ylabel("P(best sparse > best dense)")
    ax.set_title(f"sparse beats dense at equal cost\n({_draws(front.n_draws)})")
    ax.grid(alpha=0.3, which="both")

    if critical is not None:
        ax = axes[2]
        t = critical.by_length
        lengths = t["seq_len"].to_numpy()
        if fitted_lengths is not None:
            lo_l, hi_l = fitted_lengths
            first = True
            for start, end in ((lengths.min() / 1.2, lo_l), (hi_l, lengths.max() * 1.2)):
                if end > start:
                    ax.axvspan(
                        start, end, color=EXTRAPOLATED, alpha=0.6, lw=0, zorder=0,
                        label="extrapolated (outside the fitted lengths)" if first else None,
                    )  # fmt: skip
                    first = False
            ax.set_xlim(lengths.min() / 1.2, lengths.max() * 1.2)
        ax.plot(
            t["seq_len"], t["advantage_mean"], marker="o", color="#0072B2", label="mean advantage"
        )
        if critical.n_draws > 1:
            ax.fill_between(
                t["seq_len"], t["advantage_lower"], t["advantage_upper"], color="#0072B2",
                alpha=0.2, lw=0, label=f"{critical.prob:.0%} interval",
            )  # fmt: skip
        ax.axhline(0.0, color="grey", lw=0.8)
        if np.isfinite(critical.median):
            ax.axvline(
                critical.median,
                color="#D55E00",
                ls="--",
                lw=1.2,
                label=f"critical L {_tokens(critical.median)}",
            )
            if critical.n_draws > 1:
                hi = (
                    critical.upper
                    if np.isfinite(critical.upper)
                    else float(t["seq_len"].to_numpy().max())
                )
                ax.axvspan(
                    critical.lower, hi, color="#D55E00", alpha=0.1, lw=0,
                    label=f"critical L, {critical.prob:.0%} interval",
                )  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(
            t["seq_len"].to_list(), [_tokens(x) for x in t["seq_len"]], rotation=45, fontsize=7
        )
        ax.minorticks_off()
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("score: best sparse - best dense")
        ax.set_title("isoCost advantage of sparse\n(mean over budgets)")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def tolerance_figure(result: pl.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Maximum tolerable ratio per model size and phase, the spread over tasks as boxes and points.

    A configuration whose every tested ratio passed (no `stopped_at`) is censored: its largest
    tolerable ratio is at least the top level tested, drawn as an upward triangle (">=")."""
    plt = _pyplot()
    phases = result["phase"].unique().sort().to_list() if "phase" in result.columns else [None]
    model = "model" if "model" in result.columns else "params"
    fig, axes = plt.subplots(
        1,
        len(phases),
        figsize=(max(7.0, 5.0 * len(phases)), 4.4),
        squeeze=False,
        constrained_layout=True,
    )
    lengths = sorted(result["seq_len"].unique().to_list())
    colours = _palette(len(lengths))
    censored_any = False
    rng = np.random.default_rng(0)  # jitter only
    for ax, phase in zip(axes[0], phases, strict=True):
        part = result if phase is None else result.filter(pl.col("phase") == phase)
        order = part.group_by(model).agg(
            pl.col("params").first()
            if "params" in part.columns
            else pl.first(model).alias("params")
        )
        models = order.sort("params")[model].to_list()
        data = [
            part.filter(pl.col(model) == m)["max_tolerable_compression"].to_numpy() for m in models
        ]
        ax.boxplot(data, positions=range(len(models)), widths=0.5, showfliers=False)
        for i, m in enumerate(models):
            for length, colour in zip(lengths, colours, strict=True):
                rows = part.filter((pl.col(model) == m) & (pl.col("seq_len") == length))
                y = rows["max_tolerable_compression"].to_numpy()
                # censored: no level failed, the true limit is at or above the top level tested
                censored = (
                    rows["stopped_at"].is_null().to_numpy()
                    if "stopped_at" in rows.columns
                    else np.zeros(len(y), bool)
                )
                censored_any |= bool(censored.any())
                x = i + rng.uniform(-0.18, 0.18, len(y))
                ax.scatter(
                    x[~censored], y[~censored], s=14, color=colour, alpha=0.8,
                    label=_tokens(length) if i == 0 else None,
                )  # fmt: skip
                ax.scatter(x[censored], y[censored], s=30, color=colour, alpha=0.9, marker="^")
        ax.set_yscale("log")
        top = float(result["max_tolerable_compression"].max())  # type: ignore[arg-type]
        ticks = [t for t in (1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 50, 100) if t <= top * 1.01]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xticks(range(len(models)), [str(m) for m in models], rotation=20, fontsize=8)
        ax.set_xlabel("model")
        ax.set_ylabel("max tolerable compression C")
        ax.set_title(f"{phase or 'all'}: spread over tasks")
        ax.grid(alpha=0.3, axis="y")
        handles, labels = ax.get_legend_handles_labels()
        if censored_any:
            from matplotlib.lines import Line2D  # deferred: matplotlib

            handles.append(Line2D([], [], color="0.3", marker="^", ls="", markersize=6))
            labels.append(">= : every ratio tested passed")
        ax.legend(handles, labels, title="length", fontsize=7, title_fontsize=7, loc="best")
    margin = float(result["margin"][0])
    alpha = float(result["alpha"][0])
    fig.suptitle(
        title or f"largest C with loss vs dense < {margin:g} (error rate <= {alpha:g})", fontsize=11
    )
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out
