"""Planning study: at equal GPU-hours, is the planner's data closer to the truth?

Two simulated worlds' truths, on the study's grid for Qwen2.5 7B/14B/32B/72B (lengths 16K-128K,
the eleven study ratios, vertical-slash, the six tasks `scalelaw measure` generates, 100 samples
per configuration):

* card: the study's published prefill card (`sparse-frontier-v1:prefill`), inside the law the
  planner fits (`sparse-frontier`);
* kappa: the card with a compression slope that steepens with length (gamma + kappa ln L,
  kappa = -0.1, equal to the card's slope at 32K), outside the planner's law.

Every strategy starts from the same seed design (dense points of the 7B and 14B models at every
length and task) and is charged GPU-hours by the planner's cost model (prefill FLOPs at 400
TFLOP/s plus answer decoding at 2.5 TB/s per sample):

* planned: fit -> `scalelaw.frontier.planning.plan` for the 128K decision within a round's
  GPU-hours -> measure (simulate) the batch -> refit, for a fixed number of rounds;
* cheapest-first: the unmeasured configurations in order of cost;
* random: the unmeasured configurations in a seeded random order.

After every planner round the baselines are filled to the planner's cumulative spend (the
configuration that brings a baseline nearest to it is the last one taken), so the three are
compared at equal GPU-hours. Each fit is scored against the simulated truth, not against its own
belief: is its decision at 128K and the target budget right (posterior P > 0.5 on the true
side), the posterior probability it puts on the wrong side, whether that is a confident error
(P(wrong) >= 0.95), and the relative error of its posterior-median critical length.

A configuration measured again gets a fresh simulated outcome, pooled with the earlier ones into
one row of the refit; all strategies see the same outcome for the same (configuration, repeat),
so they differ only in what they choose to measure. Everything is seeded: two runs with one
`--seed` print the same tables. Progress goes to stderr, the markdown tables to stdout.

    python benchmarks/planning.py [--worlds 3] [--truths card,kappa] [--rounds 3]
                                  [--round-hours 4] [--random 2] [--backend bayes|lsq]
                                  [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scalelaw.fits import FitOptions, FitResult, fit, get_card, get_law, predict_draws, simulate
from scalelaw.fits.simulation import length_slope_card
from scalelaw.frontier import (
    STUDY_COMPRESSIONS,
    FlopsCost,
    average_over_tasks,
    critical_length,
    get_architecture,
)
from scalelaw.frontier.planning import (
    V1_TASK_NAMES,
    Candidate,
    PlanError,
    Target,
    candidates_from_dict,
    decision_configs,
    plan,
    sparse_wins,
)

SIZES = ("7B", "14B", "32B", "72B")
MODELS = [f"Qwen/Qwen2.5-{s}-Instruct" for s in SIZES]
TASKS = V1_TASK_NAMES  # generated task -> the card's task
cost_fn = FlopsCost()  # prefill FLOPs, batch 1
LENGTHS = [16384, 32768, 65536, 131072]
SAMPLES = 100
#: Between the dense 32B (3.1e16) and the dense 72B (6.4e16) at 128K: under the card the sparse
#: 72B at C=2.5 beats the dense 32B by 0.013 in mean score, a close call.
BUDGET = 4e16
TARGET = Target(131072.0, BUDGET)
SCAN = [float(2**k) for k in range(12, 21)]  # 4K-1M: the critical length's default scan
SEED_SIZES = ("7B", "14B")
KAPPA = -0.1
PIVOT = 32768  # where the kappa truth's compression slope equals the card's
STRATEGIES = ("planned", "cheapest-first", "random")
err = Console(stderr=True)


def log(msg: str) -> None:
    err.print(msg, markup=False, highlight=False)


def archs() -> list[Any]:
    return [get_architecture("qwen2.5", s) for s in SIZES]


def candidate_grid() -> dict[str, Any]:
    return {
        "name": "planning-study",
        "seed": 0,
        "samples": SAMPLES,
        "lengths": LENGTHS,
        "compression": list(STUDY_COMPRESSIONS),
        "models": MODELS,
        "dtype": "bfloat16",
        "methods": {"vertical-slash": {}},
        "tasks": {t: {} for t in TASKS},
    }


# --- truth and scores -----------------------------------------------------------------------------
def truth_source(name: str) -> Any:
    """The world's truth: the card, or the card with a length-dependent compression slope."""
    card = get_card("sparse-frontier-v1:prefill")
    if name == "card":
        return card
    if name == "kappa":
        return length_slope_card(KAPPA, pivot=PIVOT)
    raise SystemExit(f"unknown truth '{name}' (card, kappa)")


