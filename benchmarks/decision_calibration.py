"""Are the default path's decision probabilities calibrated when nobody knows the law's form?

For three truths (the study's prefill card; a compression slope that steepens with length,
kappa = -0.1; a floor of 0.25 and a ceiling of 0.85 around the card's linear predictor), many
data sets are simulated on Qwen2.5 7B/14B/32B x 16K/32K/64K x the study's 11 ratios x 3 tasks
x 50 samples (297 rows). Each is fitted the default way, from a table (`fit_family`: every
candidate form, stacked; `--holdout auto`, the default, weights a point beyond the table's
largest N, L or C by how each form extrapolates that axis, PSIS-LOO inside; `--holdout loo`
weights by PSIS-LOO everywhere, the default before), and `decide` asks, at 128K, 256K and 512K and six isoFLOPS
budgets against Qwen2.5 7B-72B, how likely sparse is better (score: mean over the 3 tasks).
The truth's own decision says which answer is right. Printed per truth: decision points,
confident errors (P >= 0.95 on the wrong side, or <= 0.05 when sparse is right), Brier score,
and the reliability table (bins of P against the fraction where sparse is really better).

    python benchmarks/decision_calibration.py [--sets 20] [--seeds 11,0-10] [--draws 500]
                                              [--chains 2] [--truths card,kappa,floor]
                                              [--holdout auto|loo] [--family expanded|one-slope]
                                              [--single] [--out FILE] [--compare FILE ...]
                                              [--score-only]

`--score-only` runs nothing: it scores the sets among `--seeds` that the results file holds
(each truth its own number of sets while a long run is under way). `--compare FILE` (repeatable) scores the same sets, truth and seed, from another results file
beside this run's: one family or weighting against another on identical simulated tables.
`--family one-slope` fits the family as it was before every form's compression slope could move
with length (`fit_family(..., expand=False)`), for comparison. `--single` also scores the study's
one law (`sparse-frontier`, binomial) on the same sets, the path that gave confident errors
before. Each finished set is appended to `--out` (default
benchmarks/results/decisions-HOLDOUT.jsonl, -one-slope before the suffix for that family) as a
JSON line (a rerun resumes; `--seeds` runs and scores those sets, in that order), progress goes
to stderr, the tables to stdout. Seeds: set s simulates and fits with seed s. Sampling uses 2
chains of 500 draws (after 500 tuning steps), the fits' own default is 4 chains of 1000. With
`--holdout auto` (three more refits of every form, one per held-out axis) a set took 8-14
minutes on 2 cores before the backend compiled each model once; now about 5 alone, 10-13 for
each of two runs side by side (different `--truths` and `--out` files, merged after: compiling
is one core's work, so two runs nearly double what the machine does in an hour).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaw.fits import FitOptions, FitResult, fit, get_card, get_law, simulate
from scalelaw.fits.family import fit_family
from scalelaw.fits.simulation import length_slope_card, paper_grid
from scalelaw.frontier import FlopsCost, decide, get_architecture

TASKS = ("QuALITY", "SQuAD", "TOEFL")
LENGTHS = (131072, 262144, 524288)
PIVOT = 32768  # where the length-aware truth's compression slope equals the card's gamma
BINS = (0.0, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)


def truth(name: str) -> FitResult:
    """The three truths, as cards restricted to the three tasks."""
    card = get_card("sparse-frontier-v1:prefill")
    values = dict(card.meta["values"])
    values["delta"] = {t: values["delta"][t] for t in TASKS}
    if name == "card":
        return FitResult.card(card.law, values)
    if name == "kappa":
        return length_slope_card(-0.1, pivot=PIVOT, tasks=TASKS)
    if name == "floor":
        return FitResult.card(get_law("floor-ceiling:0.25"), {**values, "ceiling": 0.85})
    raise SystemExit(f"unknown truth '{name}' (card, kappa, floor)")


def grid() -> pl.DataFrame:
    g = paper_grid(list(TASKS))
    return g.filter((pl.col("seq_len") <= 65536) & (pl.col("params") < 5e10))


def probabilities(src: Any) -> list[float]:
    qwen = [get_architecture("qwen2.5", s) for s in ("7B", "14B", "32B", "72B")]
    out: list[float] = []
    for length in LENGTHS:
        frame = decide(
            src, qwen, FlopsCost(), seq_len=length, lengths=None, budgets=6, draws=1000
        ).to_frame()
        out += [float("nan") if p is None else float(p) for p in frame["p_sparse_better"]]
    return out


def one_set(
    name: str,
    seed: int,
    draws: int,
    chains: int,
    single: bool,
    holdout: str,
    log: Any,
    expand: bool = True,
) -> dict[str, Any]:
    t = truth(name)
    data = simulate(t, grid(), samples=50, seed=seed)
    opts = FitOptions(backend="bayes", seed=seed, draws=draws, tune=draws, chains=chains)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = fit_family(data, opts, holdout=holdout, expand=expand)
    row: dict[str, Any] = {
        "truth": name,
        "seed": seed,
        "true": probabilities(t),
        "stack": probabilities(stacked),
        "weights": dict(
            zip(stacked.meta["laws"], (float(w) for w in stacked.weights), strict=True)
        ),
        "beyond": {
            column: [float(w) for w in ws] for column, (_, ws) in stacked.extrapolation.items()
        },
        # each form alone: whether an error is the weighting's or every form's
        "forms": {f.law.name: probabilities(f) for f in getattr(stacked, "fits", [])},
        "headline": stacked.headline(),
        "seconds": time.perf_counter() - start,
    }
    if single:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = fit(data, get_law("sparse-frontier"), opts)
        row["single"] = probabilities(one)
    log(f"{name} set {seed}: {row['seconds']:.0f} s, weights {row['weights']}")
    return row


def score(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    p = np.concatenate([np.asarray(r[key], float) for r in rows])
    y = np.concatenate([np.asarray(r["true"], float) for r in rows])
    keep = np.isfinite(p) & np.isfinite(y)
    p, right = p[keep], y[keep] > 0.5
    confident_wrong = int(np.sum(((p >= 0.95) & ~right) | ((p <= 0.05) & right)))
    table = []
    for lo, hi in itertools.pairwise(BINS):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            table.append((lo, hi, int(m.sum()), float(p[m].mean()), float(right[m].mean())))
    return {
        "points": int(p.size),
        "confident_wrong": confident_wrong,
        "brier": float(np.mean((p - right) ** 2)),
        "reliability": table,
    }


def wrong_points(row: dict[str, Any], key: str) -> list[int]:
    """Indices of the decision points where `key`'s P was >= 0.95 on the wrong side."""
    p, y = np.asarray(row[key], float), np.asarray(row["true"], float)
    return [
        i for i in range(p.size) if (p[i] >= 0.95 and y[i] < 0.5) or (p[i] <= 0.05 and y[i] > 0.5)
    ]


