"""Text and JSON summaries of a fit, shared by the CLI and the quickstart."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scalelaw.fits.result import FitResult


def parameter_rows(result: FitResult, prob: float = 0.9) -> list[dict[str, Any]]:
    """One row per scalar parameter or group level: estimate and central interval."""
    rows = []
    est = result.estimates()
    for name in result.law.param_names:
        draws = result.draws[name]
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        value = np.asarray(est[name])[0]
        if draws.ndim == 1:
            rows.append(
                {"param": name, "estimate": float(value), "lower": float(lo), "upper": float(hi)}
            )
            continue
        column = result.law.groups[name]
        for i, level in enumerate(result.levels[column]):
            rows.append(
                {
                    "param": f"{name}[{level}]",
                    "estimate": float(value[i]),
                    "lower": float(lo[i]),
                    "upper": float(hi[i]),
                }
            )
    return rows


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


def print_fit(result: FitResult, console: Console, prob: float = 0.9) -> None:
    rep = fit_report(result, prob)
    if rep["not_converged"]:
        console.print(f"[bold red]{escape(rep['not_converged'])}[/]", highlight=False)
    label = "median" if result.backend == "bayes" else "optimum"
    spread = "posterior" if result.backend == "bayes" else "bootstrap"
    table = Table(
        "parameter",
        label,
        f"{prob:.0%} {spread} interval",
        title=escape(f"{rep['law']} ({rep['backend']}, {rep['rows']} rows): {rep['formula']}"),
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
    else:
        parts += [
            f"starts {d['starts']} ({d.get('reached_best', '?')} of {d.get('refined', '?')} "
            "refinements reached the best objective)",
            f"Huber delta {d['huber_delta']:g}",
            f"bootstrap {d['bootstrap']}",
        ]
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
