"""Command: plan (which measurements to run next, per GPU-hour, for a decision).

Each command imports the API it calls inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from scalelaw.commands.common import architectures as _architectures
from scalelaw.commands.common import (
    console,
    err,
    fail,
    fitting_status,
    positive,
    warn,
)
from scalelaw.commands.common import errors as _errors
from scalelaw.commands.common import numbers as _numbers
from scalelaw.commands.options import (
    FamilyOpt,
    ForceOpt,
    FormatOpt,
    MaxDrawsOpt,
    QuietOpt,
    SizesOpt,
    new_output,
)
from scalelaw.commands.progress import track
from scalelaw.study import STUDY_COMPRESSIONS_TEXT


def _task_map(items: list[str]) -> dict[str, str]:
    from scalelaw.frontier.planning import PlanError

    out = {}
    for item in items:
        for part in item.split(","):
            name, sep, level = part.partition("=")
            if not sep or not name.strip() or not level.strip():
                raise PlanError(f"--task-map: expected NAME=LEVEL, got '{part}'")
            out[name.strip()] = level.strip()
    return out


SourceArg = Annotated[
    str,
    typer.Argument(
        help="A fit file (.nc) or stacked fit with posterior draws, or a data table "
        "(.csv, .parquet, .jsonl): the law family is fitted and stacked."
    ),
]
CandidatesOpt = Annotated[
    Path,
    typer.Option(
        "--candidates",
        "-c",
        help="Sweep grid TOML of the configurations that could be measured; "
        "'samples' may be a list.",
    ),
]
TargetOpt = Annotated[
    list[str],
    typer.Option(
        "--target",
        "-t",
        metavar="<target>",
        help="Decision to get right: 'L=128K,budget=4e16' (budget in the --phase cost "
        "unit) or 'L=48K,budget=mean' (averaged over budgets). Repeatable.",
    ),
]
GpuHoursOpt = Annotated[
    float,
    typer.Option("--gpu-hours", callback=positive, help="GPU-hours the next batch may spend."),
]
GridOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Write the batch here as a sweep grid TOML (default: print the plan only).",
    ),
]
ConfigOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--config",
        metavar="<config.json>",
        help="Hugging Face config.json files to compare instead.",
    ),
]
DecisionPhaseOpt = Annotated[
    Literal["prefill", "decode"],
    typer.Option(help="Cost of the decision: prefill (FLOPs) or decode (bytes per step)."),
]
CompressionsOpt = Annotated[
    str, typer.Option(help="Comma-separated ratios of the decision; 1 is dense.")
]
TaskOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--task",
        metavar="<task>",
        help="Fit tasks the decision averages (default: all; repeatable).",
    ),
]
TaskMapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--task-map",
        metavar="<name=level>",
        help="Grid task scored as a fit task, NAME=LEVEL (default: same name, or the "
        "study's name: niah-multikey=NIAH, variable-tracking=VT, ...).",
    ),
]
ThroughputOpt = Annotated[
    float,
    typer.Option(callback=positive, help="Sustained prefill FLOP/s of one GPU while measuring."),
]
BandwidthOpt = Annotated[
    float,
    typer.Option(callback=positive, help="Sustained bytes/s of one GPU while decoding answers."),
]
TimingsOpt = Annotated[
    str | None,
    typer.Option(
        help="Table of an earlier sweep (wall_s, samples): its times replace or calibrate "
        "the cost model."
    ),
]
SimsOpt = Annotated[
    int, typer.Option(min=1, help="Simulated outcomes that value the batch jointly.")
]
PoolOpt = Annotated[
    int, typer.Option(min=1, help="Best-ranked candidates considered for the batch.")
]
PlanSeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the simulated outcomes.")]
GridSeedOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Seed written into the grid (default: the candidates'); change it to draw "
        "new samples at configurations already measured.",
    ),
]
TopOpt = Annotated[int, typer.Option(min=1, help="Rows of the ranked table to print.")]


def plan(
    source: SourceArg,
    candidates: CandidatesOpt,
    target: TargetOpt,
    gpu_hours: GpuHoursOpt,
    out: GridOutOpt = None,
    family: FamilyOpt = "qwen2.5",
    sizes: SizesOpt = None,
    config: ConfigOpt = None,
    phase: DecisionPhaseOpt = "prefill",
    compressions: CompressionsOpt = STUDY_COMPRESSIONS_TEXT,
    task: TaskOpt = None,
    task_map: TaskMapOpt = None,
    throughput: ThroughputOpt = 400e12,
    bandwidth: BandwidthOpt = 2.5e12,
    timings: TimingsOpt = None,
    max_draws: MaxDrawsOpt = 1000,
    sims: SimsOpt = 512,
    pool: PoolOpt = 40,
    seed: PlanSeedOpt = 0,
    grid_seed: GridSeedOpt = None,
    top: TopOpt = 20,
    fmt: FormatOpt = "table",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Choose the next measurements: expected drop in P(wrong decision) per GPU-hour.

    For every candidate configuration of the grid, the expected value of sample information
    for the decision at each target: the posterior draws are re-weighted by the binomial
    likelihood of each possible outcome, the decision is recomputed, and its P(wrong) is
    averaged over the outcomes. Divided by the candidate's GPU-hours (prefill FLOPs at
    --throughput plus answer decoding at --bandwidth, per sample), it ranks them; with --out,
    the best batch within --gpu-hours is written as a grid that `scalelaw measure` runs
    (without it, nothing is written; an existing file only with --force). Progress of each
    stage goes to standard error; see --quiet. Python: `scalelaw.frontier.planning.plan`.

    Example: scalelaw plan fit.nc --candidates grid.toml --target 'L=128K,budget=4e16' --sizes 7B,14B,32B,72B --gpu-hours 4 --out next.toml
    """
    if out is not None:
        new_output(out, force, (".toml",))
    from scalelaw.fits.family import load_or_fit
    from scalelaw.frontier import FlopsCost
    from scalelaw.frontier.planning import parse_target

    try:
        targets = [parse_target(t) for t in target]
        archs = _architectures(family, sizes, config)
        with fitting_status(source, quiet):
            src = load_or_fit(source)
        cands = _candidates(src, candidates, task_map, throughput, bandwidth, timings)
        result = _plan(
            quiet, src, cands, targets, archs, gpu_hours=gpu_hours, cost_fn=FlopsCost(phase),
            compressions=_numbers(compressions, "--compressions", at_least=1),
            tasks=task or None, max_draws=max_draws, sims=sims, pool=pool, seed=seed, grid_seed=grid_seed,
        )  # fmt: skip
        if out is not None:
            result.write(out)
    except _errors() as exc:
        fail(str(exc))
    _report(result, fmt, top, phase, out)


