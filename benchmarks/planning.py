"""Planning study: GPU-hours until the decision at 128K (and the critical length) is right.

Data are simulated from the study's published prefill card (`sparse-frontier-v1:prefill`, the
six tasks that `scalelaw measure` generates) on the study's grid for Qwen2.5 7B/14B/32B/72B:
lengths 16K-128K, the eleven study ratios, vertical-slash, 100 samples per configuration.
Every strategy starts from the same seed design (dense points of the 7B and 14B models at
every length and task) and is charged GPU-hours by the planner's cost model (prefill FLOPs at
400 TFLOP/s plus answer decoding at 2.5 TB/s per sample):

* full grid: measure every configuration (checked also after each model, in sweep order);
* planned: fit -> `scalelaw.frontier.planning.plan` for the 128K decision within a round's
  GPU-hours -> measure (simulate) the batch -> refit, until the criteria hold;
* planned + critical length: as planned, with two more targets, the budget-averaged decisions
  at 0.75x and 1.25x the current posterior median of the critical length;
* random: batches of the same GPU-hours per round drawn at random from the unmeasured grid.

Criteria, under each fit's posterior: P(right decision at 128K and the target budget) >= 0.9,
and P(critical length within +-25% of the truth) >= 0.9. A configuration measured again gets
a fresh simulated outcome, pooled with the earlier ones into one row of the refit; all
strategies see the same outcome for the same (configuration, repeat), so they differ only in
what they choose to measure.

Progress goes to stderr, the markdown tables to stdout.

    python benchmarks/planning.py [--seeds 5] [--random 2] [--round-hours 4] [--max-hours 120]
                                  [--backend bayes|lsq] [--quick]
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
#: Between the dense 32B (3.1e16) and the dense 72B (6.4e16) at 128K: the sparse 72B at C=2.5
#: beats the dense 32B by 0.013 in mean score, a close call.
BUDGET = 4e16
TARGET = Target(131072.0, BUDGET)
SCAN = [float(2**k) for k in range(12, 21)]  # 4K-1M: the critical length's default scan
PROB = 0.9
TOLERANCE = 0.25
SEED_SIZES = ("7B", "14B")
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


# --- truth and criteria ---------------------------------------------------------------------------
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
    sparse: bool
    critical: float


def truth() -> Truth:
    card = get_card("sparse-frontier-v1:prefill")
    crit = critical_length(draws_fn_of(card), archs(), SCAN, cost_fn)
    return Truth(bool(sparse_share(card, [TARGET])[0] > 0.5), crit.median)


def criteria(src: Any, true: Truth) -> tuple[float, float, float]:
    """P(right decision at 128K), P(critical length within +-25%), posterior median of it."""
    p = float(sparse_share(src, [TARGET])[0])
    p_right = p if true.sparse else 1 - p
    lo, hi = (1 - TOLERANCE) * true.critical, (1 + TOLERANCE) * true.critical
    # with two lengths, a draw's critical length lies between them iff its advantage is <= 0
    # at the first and > 0 at the second
    pair = critical_length(draws_fn_of(src), archs(), [lo, hi], cost_fn)
    p_crit = 1.0 - pair.share_beyond - pair.share_below
    median = critical_length(draws_fn_of(src), archs(), SCAN, cost_fn).median
    return p_right, p_crit, median


# --- measuring (simulated) --------------------------------------------------------------------------
class Lab:
    """Simulated measurements: outcome number k of a configuration is the same for everyone."""

    def __init__(self, candidates: list[Candidate], seed: int):
        self.card = get_card("sparse-frontier-v1:prefill")
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
    """One strategy on one simulated world: its trajectory of (GPU-hours, criteria)."""

    name: str
    lab: Lab
    hours_of: dict[str, float]
    data: list[pl.DataFrame] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    hours: float = 0.0
    trajectory: list[tuple[float, float, float]] = field(default_factory=list)
    not_converged: int = 0
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

    def first(self, which: int) -> float | None:
        """GPU-hours at the first check where criterion `which` (0: decision, 1: critical
        length, 2: both) held."""
        for hours, p_right, p_crit in self.trajectory:
            ok = (p_right >= PROB, p_crit >= PROB, p_right >= PROB and p_crit >= PROB)[which]
            if ok:
                return hours
        return None


def refit_law(run: Run, options: FitOptions) -> FitResult:
    """The planner's law fitted to what the run measured; a configuration measured more than
    once (the planner may ask for a repeat) is one row with its samples pooled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(run.table().drop("key"), get_law("sparse-frontier"), options, aggregate="mean")


def refit(run: Run, options: FitOptions, true: Truth) -> tuple[FitResult, float]:
    result = refit_law(run, options)
    if not result.converged:
        run.not_converged += 1
    p_right, p_crit, median = criteria(result, true)
    run.trajectory.append((run.hours, p_right, p_crit))
    return result, median