def draws_fn_of(src: Any, max_draws: int = 1000) -> Callable[[pl.DataFrame], np.ndarray]:
    def raw(points: pl.DataFrame) -> np.ndarray:
        return predict_draws(src, points, max_draws)

    return average_over_tasks(raw, list(TASKS.values()))


def sparse_share(src: Any, targets: Sequence[Target]) -> np.ndarray:
    configs = decision_configs(archs(), targets, cost_fn, STUDY_COMPRESSIONS)
    mu = draws_fn_of(src)(configs.select("params", "seq_len", "compression"))
    return np.asarray(sparse_wins(mu, configs, targets).mean(axis=0))


@dataclass
class Truth:
    name: str
    source: Any
    sparse: bool
    critical: float

    def describe(self) -> str:
        side = "sparse" if self.sparse else "dense"
        crit = (
            f"{self.critical / 1024:.1f}K"
            if math.isfinite(self.critical)
            else "beyond the scanned 4K-1M"
        )
        return (
            f"{self.name}: at 128K and {BUDGET:.3g} FLOPs per prefill the {side} choice wins; "
            f"critical length {crit}"
        )


def truth(name: str) -> Truth:
    src = truth_source(name)
    crit = critical_length(draws_fn_of(src), archs(), SCAN, cost_fn)
    return Truth(name, src, bool(sparse_share(src, [TARGET])[0] > 0.5), crit.median)


@dataclass(frozen=True)
class Score:
    """One fit against the truth, at the GPU-hours spent to get its data."""

    hours: float
    p_wrong: float  # posterior probability of the wrong decision at 128K
    crit_error: float  # |posterior-median critical length / true one - 1|
    converged: bool

    @property
    def right(self) -> bool:
        return self.p_wrong < 0.5

    @property
    def confident_error(self) -> bool:
        return self.p_wrong >= 0.95


def score(result: FitResult, true: Truth, hours: float) -> Score:
    p = float(sparse_share(result, [TARGET])[0])
    median = critical_length(draws_fn_of(result), archs(), SCAN, cost_fn).median
    if math.isfinite(true.critical):
        crit_error = abs(median / true.critical - 1) if math.isfinite(median) else math.inf
    else:
        crit_error = 0.0 if not math.isfinite(median) else math.inf
    return Score(hours, 1 - p if true.sparse else p, crit_error, bool(result.converged))


# --- measuring (simulated) --------------------------------------------------------------------------
class Lab:
    """Simulated measurements: outcome number k of a configuration is the same for everyone."""

    def __init__(self, candidates: list[Candidate], seed: int, source: Any = None):
        self.card = source if source is not None else get_card("sparse-frontier-v1:prefill")
        self.frame = pl.DataFrame([{**c.point(), "key": c.key} for c in candidates])
        self.seed = seed
        self.repeats: dict[int, pl.DataFrame] = {}

    def outcomes(self, k: int) -> pl.DataFrame:
        if k not in self.repeats:
            self.repeats[k] = simulate(
                self.card, self.frame, samples=SAMPLES, seed=self.seed * 1000 + k
            ).drop("truth")
        return self.repeats[k]


@dataclass
class Run:
    """One strategy on one simulated world: what it measured and how each refit scored."""

    name: str
    lab: Lab
    hours_of: dict[str, float]
    data: list[pl.DataFrame] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    hours: float = 0.0
    scores: list[Score] = field(default_factory=list)
    note: str = ""
    batches: list[str] = field(default_factory=list)

    def measure(self, keys: Sequence[str]) -> None:
        by_repeat: dict[int, list[str]] = {}
        for key in keys:
            k = self.counts.get(key, 0)
            self.counts[key] = k + 1
            by_repeat.setdefault(k, []).append(key)
            self.hours += self.hours_of[key]
        for k, ks in sorted(by_repeat.items()):
            self.data.append(self.lab.outcomes(k).filter(pl.col("key").is_in(ks)))

    def table(self) -> pl.DataFrame:
        return pl.concat(self.data)

    def fill_to(self, order: Sequence[str], hours: float) -> None:
        """Measure unmeasured configurations in `order`, skipping any that would overshoot,
        until the spend is as near `hours` as one more configuration can bring it."""
        taken: list[str] = []
        spent = self.hours
        over: tuple[float, str] | None = None  # the first configuration that would overshoot
        for key in order:
            if key in self.counts:
                continue
            h = self.hours_of[key]
            if spent + h <= hours:
                taken.append(key)
                spent += h
            elif over is None:
                over = (h, key)
        if over is not None and spent + over[0] - hours < hours - spent:
            taken.append(over[1])
        self.measure(taken)