def _candidates(
    src: Any,
    grid: Path,
    task_map: list[str] | None,
    throughput: float,
    bandwidth: float,
    timings: str | None,
) -> Any:
    """The grid's configurations that could be measured, named by the fit's task levels and
    priced by the measuring speed (or an earlier sweep's times)."""
    from scalelaw.fits import levels
    from scalelaw.frontier.planning import MeasureSpeed, read_candidates

    known = levels(src).get("task", [])
    timing_table = None
    if timings:
        from scalelaw.data import read_frame

        timing_table = read_frame(timings)
    return read_candidates(
        grid,
        levels=known,
        task_map=_task_map(task_map or []),
        speed=MeasureSpeed(throughput, bandwidth),
        timings=timing_table,
    )


def _plan(quiet: bool, *args: Any, **how: Any) -> Any:
    """`scalelaw.frontier.planning.plan` with the progress of each stage (`track`: a bar on a
    terminal, log lines elsewhere, none under --quiet); a stage that begins ends the one
    before it."""
    from scalelaw.frontier.planning import plan as make_plan

    with ExitStack() as stages:

        def progress(description: str, total: int | None) -> Callable[[int], Any]:
            stages.close()
            what = f"plan: {description}"
            tracker = stages.enter_context(track(what, total, quiet=quiet, unit="candidates"))
            return tracker.advance

        return make_plan(*args, progress=progress, **how)


def _report(result: Any, fmt: str, top: int, phase: str, out: Path | None) -> None:
    """The plan as JSON, CSV or tables on standard output; its warnings and where the batch
    went (or how to write it) on standard error."""
    if fmt == "json":
        print(json.dumps(result.to_dict(), indent=2))
    elif fmt == "csv":
        sys.stdout.write(result.table.write_csv())
    else:
        _print(result, top, phase)
    for w in result.warnings:
        warn(w)
    batch = f"{len(result.batch)} configurations, {result.batch_hours:.3g} GPU-hours"
    err.print(
        f"wrote {out}: {batch} (run it with: scalelaw measure {out} --out results.parquet)"
        if out is not None
        else f"batch of {batch} not written: give --out FILE.toml to write it as a grid",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _print(result: Any, top: int, phase: str) -> None:
    unit = "FLOPs per prefill" if phase == "prefill" else "bytes per decode step"
    for t, p in zip(result.targets, result.p_sparse, strict=True):
        console.print(
            f"decision at {t.label} ({unit}): P(sparse better) = {p:.3f}, "
            f"P(wrong) = {min(p, 1 - p):.3f} ({result.n_draws} draws)",
            highlight=False,
        )
    t = Table(
        "#", "model", "task", "L", "method", "C", "samples", "GPU-h", "P(wrong) after",
        "reduction", "per GPU-h", "eff. draws", "batch",
        title=f"expected reduction of P(wrong decision) per GPU-hour (best {top})",
    )  # fmt: skip
    for r in result.table.head(top).iter_rows(named=True):
        t.add_row(
            str(r["rank"]), f"{r['size']}", r["task"], f"{r['seq_len'] / 1024:g}K", r["method"],
            f"{r['compression']:g}", str(r["samples"]), f"{r['gpu_hours']:.3g}",
            f"{r['p_wrong_after']:.3f}", f"{r['reduction']:.3f}",
            f"{r['reduction_per_gpu_hour']:.3g}", f"{r['effective_draws']:.0f}",
            "yes" if r["in_batch"] else "",
        )  # fmt: skip
    console.print(t)
    console.print(
        f"batch: {len(result.batch)} configurations, {result.batch_hours:.3g} of "
        f"{result.gpu_hours:g} GPU-hours; expected P(wrong) {result.loss:.3f} -> "
        f"{result.batch_loss:.3f} ({result.sims} simulated outcomes, about "
        f"{result.batch_ess:.0f} effective draws after)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.command("plan", no_args_is_help=True)(plan)
