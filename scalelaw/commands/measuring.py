"""`scalelaw measure`: run a sweep grid into an accuracy-point table.

The command imports the sweep (and torch) inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from scalelaw.commands.common import fail, one_line, warn
from scalelaw.commands.options import QuietOpt, TableOutOpt
from scalelaw.commands.progress import sweep_progress
from scalelaw.errors import user_errors


def measure(
    grid: Annotated[
        Path, typer.Argument(help="Sweep grid TOML (models, methods, tasks, lengths, ratios).")
    ],
    out: TableOutOpt = Path("results.parquet"),
    executor: Annotated[
        Literal["local", "ray"], typer.Option(help="Where to run: local or ray.")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address to join (default: start a local one).")
    ] = None,
    cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of a local Ray cluster.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure accuracy of sparse attention over a grid; resumable, append-only.

    Example: scalelaw measure examples/grids/tiny.toml --out results.parquet

    Running the same command again resumes: finished configurations are kept and not repeated.
    A configuration that fails is journalled and reported (exit status 3) while the others go on;
    the next run tries it again. One sweep at a time owns an output: a second one exits 2.
    Per-sample predictions go beside the table (results.predictions.parquet); the journal lives
    in results.store/.
    """
    from scalelaw.measure.sweep import run_sweep

    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        summary = run_sweep(
            grid, out, executor=executor, address=address, cpus=cpus, quiet=quiet,
            log=typer.echo, progress=sweep_progress(quiet),
        )  # fmt: skip
    except user_errors() as exc:
        fail(str(exc))
    typer.echo(
        f"{summary.out}: {summary.configurations} configurations: {summary.already_done} already "
        f"done, {summary.measured + summary.aliased} written from {summary.runs} model runs "
        f"(C = 1 of every method shares one dense run) in {summary.seconds:.1f} s"
    )
    if summary.failed:
        for error in summary.failed.values():
            # one line per failure, whatever a library put in its message (transformers'
            # errors run over several lines)
            warn(f"failed: {one_line(error)}")
        # 3, as for a fit that did not converge: the run finished, but not everything in it
        fail(
            f"{len(summary.failed)} of {summary.runs} model runs failed (journalled; running "
            "the same command again tries them again)",
            code=3,
        )


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.command("measure", no_args_is_help=True)(measure)