def refit_law(run: Run, options: FitOptions) -> FitResult:
    """The planner's law fitted to what the run measured; a configuration measured more than
    once (the planner may ask for a repeat) is one row with its samples pooled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(run.table().drop("key"), get_law("sparse-frontier"), options, aggregate="mean")


def refit(run: Run, options: FitOptions, true: Truth) -> FitResult:
    result = refit_law(run, options)
    run.scores.append(score(result, true, run.hours))
    return result


def fit_options(backend: str, seed: int) -> FitOptions:
    if backend == "bayes":
        return FitOptions(backend="bayes", seed=seed, draws=500, tune=500, chains=2, loo=False)
    return FitOptions(backend="lsq", seed=seed, bootstrap=200, starts=2048)


# --- one world ------------------------------------------------------------------------------------------
def planned(run: Run, candidates: Any, true: Truth, args: argparse.Namespace, seed: int,
            bar: Callable[[], None]) -> None:  # fmt: skip
    """Plan, measure, refit for `args.rounds` rounds; a planner with nothing left to gain
    stops spending, and its last score stands for the remaining rounds."""
    for r in range(args.rounds + 1):
        if run.note:
            run.scores.append(run.scores[-1])
            bar()
            continue
        result = refit(run, fit_options(args.backend, seed * 100 + r), true)
        bar()
        if run.batches:
            run.batches[-1] += f"; refit's P(wrong side) {run.scores[-1].p_wrong:.2f}"
        if r == args.rounds:
            break
        try:
            p = plan(result, candidates, [TARGET], archs(), gpu_hours=args.round_hours, seed=r)
        except PlanError as exc:
            run.note = f"stopped after round {r}: {exc}"
            continue
        run.measure([c.key for c in p.batch])
        run.batches.append(describe(p))


def baseline(run: Run, order: Sequence[str], planner: Run, true: Truth,
             args: argparse.Namespace, seed: int, bar: Callable[[], None]) -> None:  # fmt: skip
    """Fill to each of the planner's cumulative spends in `order`, refitting at each. At the
    seed design every strategy holds the same data: the planner's first score stands."""
    spends, first = [sc.hours for sc in planner.scores], planner.scores[0]
    for r, hours in enumerate(spends):
        if r == 0:
            run.scores.append(first)
        elif hours <= spends[r - 1]:
            run.scores.append(run.scores[-1])  # the planner spent nothing more
        else:
            run.fill_to(order, hours)
            refit(run, fit_options(args.backend, seed * 100 + r), true)
        bar()


def describe(p: Any) -> str:
    """A planned batch in one line: its cross product, hours and expected P(wrong)."""
    g = p.grid()
    sizes = ",".join(m.split("-")[1] for m in g["models"])
    lengths = ",".join(f"{x // 1024}K" for x in g["lengths"])
    ratios = ",".join(f"{c:g}" for c in g["compression"])
    return (
        f"{sizes} x {lengths} x C={ratios} x {len(g['tasks'])} task(s): {len(p.batch)} configs, "
        f"{p.batch_hours:.2f} GPU-h; P(wrong) {p.loss:.2f} -> {p.batch_loss:.2f} expected"
    )


# --- report ---------------------------------------------------------------------------------------------
def fmt_error(xs: Sequence[float]) -> str:
    m = statistics.median(xs)
    return f"{m:.0%}" if math.isfinite(m) else "none found"


