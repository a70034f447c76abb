"""Command: check, a held-out refit scored per law and for the stack.

The command imports the API it calls inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from scalelaw.commands.common import emit, fail, messages, probability, warn
from scalelaw.commands.common import errors as _errors
from scalelaw.commands.options import FIGURE_FILES, ForceOpt, FormatOpt, QuietOpt, new_output
from scalelaw.commands.progress import track

SourceArg = Annotated[
    str,
    typer.Argument(
        help="A data table (.csv, .parquet, .jsonl: the law family is fitted), a fit file "
        "or a stacked fit file (.nc)."
    ),
]
HoldoutOpt = Annotated[
    str, typer.Option(help="The slice to hold out: N=max, L=max, C=max (or min, or a value).")
]
DataOpt = Annotated[
    str | None, typer.Option(help="The table a fit file was made on (default: its source).")
]
BackendOpt = Annotated[
    Literal["bayes", "lsq"],
    typer.Option(help="Backend for a table's family (a fit is refitted as it was made)."),
]
SeedOpt = Annotated[int, typer.Option(min=0, help="Random seed for a table's family.")]
ProbOpt = Annotated[
    float, typer.Option(callback=probability, help="Probability of the predictive interval.")
]
FigureOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Write the predicted-against-observed figure (PNG, PDF, SVG)."),
]


def check(
    source: SourceArg,
    holdout: HoldoutOpt = "N=max",
    data: DataOpt = None,
    backend: BackendOpt = "bayes",
    seed: SeedOpt = 0,
    prob: ProbOpt = 0.9,
    out: FigureOpt = None,
    fmt: FormatOpt = "table",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Refit without a held-out slice and score every law and the stack on it.

    Prints, per law and for the stack, the stacking weight, the mean absolute error of the
    predictive mean, the coverage of the held-out observations by the central predictive
    interval and its median width: narrow intervals that miss are the failure to look for.
    Python: `scalelaw.fits.checking.check_holdout`. Progress (fit i of n, ETA) goes to
    standard error: a bar on a terminal, else a log line every ~10 s; none with --quiet.

    Example: scalelaw check sim.csv --holdout N=max --backend lsq --out check.png
    """
    from scalelaw.fits import FitOptions
    from scalelaw.fits.checking import check_holdout
    from scalelaw.fits.family import is_table, load_or_fit

    if out is not None:
        new_output(out, force, FIGURE_FILES)
    try:
        src = source if is_table(source) else load_or_fit(source)
        options = FitOptions(backend=backend, seed=seed) if is_table(source) else None
        with track(f"checking {holdout}", quiet=quiet, unit="fits") as tracker:
            result = check_holdout(
                src, holdout, data=data, options=options, prob=prob, progress=tracker
            )
    except _errors() as exc:
        fail(str(exc))
        return
    for note in result.notes:
        warn(note)
    emit(
        result.table,
        fmt,
        f"held out {result.holdout}: {prob:.0%} predictive interval on "
        f"{result.table['rows'][0]} rows",
    )
    if out is not None:
        result.plot(out)
        messages(fmt).print(f"figure written to {out}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.command()(check)