def fit_options(backend: str, seed: int) -> FitOptions:
    if backend == "bayes":
        return FitOptions(backend="bayes", seed=seed, draws=500, tune=500, chains=2, loo=False)
    return FitOptions(backend="lsq", seed=seed, bootstrap=200, starts=2048)


# --- strategies -----------------------------------------------------------------------------------------
def planned(
    run: Run,
    candidates: Any,
    true: Truth,
    args: argparse.Namespace,
    seed: int,
    critical: bool,
    bar: Callable[[], None],
) -> None:
    for r in range(args.max_rounds):
        result, median = refit(run, fit_options(args.backend, seed * 100 + r), true)
        bar()
        _, p_right, p_crit = run.trajectory[-1]
        if run.batches:
            # what the refit says, against what the planner expected of the batch
            run.batches[-1] += (
                f"; 128K decision at the refit: P(wrong) {min(p_right, 1 - p_right):.2f}"
            )
        done = p_right >= PROB and (p_crit >= PROB or not critical)
        if done or run.hours >= args.max_hours:
            break
        targets = [TARGET]
        if critical:
            centre = min(max(median, SCAN[0]), SCAN[-1]) if math.isfinite(median) else SCAN[-1]
            targets += [
                Target((1 - TOLERANCE) * centre, None),
                Target((1 + TOLERANCE) * centre, None),
            ]
        try:
            p = plan(result, candidates, targets, archs(), gpu_hours=args.round_hours, seed=r)
        except PlanError as exc:
            run.note = f"stopped after round {r}: {exc}"
            break
        run.measure([c.key for c in p.batch])
        run.batches.append(describe(p))


def describe(p: Any) -> str:
    """A planned batch in one line: its cross product, hours and expected P(wrong)."""
    g = p.grid()
    sizes = ",".join(m.split("-")[1] for m in g["models"])
    lengths = ",".join(f"{x // 1024}K" for x in g["lengths"])
    ratios = ",".join(f"{c:g}" for c in g["compression"])
    mean = f", mean of {len(p.targets)} targets" if len(p.targets) > 1 else ""
    return (
        f"{sizes} x {lengths} x C={ratios} x {len(g['tasks'])} task(s): {len(p.batch)} configs, "
        f"{p.batch_hours:.2f} GPU-h; P(wrong{mean}) {p.loss:.2f} -> {p.batch_loss:.2f} expected"
    )


def random_batches(
    run: Run,
    candidates: Any,
    true: Truth,
    args: argparse.Namespace,
    seed: int,
    bar: Callable[[], None],
) -> None:
    rng = np.random.default_rng(seed)
    left = [c for c in candidates.items if c.key not in run.counts]
    for r in range(args.max_rounds):
        refit(run, fit_options(args.backend, seed * 100 + r), true)
        bar()
        _, p_right, p_crit = run.trajectory[-1]
        if (p_right >= PROB and p_crit >= PROB) or run.hours >= args.max_hours or not left:
            break
        order = rng.permutation(len(left))
        spent, chosen = 0.0, []
        for i in order:
            if spent + left[i].gpu_hours <= args.round_hours:
                chosen.append(left[i].key)
                spent += left[i].gpu_hours
        taken = set(chosen)
        left = [c for c in left if c.key not in taken]
        run.measure(chosen)


def full_grid(
    run: Run,
    candidates: Any,
    true: Truth,
    args: argparse.Namespace,
    seed: int,
    bar: Callable[[], None],
) -> None:
    # in sweep order (model by model); the seed is already measured
    for model in MODELS:
        run.measure(
            [c.key for c in candidates.items if c.config.model == model and c.key not in run.counts]
        )
        refit(run, fit_options(args.backend, seed * 100 + MODELS.index(model)), true)
        bar()


# --- report ---------------------------------------------------------------------------------------------
def fmt_hours(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1f}"


