"""`scalelaw import`: result folders of the reference study and of KVPress as accuracy tables.

Each command imports the API it calls inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from scalelaw.commands.common import fail, refuse_overwrite, warn
from scalelaw.commands.options import ForceOpt, TableOutOpt
from scalelaw.errors import user_errors

import_app = typer.Typer(
    name="import",
    help="Turn other tools' result folders into an accuracy table that `scalelaw fit` reads.",
    no_args_is_help=True,
)

ParamsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--params",
        metavar="<name=count>",
        help="Parameter count of a model outside the built-in table, e.g. qwen_3b=3.09e9 "
        "(repeatable).",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="List every skipped file with its reason.")
]


def _write(result: Any, out: Path, verbose: bool) -> None:
    """Write the table and report: notes as warnings, then one summary line."""
    from scalelaw.importers import write_table

    write_table(result.table, out)
    if verbose:
        for skip in result.skipped:
            typer.echo(f"skipped {skip.path}: {skip.reason}")
    for note in result.notes:
        warn(note)
    typer.echo(f"{out}: {result.summary()}")


@import_app.command("sparse-frontier", no_args_is_help=True)
def sparse_frontier(
    folder: Annotated[
        Path, typer.Argument(help="The study pipeline's results folder (or one above it).")
    ],
    out: TableOutOpt,
    params: ParamsOpt = None,
    dense_phase: Annotated[
        str,
        typer.Option(
            help="Phases a dense result is the C = 1 point of: both (one row each), prefill "
            "or decode."
        ),
    ] = "both",
    verbose: VerboseOpt = False,
    force: ForceOpt = False,
) -> None:
    """Import the reference study's result tree (evaluation_results_N.json files).

    Example: scalelaw import sparse-frontier experiments/results --out study.parquet

    One row per result file: seq_len from max_input_tokens, C = 1 / (1 - average attention
    sparsity), the task's metric with its variance and sample count, the study's attention
    names mapped to ours (vertical_and_slash -> vertical-slash, ...), N from the built-in
    model table (Qwen2.5, Llama 3.1, Gemma 3).
    """
    from scalelaw.importers import import_sparse_frontier
    from scalelaw.importers.common import check_output, parse_params

    try:
        check_output(out)
        refuse_overwrite(out, force)
        result = import_sparse_frontier(
            folder, params=parse_params(params or []), dense_phase=dense_phase
        )
        _write(result, out, verbose)
    except user_errors() as exc:
        fail(str(exc))


@import_app.command("kvpress", no_args_is_help=True)
def kvpress(
    folder: Annotated[Path, typer.Argument(help="KVPress's evaluation output folder.")],
    out: TableOutOpt,
    params: ParamsOpt = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            metavar="<dataset>",
            help="Import only this dataset, e.g. ruler (repeatable).",
        ),
    ] = None,
    needle_metric: Annotated[
        str,
        typer.Option(help="Needle-in-a-haystack score: ROUGE variant and part, e.g. rouge-l:f."),
    ] = "rouge-l:f",
    verbose: VerboseOpt = False,
    force: ForceOpt = False,
) -> None:
    """Import KVPress evaluation folders (metrics.json, predictions.csv, config.yaml).

    Example: scalelaw import kvpress evaluation/results --out kvpress.parquet --dataset ruler

    One row per subtask and run: C = 1 / (1 - compression_ratio) (no_press is C = 1), samples
    counted in predictions.csv, settings from config.yaml (plain YAML only) or the folder name.
    Unfinished runs, decoding presses and datasets without a reader are skipped and counted.
    """
    from scalelaw.importers import import_kvpress
    from scalelaw.importers.common import check_output, parse_params

    try:
        check_output(out)
        refuse_overwrite(out, force)
        result = import_kvpress(
            folder,
            params=parse_params(params or []),
            datasets=dataset or None,
            needle_metric=needle_metric,
        )
        _write(result, out, verbose)
    except user_errors() as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.add_typer(import_app, name="import")
