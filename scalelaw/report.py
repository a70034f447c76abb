"""Text and JSON summaries of a fit, shared by the CLI and the quickstart."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scalelaw.fits.result import FitResult


def parameter_rows(result: FitResult, prob: float = 0.9) -> list[dict[str, Any]]:
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


def fit_report(result: FitResult, prob: float = 0.9) -> dict[str, Any]:
    """Everything a user reads after a fit, as plain data."""
    return {
        "law": result.law.name,
        "formula": result.law.formula or str(result.law.expr),
        "backend": result.backend,
        "interval": prob,
        "parameters": parameter_rows(result, prob),
        "diagnostics": {k: v for k, v in result.diagnostics.items() if k != "rhat"},
        "converged": result.converged,
        "not_converged": result.headline(),
        "holdout": result.meta.get("holdout"),
        "rows": result.meta.get("rows"),
        "data_hash": result.meta.get("data_hash"),
        "seed": result.meta.get("seed"),
    }


def fit_text(result: FitResult, prob: float = 0.9, *, width: int = 100) -> str:
    """What `print_fit` shows (the CLI's report of a fit) as plain text: no colour, no markup,
    tables `width` characters wide at most. `FitResult.fit_report` returns it."""
    buffer = io.StringIO()
    console = Console(
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
    print_fit(result, console, prob)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def print_fit(result: FitResult, console: Console, prob: float = 0.9) -> None:
    rep = fit_report(result, prob)
    if rep["not_converged"]:
        console.print(f"[bold red]{escape(rep['not_converged'])}[/]", highlight=False)
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