def report(runs: dict[str, list[Run]], true: Truth, full_hours: float, seed_hours: float) -> None:
    lo, hi = true.critical * (1 - TOLERANCE), true.critical * (1 + TOLERANCE)
    print(
        f"Truth (card, mean over {len(TASKS)} tasks): at 128K and {BUDGET:.3g} FLOPs per prefill "
        f"{'the sparse' if true.sparse else 'the dense'} choice wins; critical length "
        f"{true.critical / 1024:.1f}K (criterion: within {lo / 1024:.1f}K-{hi / 1024:.1f}K). "
        f"Full grid {full_hours:.1f} GPU-hours, seed design {seed_hours:.1f} (counted in every "
        "strategy).\n"
    )
    print(
        "| strategy | world | P(right) at first fit | GPU-h to decision P>=0.9 | "
        "GPU-h to critical length P>=0.9 | GPU-h to both | fits | final P(right) | "
        "final P(crit +-25%) | fits not converged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        for r in rs:
            _, pr, pc = r.trajectory[-1]
            print(
                f"| {name} | {r.name} | {r.trajectory[0][1]:.2f} | {fmt_hours(r.first(0))} | "
                f"{fmt_hours(r.first(1))} | {fmt_hours(r.first(2))} | {len(r.trajectory)} | "
                f"{pr:.2f} | {pc:.2f} | {r.not_converged} |"
            )
    notes = [f"{name} {r.name}: {r.note}" for name, rs in runs.items() for r in rs if r.note]
    for n in notes:
        print(f"\nNote, {n}")
    print(
        "\nMedian over worlds (a strategy that never got there counts as the hours it spent, "
        "marked >). The full grid row is the first whole model of the sweep after which the "
        f"criterion held; measuring all of it costs {full_hours:.1f} GPU-hours.\n"
    )
    print(
        "| strategy | GPU-h to decision | beyond the seed | share of the full grid | "
        "GPU-h to critical length | GPU-h to both |"
    )
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        cells, meds = [], []
        for which in (0, 1, 2):
            xs = [r.first(which) for r in rs]
            reached = [x for x in xs if x is not None]
            med = statistics.median(
                x if x is not None else r.hours for x, r in zip(xs, rs, strict=True)
            )
            meds.append(med)
            mark = "" if len(reached) == len(xs) else ">"
            tail = "" if not mark else f" ({len(reached)}/{len(xs)} reached)"
            cells.append(f"{mark}{med:.1f}{tail}")
        print(
            f"| {name} | {cells[0]} | {meds[0] - seed_hours:.1f} | {meds[0] / full_hours:.1%} | "
            f"{cells[1]} | {cells[2]} |"
        )


def batches(runs: dict[str, list[Run]]) -> None:
    print("\nWhat the planner measured (batches after the seed design):\n")
    for name in ("planned", "planned + critical length"):
        for r in runs[name]:
            for i, b in enumerate(r.batches, 1):
                print(f"- {name}, world {r.name}, round {i}: {b}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="simulated worlds")
    ap.add_argument("--random", type=int, default=2, help="random-batch runs per world")
    ap.add_argument("--round-hours", type=float, default=4.0, help="GPU-hours per batch")
    ap.add_argument("--max-hours", type=float, default=120.0, help="stop a strategy here")
    ap.add_argument("--max-rounds", type=int, default=30)
    ap.add_argument("--backend", default="bayes", choices=("bayes", "lsq"))
    ap.add_argument("--quick", action="store_true", help="one world, few rounds (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.random, args.max_rounds = 1, 1, 3
    started = time.perf_counter()
    candidates = candidates_from_dict(candidate_grid(), levels=list(TASKS.values()))
    hours_of = {c.key: c.gpu_hours for c in candidates.items}
    seed_keys = [
        c.key for c in candidates.items if c.config.compression == 1 and c.arch.size in SEED_SIZES
    ]
    true = truth()
    full_hours = sum(hours_of.values())
    seed_hours = sum(hours_of[k] for k in seed_keys)
    log(f"{len(candidates.items)} candidates, {full_hours:.1f} GPU-hours; truth {true}")
    runs: dict[str, list[Run]] = {"full grid": [], "planned": [], "planned + critical length": [],
                                  "random": []}  # fmt: skip
    total = args.seeds * (4 + 2 * args.max_rounds + args.random * args.max_rounds)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err) as progress:  # fmt: skip
        task = progress.add_task("fits", total=total)

        def bar() -> None:
            progress.advance(task, 1)

        for world in range(args.seeds):
            lab = Lab(candidates.items, world)

            def start(label: str, lab: Lab = lab, world: int = world) -> Run:
                run = Run(f"{world}{label}", lab, hours_of)
                run.measure(seed_keys)
                return run

            for name, go in (
                ("full grid", lambda r, w: full_grid(r, candidates, true, args, w, bar)),
                ("planned", lambda r, w: planned(r, candidates, true, args, w, False, bar)),
                ("planned + critical length",
                 lambda r, w: planned(r, candidates, true, args, w, True, bar)),
            ):  # fmt: skip
                progress.update(task, description=f"world {world}: {name}")
                run = start("")
                go(run, world)
                runs[name].append(run)
            for rep in range(args.random):
                progress.update(task, description=f"world {world}: random {rep}")
                run = start(f" (random {rep})")
                random_batches(run, candidates, true, args, 1000 * world + rep, bar)
                runs["random"].append(run)
    report(runs, true, full_hours, seed_hours)
    batches(runs)
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
