"""Command: plan (which measurements to run next, per GPU-hour, for a decision)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from scalelaw.commands.common import architectures as _architectures
from scalelaw.commands.common import (
    check_output,
    console,
    err,
    fail,
    positive,
    warn,
)
from scalelaw.commands.common import errors as _errors
from scalelaw.commands.common import numbers as _numbers
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


def plan(
    source: Annotated[
        str,
        typer.Argument(
            help="A fit file (.nc) or stacked fit with posterior draws, or a data table "
            "(.csv, .parquet, .jsonl): the law family is fitted and stacked."
        ),
    ],
    candidates: Annotated[
        Path,
        typer.Option(
            "--candidates",
            "-c",
            help="Sweep grid TOML of the configurations that could be measured; "
            "'samples' may be a list.",
        ),
    ],
    target: Annotated[
        list[str],
        typer.Option(
            "--target",
            "-t",
            metavar="<target>",
            help="Decision to get right: 'L=128K,budget=4e16' (budget in the --phase cost "
            "unit) or 'L=48K,budget=mean' (averaged over budgets). Repeatable.",
        ),
    ],
    gpu_hours: Annotated[
        float,
        typer.Option("--gpu-hours", callback=positive, help="GPU-hours the next batch may spend."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the batch here as a sweep grid TOML (default: print the plan only).",
        ),
    ] = None,
    family: Annotated[str, typer.Option(help="Built-in family whose sizes compete.")] = "qwen2.5",
    sizes: Annotated[
        str | None, typer.Option(help="Comma-separated sizes, e.g. 7B,14B,32B,72B (default: all).")
    ] = None,
    config: Annotated[
        list[Path] | None,
        typer.Option(
            "--config",
            metavar="<config.json>",
            help="Hugging Face config.json files to compare instead.",
        ),
    ] = None,
    phase: Annotated[
        Literal["prefill", "decode"],
        typer.Option(help="Cost of the decision: prefill (FLOPs) or decode (bytes per step)."),
    ] = "prefill",
    compressions: Annotated[
        str, typer.Option(help="Comma-separated ratios of the decision; 1 is dense.")
    ] = STUDY_COMPRESSIONS_TEXT,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            metavar="<task>",
            help="Fit tasks the decision averages (default: all; repeatable).",
        ),
    ] = None,
    task_map: Annotated[
        list[str] | None,
        typer.Option(
            "--task-map",
            metavar="<name=level>",
            help="Grid task scored as a fit task, NAME=LEVEL (default: same name, or the "
            "study's name: niah-multikey=NIAH, variable-tracking=VT, ...).",
        ),
    ] = None,
    throughput: Annotated[
        float,
        typer.Option(
            callback=positive, help="Sustained prefill FLOP/s of one GPU while measuring."
        ),
    ] = 400e12,
    bandwidth: Annotated[
        float,
        typer.Option(
            callback=positive, help="Sustained bytes/s of one GPU while decoding answers."
        ),
    ] = 2.5e12,
    timings: Annotated[
        str | None,
        typer.Option(
            help="Table of an earlier sweep (wall_s, samples): its times replace or calibrate "
            "the cost model."
        ),
    ] = None,
    max_draws: Annotated[int, typer.Option(min=1, help="Posterior draws used at most.")] = 1000,
    sims: Annotated[
        int, typer.Option(min=1, help="Simulated outcomes that value the batch jointly.")
    ] = 512,
    pool: Annotated[
        int, typer.Option(min=1, help="Best-ranked candidates considered for the batch.")
    ] = 40,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulated outcomes.")] = 0,
    grid_seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seed written into the grid (default: the candidates'); change it to draw "
            "new samples at configurations already measured.",
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Rows of the ranked table to print.")] = 20,
    fmt: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", help="table, csv or json.")
    ] = "table",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Choose the next measurements: expected drop in P(wrong decision) per GPU-hour.

    For every candidate configuration of the grid, the expected value of sample information
    for the decision at each target: the posterior draws are re-weighted by the binomial
    likelihood of each possible outcome, the decision is recomputed, and its P(wrong) is
    averaged over the outcomes. Divided by the candidate's GPU-hours (prefill FLOPs at
    --throughput plus answer decoding at --bandwidth, per sample), it ranks them; with --out,
    the best batch within --gpu-hours is written as a grid that `scalelaw measure` runs
    (without it, nothing is written). Python: `scalelaw.frontier.planning.plan`.

    Example: scalelaw plan fit.nc --candidates grid.toml --target 'L=128K,budget=4e16' --sizes 7B,14B,32B,72B --gpu-hours 4 --out next.toml
    """
    if out is not None:
        check_output(out, "--out", (".toml",))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from scalelaw.fits import levels
    from scalelaw.fits.family import is_table, load_or_fit
    from scalelaw.frontier import FlopsCost
    from scalelaw.frontier.planning import MeasureSpeed, parse_target, read_candidates
    from scalelaw.frontier.planning import plan as make_plan

    try:
        targets = [parse_target(t) for t in target]
        archs = _architectures(family, sizes, config)
        with err.status("fitting the law family to the table", spinner="dots") as status:
            if not is_table(source):
                status.stop()
            src = load_or_fit(source)
        known = levels(src).get("task", [])
        timing_table = None
        if timings:
            from scalelaw.data import read_frame

            timing_table = read_frame(timings)
        cands = read_candidates(
            candidates,
            levels=known,
            task_map=_task_map(task_map or []),
            speed=MeasureSpeed(throughput, bandwidth),
            timings=timing_table,
        )

        cost_fn = FlopsCost(phase)

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=quiet or not err.is_terminal,
        ) as bar:

            def progress(description: str, total: int | None) -> Any:
                task_id = bar.add_task(description, total=total)
                return lambda n: bar.advance(task_id, n)

            result = make_plan(
                src, cands, targets, archs, gpu_hours=gpu_hours, cost_fn=cost_fn,
                compressions=_numbers(compressions, "--compressions", at_least=1),
                tasks=task or None, max_draws=max_draws, sims=sims, pool=pool, seed=seed, grid_seed=grid_seed,
                progress=progress,
            )  # fmt: skip
        if out is not None:
            result.write(out)
    except _errors() as exc:
        fail(str(exc))
        return
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
