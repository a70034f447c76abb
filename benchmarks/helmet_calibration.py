"""Held-out calibration of the default path on HELMET (Yen et al. 2024), a real long-context table.

Llama-3.2 1B/3B and Llama-3.1 8B/70B Instruct x 8K-128K x 7 task categories (140 rows, scores
without per-example counts, compression 1). Two protocols: hold out 70B (fit 105 rows, predict
35) and hold out 128K (fit 112, predict 28). The default path (`fit_family`: every candidate
form the table suits, stacked) is scored beside each single law of the family:
coverage of the held-out scores by the 90% predictive interval, its median width, and the
mean absolute error of the predictive mean. The stack is scored three ways, all from one run
of `fit --law auto` (its default weighting, `--holdout auto`): with PSIS-LOO weights
(`--holdout loo`); with weights from the held-out log density of the same axis inside the fitted rows (`--holdout
N=max`: for N=max, fit 1B and 3B and score 8B), which ask how each form extrapolates rather
than how it interpolates; and with `--holdout auto`, the default, which uses PSIS-LOO weights
inside the fitted ranges and, for a point beyond the largest N or L, the weights held out on
that axis.

    python benchmarks/helmet_calibration.py [--shared ../shared/data] [--draws 1000] [--seed 0]

The table is read from the reference data folder, never copied. Seeds fixed: the same command
prints the same table.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from scalelaw.data import load_table
from scalelaw.fits import FitOptions
from scalelaw.fits.checking import interval_scores
from scalelaw.fits.family import AXES, fit_family
from scalelaw.fits.stacking import StackedFit
from scalelaw.fits.validation import split_holdout

HELMET = Path("external") / "helmet" / "helmet_llama3_inst.csv"
PROTOCOLS = ("N=max", "L=max")


def run(shared: Path, draws: int = 1000, seed: int = 0, log: Any = None) -> list[dict[str, Any]]:
    log = log or (lambda m: None)
    table = load_table(shared / HELMET)
    rows = []
    for spec in PROTOCOLS:
        train, test, desc = split_holdout(table, spec)
        assert test is not None
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auto = fit_family(
                train,
                FitOptions(backend="bayes", seed=seed, draws=draws, tune=draws),
                holdout="auto",
                progress=log,
            )
        log(f"{spec}: fitted in {time.perf_counter() - start:.0f} s")
        # one run gives every weighting: PSIS-LOO inside, and each axis's held-out weights
        column = AXES[spec.split("=")[0]]
        axis = auto.extrapolation[column][1]
        loo = StackedFit(auto.fits, auto.weights, "PSIS-LOO")
        held = StackedFit(auto.fits, axis, f"held-out {spec}")
        sources = [
            (f.law.name, f, f"{w_loo:.2f} / {w_held:.2f}")
            for f, w_loo, w_held in zip(auto.fits, loo.weights, held.weights, strict=True)
        ]
        sources += [
            ("stack, --holdout loo (PSIS-LOO weights)", loo, ""),
            (f"stack, held-out {spec} weights", held, ""),
            ("default: stack, --holdout auto (held-out weights beyond the fitted range)", auto, ""),
        ]
        for name, src, weight in sources:
            sc = interval_scores(src, test)
            cov, width, mae = sc["coverage"], sc["width"], sc["mae"]
            rows.append(
                {
                    "holdout": f"{desc} ({train.height} fit, {test.height} held out)",
                    "source": name,
                    "weights": weight,
                    "coverage": cov,
                    "width": width,
                    "mae": mae,
                    "headline": src.headline() or "",
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.shared / HELMET).exists():
        raise SystemExit(f"error: {args.shared / HELMET} not found (give --shared)")
    rows = run(args.shared, args.draws, args.seed, log=lambda m: print(m, file=sys.stderr))
    print(
        "| held out | source | weight (PSIS-LOO / held-out) | 90% coverage | median width | MAE "
        "| diagnostics |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        flag = r["headline"].split(":")[0] if r["headline"] else ""
        print(
            f"| {r['holdout']} | {r['source']} | {r['weights']} | {r['coverage']:.3f} | "
            f"{r['width']:.3f} | {r['mae']:.3f} | {flag} |"
        )


if __name__ == "__main__":
    main()
