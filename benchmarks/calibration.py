"""Are held-out (extrapolation) intervals honest? Coverage and error on the largest model size.

Each case fits on every model size but the largest, predicts the largest, and pools over the
held-out rows of every simulated set (or of the one real table):

* (a) the sparse law on its own simulations (the study's prefill card, paper grid, 100 samples
  per row): the law is right, so the 90% intervals should cover about 90% of the rows.
* (b) misspecification: the truth saturates below 1 (floor 0.25, ceiling 0.85); the log-linear
  sparse law, the (correct) floor-and-ceiling law, and their stack, whose weights come from the
  largest *training* size (inner holdout), scored on the outer held-out size.
* (real) Chinchilla's law on the Misfitting losses (Li et al. 2025), largest model held out; a
  floor-and-ceiling and a plain logistic law on MMLU against training compute (Ruan et al.
  2024), fitted below 3e23 FLOP and scored above.

Progress goes to stderr (one line per fit), the markdown table to stdout.

    python benchmarks/calibration.py [--sets 10] [--backends bayes,lsq] [--cases a,b,real]
                                     [--quick] [--out results.json] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaw.fits import (
    FitOptions,
    FitResult,
    FitWarning,
    Law,
    fit,
    get_card,
    get_law,
    holdout_scores,
    predict_table,
    simulate,
)
from scalelaw.fits.stacking import stack

PROB = 0.9
HOLDOUT = "N=max"

# Case (b): a floor-and-ceiling truth that is close to its ceiling at the largest size.
B_SIZES = (0.5e9, 1.5e9, 4e9, 12e9, 36e9)
B_COMPRESSIONS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
B_LENGTHS = (4096.0, 16384.0)
B_SAMPLES = 960
B_CEILING = 0.85
B_SLOPES = {"alpha": 1.2, "beta": -0.3, "gamma": -0.5}
#: Linear predictor at N = 36e9, L = 4096, C = 1: sigmoid(3) = 0.95 of the way to the ceiling.
B_ETA_TOP = 3.0

MISFITTING = "external/misfitting_li2025/scaling_results_last_ckpt_only.csv"
RUAN = "external/obsscaling_ruan2024/base_llm_benchmark_eval.csv"
RUAN_SPLIT = 300.0  # FLOPs (1E21): fit below 3e23 FLOP, predict at and above


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the table: pooled sums over the held-out rows of every set."""

    case: str
    law: str
    backend: str
    metric: str = "mae_truth"  # what `err` holds: mae_truth, rel_err (real loss) or mae (real)
    sets: int = 0
    rows: int = 0
    err_sum: float = 0.0
    cov_truth_sum: float = 0.0
    has_truth: bool = True
    cov_obs_sum: float = 0.0
    not_converged: int = 0
    weights: list[list[float]] = field(default_factory=list)
    per_set: list[dict[str, Any]] = field(default_factory=list)

    def add(self, scores: dict[str, Any], converged: bool, err: float | None = None) -> None:
        n = int(scores["rows"])
        self.sets += 1
        self.rows += n
        self.err_sum += n * (scores["mae_truth"] if err is None else err)
        if self.has_truth:
            self.cov_truth_sum += n * scores["coverage_truth"]
        self.cov_obs_sum += n * scores["coverage"]
        self.not_converged += 0 if converged else 1
        self.per_set.append(
            {k: v for k, v in scores.items() if k != "per_task"} | {"converged": converged}
        )

    def summary(self) -> dict[str, Any]:
        n = max(self.rows, 1)
        out: dict[str, Any] = {
            "case": self.case,
            "law": self.law,
            "backend": self.backend,
            "sets": self.sets,
            "rows": self.rows,
            "metric": self.metric,
            "error": self.err_sum / n,
            "coverage_truth": self.cov_truth_sum / n if self.has_truth else None,
            "coverage_obs": self.cov_obs_sum / n,
            "not_converged": self.not_converged,
        }
        if self.weights:
            out["weights_mean"] = [float(w) for w in np.mean(self.weights, axis=0)]
        return out