def confident_errors(row: dict[str, Any], key: str) -> int:
    """Decision points of one set where `key`'s P was >= 0.95 on the wrong side."""
    return score([row], key)["confident_wrong"]


def print_forms(rows: list[dict[str, Any]]) -> None:
    """Each candidate form alone, from the same fits as the stack: whether the stack's errors
    are the weighting's (some form alone does better) or every form's."""
    laws = list(rows[0]["forms"])
    print(
        "\n| form alone (same fits) | confident errors | Brier | sets where its weight beyond the grid is largest |"
    )
    print("|---|---|---|---|")
    for law in laws:
        alone = [{"true": r["true"], "p": r["forms"][law]} for r in rows if law in r["forms"]]
        s = score(alone, "p")
        top = sum(1 for r in rows if _joint_weights(r).get(law) == max(_joint_weights(r).values()))
        print(f"| {law} | {s['confident_wrong']} | {s['brier']:.4f} | {top} of {len(rows)} |")
    # equal weights over the forms: whether spreading the weight alone would have helped
    equal = [
        {"true": r["true"], "p": list(np.mean([r["forms"][law] for law in laws], axis=0))}
        for r in rows
    ]
    even = score(equal, "p")
    print(f"| equal weights (same fits) | {even['confident_wrong']} | {even['brier']:.4f} | |")
    stack = score(rows, "stack")
    print(f"| stack (default) | {stack['confident_wrong']} | {stack['brier']:.4f} | |")


def true_margins(name: str) -> list[tuple[int, str, float]]:
    """(length, sparse configuration, true score of sparse minus dense) at every decision
    point of the truth, in the order of `probabilities`."""
    qwen = [get_architecture("qwen2.5", s) for s in ("7B", "14B", "32B", "72B")]
    out: list[tuple[int, str, float]] = []
    for length in LENGTHS:
        frame = decide(
            truth(name), qwen, FlopsCost(), seq_len=length, lengths=None, budgets=6, draws=1
        ).to_frame()
        for r in frame.iter_rows(named=True):
            label = f"{r['sparse_size']} C={r['sparse_compression']:g} vs {r['dense_size']}"
            out.append((length, label, float(r["diff_mean"])))
    return out


def print_points(name: str, rows: list[dict[str, Any]]) -> None:
    """Where the Brier score comes from: each decision point's true margin (sparse minus dense
    score under the truth), mean P and share of the score. Points whose margin is a point or
    two of accuracy, 4-16x beyond the longest length measured, are where an honest P sits
    near 0.5 and costs about 0.25 each."""
    p = np.array([r["stack"] for r in rows], float)
    y = np.array([r["true"] for r in rows], float)
    per_point = np.nanmean((p - y) ** 2, axis=0)
    total = float(np.nanmean((p - y) ** 2))
    print("\n| L | sparse vs dense | true margin | mean P | Brier at the point | share of Brier |")
    print("|---|---|---|---|---|---|")
    # not strict: a results file from another grid has its own number of points
    points = zip(per_point, true_margins(name), strict=False)
    for i, (_, (length, label, margin)) in enumerate(points):
        if per_point[i] < 0.005:
            continue
        share = per_point[i] / per_point.size / total if total else 0.0
        print(
            f"| {length // 1024}K | {label} | {margin:+.3f} | {np.nanmean(p[:, i]):.2f} | "
            f"{per_point[i]:.3f} | {share:.0%} |"
        )
    print("(points with Brier below 0.005 left out)")