def report(runs: dict[tuple[str, str], list[Run]], truths: dict[str, Truth],
           full_hours: float, seed_hours: float, rounds: int) -> None:  # fmt: skip
    print("Truths (mean score over the six tasks):\n")
    for t in truths.values():
        print(f"- {t.describe()}")
    print(
        f"\nFull grid {full_hours:.1f} GPU-hours; seed design {seed_hours:.1f} GPU-hours, "
        "counted in every strategy. Per round and strategy, over the worlds (random: over "
        "worlds x repeats): the mean GPU-hours spent, how many decisions at 128K are right, the "
        "mean posterior P on the wrong side, confident errors (P(wrong) >= 0.95) and the "
        "median relative error of the critical length.\n"
    )
    print(
        "| truth | round | strategy | GPU-h | decision right | mean P(wrong side) | "
        "confident errors | critical length rel. error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in truths:
        for r in range(rounds + 1):
            for strategy in STRATEGIES:
                ss = [run.scores[r] for run in runs[(name, strategy)]]
                if not ss:
                    continue
                label = "seed design" if r == 0 else str(r)
                print(
                    f"| {name} | {label} | {strategy} | {statistics.mean(s.hours for s in ss):.2f} "
                    f"| {sum(s.right for s in ss)}/{len(ss)} "
                    f"| {statistics.mean(s.p_wrong for s in ss):.2f} "
                    f"| {sum(s.confident_error for s in ss)} "
                    f"| {fmt_error([s.crit_error for s in ss])} |"
                )
    spent = {(n, run.name): [sc.hours for sc in run.scores] for n in truths
             for run in runs[(n, "planned")]}  # fmt: skip
    gaps = [
        abs(sc.hours - spent[(n, run.name.split(" ")[0])][r])
        for n in truths
        for s in STRATEGIES[1:]
        for run in runs[(n, s)]
        for r, sc in enumerate(run.scores)
    ]
    print(f"\nLargest gap between a baseline's spend and the planner's: {max(gaps):.3f} GPU-h.")
    bad = {
        s: sum(not sc.converged for n in truths for run in runs[(n, s)] for sc in run.scores)
        for s in STRATEGIES
    }
    print("Fits flagged not converged: " + ", ".join(f"{s} {k}" for s, k in bad.items()) + ".")
    for (name, strategy), rs in runs.items():
        for run in rs:
            if run.note:
                print(f"\nNote, {strategy}, {name} world {run.name}: {run.note}")
    print("\nWhat the planner measured (batches after the seed design):\n")
    for name in truths:
        for run in runs[(name, "planned")]:
            for i, b in enumerate(run.batches, 1):
                print(f"- {name} world {run.name}, round {i}: {b}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=3, help="simulated worlds per truth")
    ap.add_argument("--truths", default="card,kappa", help="comma-separated: card, kappa")
    ap.add_argument("--rounds", type=int, default=3, help="planner rounds after the seed design")
    ap.add_argument("--round-hours", type=float, default=4.0, help="GPU-hours per planned batch")
    ap.add_argument("--random", type=int, default=2, help="random-order runs per world")
    ap.add_argument("--backend", default="bayes", choices=("bayes", "lsq"))
    ap.add_argument("--seed", type=int, default=0, help="seeds every world, fit and order")
    ap.add_argument("--quick", action="store_true", help="one world, one round (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.worlds, args.random, args.rounds = 1, 1, 1
    started = time.perf_counter()
    candidates = candidates_from_dict(candidate_grid(), levels=list(TASKS.values()))
    hours_of = {c.key: c.gpu_hours for c in candidates.items}
    seed_keys = [
        c.key for c in candidates.items if c.config.compression == 1 and c.arch.size in SEED_SIZES
    ]
    cheapest = sorted(hours_of, key=lambda k: (hours_of[k], k))
    truths = {name: truth(name) for name in args.truths.split(",")}
    full_hours = sum(hours_of.values())
    seed_hours = sum(hours_of[k] for k in seed_keys)
    log(f"{len(candidates.items)} candidates, {full_hours:.1f} GPU-hours")
    for t in truths.values():
        log(t.describe())
    runs: dict[tuple[str, str], list[Run]] = {(n, s): [] for n in truths for s in STRATEGIES}
    per_world = (args.rounds + 1) * (2 + args.random)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err) as progress:  # fmt: skip
        task = progress.add_task("fits", total=len(truths) * args.worlds * per_world)

        def bar() -> None:
            progress.advance(task, 1)

        for t_index, (name, true) in enumerate(truths.items()):
            for world in range(args.worlds):
                world_seed = args.seed * 10_000 + t_index * 100 + world
                lab = Lab(candidates.items, world_seed, true.source)

                def start(label: str, lab: Lab = lab) -> Run:
                    run = Run(label, lab, hours_of)
                    run.measure(seed_keys)
                    return run

                progress.update(task, description=f"{name} world {world}: planned")
                planner = start(str(world))
                planned(planner, candidates, true, args, world_seed, bar)
                runs[(name, "planned")].append(planner)
                progress.update(task, description=f"{name} world {world}: cheapest-first")
                run = start(str(world))
                baseline(run, cheapest, planner, true, args, world_seed, bar)
                runs[(name, "cheapest-first")].append(run)
                for rep in range(args.random):
                    progress.update(task, description=f"{name} world {world}: random {rep}")
                    rng = np.random.default_rng(world_seed * 10 + rep)
                    order = [cheapest[i] for i in rng.permutation(len(cheapest))]
                    run = start(f"{world} (random {rep})")
                    baseline(run, order, planner, true, args, world_seed, bar)
                    runs[(name, "random")].append(run)
    report(runs, truths, full_hours, seed_hours, args.rounds)
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