def run_fit(label: str, data: pl.DataFrame, law: Law, opts: FitOptions, **kw: Any) -> Any:
    """One fit with its warnings silenced; one progress line with time and verdict."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit(data, law, opts, **kw)
    verdict = res.headline() or "converged"
    held = res.meta.get("holdout")
    extra = ""
    if held:
        extra = f" held-out mae {held['mae']:.4f} coverage {held['coverage']:.2f}"
        if "coverage_truth" in held:
            extra += f" truth-coverage {held['coverage_truth']:.2f}"
    log(f"{label}: {time.perf_counter() - start:.1f}s, {verdict}{extra}")
    return res


def options(args: argparse.Namespace, backend: str, seed: int, case: str) -> FitOptions:
    opts = FitOptions(backend=backend, seed=seed, loo=False)
    if args.quick:
        return replace(opts, draws=200, tune=200, chains=2, bootstrap=50)
    if case == "a" and backend == "bayes":
        return replace(opts, draws=500, tune=500)
    return opts


# --- case (a) ------------------------------------------------------------------------------
def case_a(args: argparse.Namespace, rows: dict[tuple[str, str, str], Row]) -> None:
    card = get_card("sparse-frontier-v1:prefill")
    law = get_law("sparse-frontier")
    for s in range(args.sets):
        data = simulate(card, "paper", samples=100, seed=s)
        for backend in args.backends:
            row = rows.setdefault(("a", law.name, backend), Row("a", law.name, backend))
            opts = options(args, backend, s, "a")
            res = run_fit(f"[a] set {s} {law.name} {backend}", data, law, opts, holdout=HOLDOUT)
            row.add(res.meta["holdout"], res.converged)


# --- case (b) ------------------------------------------------------------------------------
def b_truth() -> Any:
    a, b = B_SLOPES["alpha"], B_SLOPES["beta"]
    eps = B_ETA_TOP - a * math.log(max(B_SIZES)) - b * math.log(min(B_LENGTHS))
    fixed = {"eps": eps, **B_SLOPES, "ceiling": B_CEILING, "delta": {"all": 0.0}}
    return FitResult.card(get_law("floor-ceiling:0.25"), fixed)


def b_grid() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": "all"}
            for n in B_SIZES
            for c in B_COMPRESSIONS
            for length in B_LENGTHS
        ]
    )


def case_b(args: argparse.Namespace, rows: dict[tuple[str, str, str], Row]) -> None:
    truth = b_truth()
    grid = b_grid()
    laws = [get_law("sparse-frontier"), get_law("floor-ceiling:0.25")]
    stacked_name = "stack(" + " + ".join(law.name for law in laws) + ")"
    for s in range(args.sets):
        data = simulate(truth, grid, samples=B_SAMPLES, seed=s)
        top = data["params"].max()
        train, test = data.filter(pl.col("params") < top), data.filter(pl.col("params") == top)
        for backend in args.backends:
            opts = options(args, backend, s, "b")
            for law in laws:
                row = rows.setdefault(("b", law.name, backend), Row("b", law.name, backend))
                res = run_fit(f"[b] set {s} {law.name} {backend}", data, law, opts, holdout=HOLDOUT)
                row.add(res.meta["holdout"], res.converged)
            # stack: fits on all training rows, weights from the largest training size
            fits = [
                run_fit(
                    f"[b] set {s} {law.name} {backend} (training rows, for the stack)",
                    train,
                    law,
                    opts,
                )
                for law in laws
            ]
            clock = [time.perf_counter()]

            def progress(name: str, s: int = s, backend: str = backend) -> None:
                log(
                    f"[b] set {s} stack: refitting {name} {backend} without the largest "
                    "training size (inner holdout)"
                )

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                stacked = stack(fits, data=train, holdout=HOLDOUT, options=opts, progress=progress)
                scores = holdout_scores(stacked, test, PROB)
            weights = [float(w) for w in stacked.weights]
            log(
                f"[b] set {s} {stacked_name} {backend}: stacked in "
                f"{time.perf_counter() - clock[0]:.1f}s, weights "
                + ", ".join(
                    f"{n} {w:.3f}" for n, w in zip(stacked.meta["laws"], weights, strict=True)
                )
                + f"; held-out mae {scores['mae']:.4f} coverage {scores['coverage']:.2f} "
                f"truth-coverage {scores['coverage_truth']:.2f}"
            )
            row = rows.setdefault(("b", stacked_name, backend), Row("b", stacked_name, backend))
            row.add(scores, stacked.converged)
            row.weights.append(weights)


# --- real data -----------------------------------------------------------------------------
def misfitting_tables(path: Path) -> dict[str, tuple[pl.DataFrame, bool]]:
    """Best learning rate per (N, D), and every run as a replicate."""
    raw = pl.read_csv(path).select("loss", "N", "D", "peak_lr")
    best = raw.group_by(["N", "D"]).agg(pl.col("loss").min()).sort(["N", "D"])
    return {
        "best lr per (N, D)": (best, False),
        "all lr, replicates": (raw.select("loss", "N", "D").sort(["N", "D"]), True),
    }


def ruan_laws() -> dict[str, Law]:
    common: dict[str, Any] = {"covariates": ["F"], "response": "score", "likelihood": "normal"}
    return {
        "floor-ceiling (MMLU)": Law.from_string(
            "0.25 + (ceiling - 0.25) * sigmoid(a + b * log(F))",
            name="floor-ceiling-mmlu",
            bounds={"ceiling": (0.25, 1.0)},
            **common,
        ),
        "logistic (MMLU)": Law.from_string(
            "sigmoid(a + b * log(F))", name="logistic-mmlu", **common
        ),
    }


def case_real(args: argparse.Namespace, rows: dict[tuple[str, str, str], Row]) -> None:
    shared = Path(args.shared)
    paths = {"misfitting": shared / MISFITTING, "ruan": shared / RUAN}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        log(f"[real] skipped: missing {', '.join(missing)} (give --shared PATH)")
        return
    law = get_law("chinchilla-form")
    for variant, (table, replicates) in misfitting_tables(paths["misfitting"]).items():
        top = table["N"].max()
        train, test = table.filter(pl.col("N") < top), table.filter(pl.col("N") == top)
        name = f"{law.name} ({variant})"
        for backend in args.backends:
            opts = options(args, backend, 0, "real")
            res = run_fit(
                f"[real] misfitting {name} {backend}", train, law, opts, replicates=replicates
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                scores = holdout_scores(res, test, PROB)
                pred = predict_table(res, test, prob=PROB, samples=1)
            obs = test["loss"].to_numpy()
            rel = float(np.mean(np.abs(pred["mean"].to_numpy() - obs) / obs))
            log(
                f"[real] misfitting {name} {backend}: {len(obs)} held-out losses, relative "
                f"error {rel:.4f}, coverage {scores['coverage']:.2f}"
            )
            key = ("real: Misfitting, N=max", name, backend)
            row = rows.setdefault(key, Row(*key, metric="rel_err", has_truth=False))
            row.add(scores, res.converged, err=rel)
    raw = pl.read_csv(paths["ruan"])
    table = raw.select(pl.col("FLOPs (1E21)").alias("F"), pl.col("MMLU").alias("score"))
    table = table.drop_nulls()
    train, test = table.filter(pl.col("F") < RUAN_SPLIT), table.filter(pl.col("F") >= RUAN_SPLIT)
    for name, ruan_law in ruan_laws().items():
        for backend in args.backends:
            opts = options(args, backend, 0, "real")
            # different models share a training compute: keep them as replicates
            res = run_fit(f"[real] ruan {name} {backend}", train, ruan_law, opts, replicates=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                scores = holdout_scores(res, test, PROB)
            log(
                f"[real] ruan {name} {backend}: {test.height} held-out models, mae "
                f"{scores['mae']:.4f}, coverage {scores['coverage']:.2f}"
            )
            key = ("real: Ruan MMLU, >=3e23 FLOP", name, backend)
            row = rows.setdefault(key, Row(*key, metric="mae", has_truth=False))
            row.add(scores, res.converged, err=scores["mae"])


# --- table ---------------------------------------------------------------------------------
def markdown(summaries: list[dict[str, Any]]) -> str:
    head = (
        "| case | law | backend | sets | held-out rows | held-out MAE vs truth (real: see note) "
        "| coverage of truth, 90% expectation interval "
        "| coverage of observations, 90% predictive interval | NOT CONVERGED |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in summaries:
        if r["metric"] == "rel_err":
            err = f"{100 * r['error']:.2f}% (rel. error of mean loss)"
        elif r["metric"] == "mae":
            err = f"{r['error']:.4f} (MAE vs observed)"
        else:
            err = f"{r['error']:.4f}"
        cov_t = "n/a" if r["coverage_truth"] is None else f"{r['coverage_truth']:.3f}"
        lines.append(
            f"| {r['case']} | {r['law']} | {r['backend']} | {r['sets']} | {r['rows']} | {err} "
            f"| {cov_t} | {r['coverage_obs']:.3f} | {r['not_converged']}/{r['sets']} |"
        )
    return "\n".join(lines)


def notes(args: argparse.Namespace, summaries: list[dict[str, Any]]) -> str:
    draws = (
        "quick run: bayes draws=200 tune=200 chains=2, lsq bootstrap=50"
        if args.quick
        else "bayes: case (a) draws=500 tune=500 (4 chains); other cases draws=1000 tune=1000; "
        "lsq: default bootstrap 200"
    )
    out = [
        "",
        f"Notes: {draws}; seeds 0..{args.sets - 1} (data and fit); intervals central {PROB:.0%}.",
    ]
    for r in summaries:
        if "weights_mean" in r:
            out.append(
                f"Stacking weights ({r['backend']}, mean over {r['sets']} sets): "
                + ", ".join(
                    f"{n} {w:.3f}"
                    for n, w in zip(
                        r["law"].removeprefix("stack(").removesuffix(")").split(" + "),
                        r["weights_mean"],
                        strict=True,
                    )
                )
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", type=int, default=None, help="simulated sets (10; quick: 2)")
    parser.add_argument("--backends", default="bayes,lsq")
    parser.add_argument("--cases", default="a,b,real")
    parser.add_argument("--quick", action="store_true", help="2 sets, fewer draws: a smoke run")
    parser.add_argument("--out", default=None, help="write the rows and settings as JSON")
    parser.add_argument("--shared", default="../shared/data", help="reference data folder")
    args = parser.parse_args()
    if args.sets is None:
        args.sets = 2 if args.quick else 10
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - {"a", "b", "real"} or set(args.backends) - {"bayes", "lsq"}
    if unknown:
        parser.error(f"unknown case or backend: {', '.join(sorted(unknown))}")
    rows: dict[tuple[str, str, str], Row] = {}
    start = time.perf_counter()
    runners = {"a": case_a, "b": case_b, "real": case_real}
    for case in cases:
        runners[case](args, rows)
    wall = time.perf_counter() - start
    summaries = [r.summary() for r in rows.values()]
    print(markdown(summaries))
    print(notes(args, summaries))
    print(f"Wall time: {wall / 60:.1f} min.")
    log(f"done in {wall:.0f}s")
    if args.out:
        settings = {k: v for k, v in vars(args).items()}
        payload = {
            "settings": settings,
            "wall_s": wall,
            "case_b_truth": {"ceiling": B_CEILING, **B_SLOPES, "eta_top": B_ETA_TOP},
            "rows": summaries,
            "per_set": {" | ".join(k): r.per_set for k, r in rows.items()},
            "weights": {" | ".join(k): r.weights for k, r in rows.items() if r.weights},
            "options": {b: asdict(options(args, b, 0, "b")) for b in args.backends},
        }
        Path(args.out).write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
