"""Fitted laws that agree on the grid and disagree beyond it: one law's decision against a stack's.

The truth is the study's prefill card (three tasks) with a compression slope that steepens with
length (`sparse-frontier-lc`: gamma + kappa ln L, kappa = -0.1, equal to the card's gamma at
32K). Measurements are simulated at 16K-64K for Qwen2.5 7B-72B and the study's ratios; the
decision is asked at 512K, eight times beyond the longest measured length. Two laws are fitted
(Bayesian, default priors): `sparse-frontier` (one slope) and `sparse-frontier-lc` (a slope
that moves with ln L), then stacked by PSIS-LOO. Each source's P(sparse better) per isoFLOPS
budget is printed beside the truth's answer.

    python benchmarks/stacked_decision.py [--kappa -0.1] [--samples 50] [--seed 0]
                                          [--seq-len 512K] [--budgets 6]

Progress goes to stderr, the markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any

import polars as pl

from scalelaw.fits import FitOptions, FitResult, fit, get_law, simulate
from scalelaw.fits.simulation import length_slope_card, paper_grid
from scalelaw.fits.stacking import StackedFit, stack
from scalelaw.frontier import FlopsCost, decide, get_architecture

TASKS = ("QuALITY", "SQuAD", "TOEFL")
LAWS = ("sparse-frontier", "sparse-frontier-lc")
PIVOT = 32768  # the length at which the truth's slope equals the card's gamma


def truth_card(kappa: float) -> FitResult:
    return length_slope_card(kappa, pivot=PIVOT, tasks=TASKS)


def run(
    kappa: float = -0.1,
    samples: int = 50,
    seed: int = 0,
    seq_len: int = 524288,
    budgets: int = 6,
    log: Any = None,
) -> dict[str, Any]:
    """Simulate, fit both laws, stack; P(sparse better) per budget for every source."""
    log = log or (lambda message: None)
    truth = truth_card(kappa)
    grid = paper_grid(list(TASKS)).filter(pl.col("seq_len") <= 65536)
    data = simulate(truth, grid, samples=samples, seed=seed)
    fits = []
    for name in LAWS:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(fit(data, get_law(name), FitOptions(backend="bayes", seed=seed)))
        log(f"fitted {name} in {time.perf_counter() - start:.0f} s")
    stacked = stack(fits)
    qwen = [get_architecture("qwen2.5", s) for s in ("7B", "14B", "32B", "72B")]
    sources: dict[str, FitResult | StackedFit] = {"truth": truth}
    sources.update(zip(LAWS, fits, strict=True))
    sources["stack"] = stacked
    probs: dict[str, list[float]] = {}
    flops: list[float] = []
    for name, src in sources.items():
        frame = decide(
            src, qwen, FlopsCost(), seq_len=seq_len, lengths=None, tasks=["QuALITY"],
            budgets=budgets,
        ).to_frame()  # fmt: skip
        probs[name] = [float(p) for p in frame["p_sparse_better"]]
        flops = [float(b) for b in frame["budget"]]
    return {
        "weights": dict(zip(LAWS, (float(w) for w in stacked.weights), strict=True)),
        "budgets": flops,
        "p_sparse_better": probs,
        "rows": len(data),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kappa", type=float, default=-0.1)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seq-len", type=int, default=524288)
    parser.add_argument("--budgets", type=int, default=6)
    args = parser.parse_args(argv)
    result = run(
        args.kappa, args.samples, args.seed, args.seq_len, args.budgets,
        log=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    print(f"{result['rows']} simulated rows (16K-64K); decision at L = {args.seq_len}\n")
    print("| law | stacking weight (PSIS-LOO) |\n|---|---|")
    for law, w in result["weights"].items():
        print(f"| {law} | {w:.2f} |")
    print("\nP(sparse better) per isoFLOPS budget\n")
    print("| source | " + " | ".join(f"{b:.3g}" for b in result["budgets"]) + " |")
    print("|---|" + "---|" * len(result["budgets"]))
    for name, ps in result["p_sparse_better"].items():
        print(f"| {name} | " + " | ".join(f"{p:.2f}" for p in ps) + " |")


if __name__ == "__main__":
    main()
