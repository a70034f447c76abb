"""A fit's summary as data and as the text ``scalelaw fit`` prints: one implementation for the
CLI, the quickstart and the notebook method `FitResult.fit_report`.

It reads the fit only through its attributes (`summary`, `law`, `diagnostics`, `meta`, ...), so
it sits below `result`, which hands its fits to it; the same holds for a stacked fit's
weights table, summary, parameters, report and repr (`StackedFit`'s notebook methods).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scalelaw.data import ALIASES
from scalelaw.fits.law import unique_names


def parameter_rows(result: Any, prob: float = 0.9) -> list[dict[str, Any]]:
    """One row per scalar parameter or group level: estimate and central interval.

    The numbers are those of `FitResult.summary` (the posterior median, or the least-squares
    optimum, and the central `prob` interval of the draws), so the CLI, the JSON report and a
    notebook show one set of numbers.
    """
    table = result.summary(prob)
    estimate = "median" if "median" in table.columns else "estimate"
    return [
        {
            "param": row["param"],
            "estimate": float(row[estimate]),
            "lower": float(row["lower"]),
            "upper": float(row["upper"]),
        }
        for row in table.iter_rows(named=True)
    ]


def fit_report(result: Any, prob: float = 0.9) -> dict[str, Any]:
    """Everything a user reads after a fit, as plain data."""
    return {
        "law": result.law.name,
        "formula": result.law.formula or str(result.law.expr),
        "backend": result.backend,
        "interval": prob,
        "parameters": parameter_rows(result, prob),
        "diagnostics": {k: v for k, v in result.diagnostics.items() if k != "rhat"},
        "converged": result.converged,
        "not_converged": (
            None if result.converged else "NOT CONVERGED: " + "; ".join(result.convergence)
        ),
        "misfit": bool(result.misfit),
        # the report's first line: NOT CONVERGED and/or MISFIT, None when every check passed
        "headline": result.headline(),
        "holdout": result.meta.get("holdout"),
        "rows": result.meta.get("rows"),
        "data_hash": result.meta.get("data_hash"),
        "seed": result.meta.get("seed"),
    }


def plain_console(buffer: io.StringIO, width: int) -> Console:
    """A rich console that writes plain text into `buffer`: no colour, markup or emoji, tables
    `width` characters wide at most, long lines left for the reader to wrap."""
    return Console(
        file=buffer,
        width=width,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,  # in a notebook rich would display instead of writing the text
        force_interactive=False,
        emoji=False,
        highlight=False,
        soft_wrap=True,  # a notebook wraps long lines itself
    )


def fit_text(result: Any, prob: float = 0.9, *, width: int = 100) -> str:
    """What `print_fit` shows (the CLI's report of a fit) as plain text: no colour, no markup,
    tables `width` characters wide at most. `FitResult.fit_report` returns it."""
    buffer = io.StringIO()
    console = plain_console(buffer, width)
    print_fit(result, console, prob)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def print_fit(result: Any, console: Console, prob: float = 0.9) -> None:
    rep = fit_report(result, prob)
    if rep["headline"]:
        console.print(f"[bold red]{escape(rep['headline'])}[/]", highlight=False)
    label = {"bayes": "median", "lsq": "optimum"}.get(result.backend, "value")
    spread = {"bayes": " posterior", "lsq": " bootstrap"}.get(result.backend, "")
    table = Table(
        "parameter",
        label,
        f"{prob:.0%}{spread} interval",
        title=escape(f"{rep['law']} ({_source(rep)}): {rep['formula']}"),
    )
    for row in rep["parameters"]:
        table.add_row(
            escape(row["param"]),
            f"{row['estimate']:.4g}",
            escape(f"[{row['lower']:.4g}, {row['upper']:.4g}]"),
        )
    console.print(table)
    d = rep["diagnostics"]
    parts = [f"R^2 {d['r2']:.3f}"] if d.get("r2") is not None else []
    if result.backend == "bayes":
        parts += [
            f"R-hat max {d['rhat_max']:.3f}",
            f"ESS bulk min {d['ess_bulk_min']:.0f}",
            f"divergences {d['divergences']}",
        ]
        if d.get("retry"):
            r = d["retry"]
            parts.append(
                f"retried once ({r['reason']}) with target_accept {r['target_accept']:g}, "
                f"{r['tune']} tuning steps and {r['draws']} draws per chain"
            )
        if "elpd_loo" in d:
            parts.append(
                f"ELPD-LOO {d['elpd_loo']:.1f} ± {d['elpd_loo_se']:.1f} "
                f"(Pareto k max {d['pareto_k_max']:.2f}, {d['pareto_k_bad']} > 0.7)"
            )
        if d.get("loo_note"):
            parts.append(d["loo_note"])
    elif result.backend == "lsq":
        parts += [
            f"starts {d['starts']} ({d.get('reached_best', '?')} of {d.get('refined', '?')} "
            "refinements reached the best objective)",
            f"Huber delta {d['huber_delta']:g}",
            f"bootstrap {d['bootstrap']}",
        ]
    if parts:  # a published card has no diagnostics
        console.print("diagnostics: " + "; ".join(parts), markup=False, highlight=False)
    if result.meta.get("counts"):
        console.print(
            f"likelihood: {result.law.likelihood} on successes = {result.meta['counts']}",
            markup=False,
            highlight=False,
        )
    hold = rep.get("holdout")
    if hold:
        truth = "mae_truth" in hold
        cols = ["task", "held-out MAE", f"{hold['prob']:.0%} coverage"]
        cols += ["MAE vs truth", "truth coverage"] if truth else []
        title = (
            f"held out {hold['axis']}: MAE {hold['mae']:.3f}, {hold['prob']:.0%} predictive "
            f"interval covers {hold['coverage']:.0%}"
            + (f"; MAE vs truth {hold['mae_truth']:.4f}" if truth else "")
        )
        t = Table(*cols, "Spearman rho", "rows", title=title)
        for task, s in hold["per_task"].items():
            rho = "n/a" if s["spearman"] is None else f"{s['spearman']:.2f}"
            extra = [f"{s['mae_truth']:.4f}", f"{s['coverage_truth']:.0%}"] if truth else []
            t.add_row(
                escape(task), f"{s['mae']:.3f}", f"{s['coverage']:.0%}", *extra, rho, str(s["n"])
            )
        console.print(t)


def _source(rep: dict[str, Any]) -> str:
    """``bayes, 48 rows``; a published card has no rows."""
    return rep["backend"] + ("" if rep["rows"] is None else f", {rep['rows']} rows")


def weights_table(stacked: Any) -> Any:
    """Law, weight and score (ELPD or held-out log density) as a polars frame."""
    import polars as pl  # deferred: heavy

    names = stacked.meta.get("laws") or [f.law.name for f in stacked.fits]
    scores = stacked.meta.get("scores", {})
    symbol = {c: a for a, c in ALIASES.items()}
    beyond = {
        f"weight beyond {symbol.get(c, c)}={largest:g}": [float(w) for w in ws]
        for c, (largest, ws) in stacked.extrapolation.items()
    }
    score = [scores.get(n) for n in names]
    return pl.DataFrame(
        {
            "law": names,
            "weight": [float(w) for w in stacked.weights],
            **beyond,
            **({"score": score} if any(v is not None for v in score) else {}),
            "converged": [f.converged for f in stacked.fits],
        }
    )


# --- a stacked fit in a notebook: what `StackedFit`'s methods print and return -----------------


def _law_names(stacked: Any) -> list[str]:
    return list(stacked.meta.get("laws") or unique_names([f.law.name for f in stacked.fits]))


def stack_summary(stacked: Any) -> Any:
    """One row per law, heaviest first: ``law``, ``weight`` (and the held-out weights beyond
    the table's largest N, L or C, when the stack has them), ``score`` (ELPD-LOO or held-out
    log density), then each law's headline numbers: ``params`` (how many), ``r2``,
    ``elpd_loo`` (Bayesian fits), ``converged`` and ``headline`` (its NOT CONVERGED or MISFIT
    line, else null). A polars frame."""
    import polars as pl  # deferred: heavy

    table = weights_table(stacked).drop("converged")
    fits = stacked.fits
    rows = pl.DataFrame(
        {
            "params": [len(f.law.param_names) for f in fits],
            "r2": [_number(f.diagnostics.get("r2")) for f in fits],
            "elpd_loo": [_number(f.diagnostics.get("elpd_loo")) for f in fits],
            "converged": [f.converged for f in fits],
            "headline": [f.headline() for f in fits],
        },
        schema={
            "params": pl.Int64,
            "r2": pl.Float64,
            "elpd_loo": pl.Float64,
            "converged": pl.Boolean,
            "headline": pl.String,
        },
    )
    if rows["elpd_loo"].null_count() == rows.height:
        rows = rows.drop("elpd_loo")
    return pl.concat([table, rows], how="horizontal").sort(
        "weight", descending=True, maintain_order=True
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def stack_params(stacked: Any) -> dict[str, dict[str, Any]]:
    """Each law's estimates (`FitResult.params`), by the law's name in the stack."""
    return {n: f.params for n, f in zip(_law_names(stacked), stacked.fits, strict=True)}


def stack_report(stacked: Any, prob: float = 0.9, width: int = 100) -> str:
    """The stack as plain text: its headline (NOT CONVERGED, MISFIT) if any, the weights and
    each law's numbers (`summary`), then each law's own report (`FitResult.fit_report`),
    heaviest law first."""
    buffer = io.StringIO()
    console = plain_console(buffer, width)
    headline = stacked.headline()
    if headline:
        console.print(headline, markup=False)
    summary = stack_summary(stacked)
    rows = stacked.fits[0].meta.get("rows")
    title = f"stacked fit of {len(stacked.fits)} laws" + (f", {rows} rows" if rows else "")
    table = Table(*summary.columns, title=f"{title}: weights from {stacked.method}")
    for row in summary.iter_rows():
        table.add_row(*[_cell(v) for v in row])
    console.print(table)
    text = "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
    order = np.argsort(-np.asarray(stacked.weights), kind="stable")
    names = _law_names(stacked)
    for i in order:
        text += f"\n{names[i]} (weight {float(stacked.weights[i]):.3g}):\n"
        text += stacked.fits[i].fit_report(prob, width=width)
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def stack_repr(stacked: Any) -> str:
    """``StackedFit(laws=[...], weights=[0.73, 0.27], method='PSIS-LOO', rows=96)``."""
    weights = [round(float(w), 3) for w in stacked.weights]
    rows = stacked.fits[0].meta.get("rows") if stacked.fits else None
    return (
        f"StackedFit(laws={_law_names(stacked)!r}, weights={weights}, "
        f"method={stacked.method!r}, rows={rows})"
    )