def _joint_weights(row: dict[str, Any]) -> dict[str, float]:
    """The weights a decision beyond the grid used: those held out on the axes it leaves (N and
    L for these decisions), averaged, as `StackedFit.point_weights(joint=True)` takes them."""
    axes = [row["beyond"][c] for c in ("params", "seq_len") if c in row.get("beyond", {})]
    if not axes:
        return row["weights"]
    return {law: float(np.mean([a[i] for a in axes])) for i, law in enumerate(row["weights"])}


def seed_list(text: str) -> list[int]:
    """'11,0-3' -> [11, 0, 1, 2, 3]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--truths", default="card,kappa,floor")
    parser.add_argument("--seeds", type=seed_list, default=None)
    parser.add_argument("--holdout", choices=("auto", "loo"), default="auto")
    parser.add_argument("--family", choices=("expanded", "one-slope"), default="expanded")
    parser.add_argument("--single", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--compare", type=Path, action="append", default=[])
    parser.add_argument("--score-only", action="store_true")
    args = parser.parse_args(argv)
    suffix = "" if args.family == "expanded" else "-one-slope"
    args.out = args.out or Path(f"benchmarks/results/decisions-{args.holdout}{suffix}.jsonl")
    seeds = args.seeds if args.seeds is not None else list(range(args.sets))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    if args.out.exists():
        done = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    names = args.truths.split(",")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    # sets outer, truths inner: an interrupted run has scored every truth on its first sets
    for seed in seeds:
        for name in names:
            if args.score_only or any(r["truth"] == name and r["seed"] == seed for r in done):
                continue
            row = one_set(
                name,
                seed,
                args.draws,
                args.chains,
                args.single,
                args.holdout,
                log,
                expand=args.family == "expanded",
            )
            done.append(row)
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    for name in names:
        rows = [r for r in done if r["truth"] == name and r["seed"] in seeds]
        for key in ("stack", "single"):
            if not rows or key not in rows[0]:
                continue
            s = score(rows, key)
            label = "default (family, stacked)" if key == "stack" else "sparse-frontier alone"
            print(
                f"\n### truth {name}, {label}: {len(rows)} sets, {s['points']} decision points, "
                f"{s['confident_wrong']} confident errors, Brier {s['brier']:.4f}\n"
            )
            print("| P(sparse better) | points | mean P | fraction sparse really better |")
            print("|---|---|---|---|")
            for lo, hi, n, mean_p, frac in s["reliability"]:
                print(f"| {lo:.2f}-{hi:.2f} | {n} | {mean_p:.3f} | {frac:.3f} |")
            if key == "stack":
                for r in rows:
                    if n_wrong := confident_errors(r, key):
                        top = max(r["weights"].items(), key=lambda kv: kv[1])
                        print(
                            f"\nConfident errors in set {r['seed']}: {n_wrong} "
                            f"(largest stacking weight: {top[0]} {top[1]:.2f})"
                        )
                        for law, p in r.get("forms", {}).items():
                            at = [p[i] for i in wrong_points(r, key)]
                            print(f"- {law} alone: P = {', '.join(f'{x:.2f}' for x in at)}")
        if rows and rows[0].get("forms"):
            print_forms(rows)
        if rows:
            print_points(name, rows)
        if rows:
            flagged = sum(1 for r in rows if r["headline"])
            mean_w: dict[str, float] = {}
            for r in rows:
                for law, w in r["weights"].items():
                    mean_w[law] = mean_w.get(law, 0.0) + w / len(rows)
            print(
                f"\nMean weights: {', '.join(f'{k} {v:.2f}' for k, v in mean_w.items())}; "
                f"stacks with a NOT CONVERGED or MISFIT headline: {flagged} of {len(rows)}"
            )
    if args.compare:
        print_comparison(done, names, seeds, args.compare)


def print_comparison(
    done: list[dict[str, Any]], names: list[str], seeds: list[int], others: list[Path]
) -> None:
    """The same sets (truth and seed) scored from other results files: one family or weighting
    against another on identical simulated tables."""
    print("\n| truth | results | sets | points | confident errors | Brier |")
    print("|---|---|---|---|---|---|")
    for name in names:
        mine = {r["seed"]: r for r in done if r["truth"] == name and r["seed"] in seeds}
        files: list[tuple[str, dict[int, dict[str, Any]]]] = [("this run", mine)]
        for path in others:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            files.append((path.name, {r["seed"]: r for r in rows if r["truth"] == name}))
        common = [s for s in mine if all(s in f for _, f in files)]
        if not common:
            continue
        for label, f in files:
            sc = score([f[s] for s in common], "stack")
            print(
                f"| {name} | {label} | {len(common)} | {sc['points']} | "
                f"{sc['confident_wrong']} | {sc['brier']:.4f} |"
            )


if __name__ == "__main__":
    main()
