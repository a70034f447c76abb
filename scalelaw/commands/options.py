"""Options that several commands share, each declared once as an `Annotated` type typer reads.

One block per family: output (--format, the file types an --out takes, --force and the check
every --out gets before any work), sampler (--seed,
--chains, --draws, --tune), architectures (--family, --sizes), cost model (--phase, --batch,
--bytes) and posterior summaries (--prob, --max-draws). An option whose help differs from one
command to another is declared beside its command, since its help says what it does there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer

from scalelaw.commands.common import check_output, positive, probability, refuse_overwrite

Format = Literal["table", "csv", "json"]
Phase = Literal["prefill", "decode"]
Backend = Literal["bayes", "lsq"]

# --- output ------------------------------------------------------------------------------------
#: What each command writes, by --out suffix.
FIT_FILES = (".nc",)
TABLE_FILES = (".csv", ".parquet", ".jsonl", ".ndjson")
FIGURE_FILES = (".png", ".pdf", ".svg")

FormatOpt = Annotated[Format, typer.Option("--format", help="table, csv or json.")]
TableOrJsonOpt = Annotated[
    Literal["table", "json"], typer.Option("--format", help="table or json.")
]
FigureOutOpt = Annotated[
    Path | None, typer.Option("--out", help="Write the figure here (PNG, PDF, SVG).")
]
TableOutOpt = Annotated[
    Path,
    typer.Option("--out", "-o", help="Output table (.parquet, .csv or .jsonl)."),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Overwrite --out if it exists (else exit 2, keeping it).")
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress (a bar on a terminal, log lines on standard error else)."
    ),
]


def new_output(path: Path, force: bool, suffixes: Sequence[str], option: str = "--out") -> Path:
    """`path` checked before any work: writable and of a type the command writes
    (`check_output`), and not an existing file unless `force` (one line, exit 2)."""
    check_output(path, option, suffixes)
    refuse_overwrite(path, force)
    return path


# --- sampler -----------------------------------------------------------------------------------
SeedOpt = Annotated[int, typer.Option(min=0, help="Random seed.")]
ChainsOpt = Annotated[int, typer.Option(min=1, help="MCMC chains (bayes).")]
DrawsOpt = Annotated[int, typer.Option(min=1, help="Draws per chain (bayes).")]
TuneOpt = Annotated[int, typer.Option(min=0, help="Tuning steps per chain (bayes).")]

# --- architectures -----------------------------------------------------------------------------
FamilyOpt = Annotated[str, typer.Option(help="Built-in family whose sizes compete.")]
SizesOpt = Annotated[
    str | None, typer.Option(help="Comma-separated sizes, e.g. 7B,14B,32B,72B (default: all).")
]

# --- cost model --------------------------------------------------------------------------------
PhaseOpt = Annotated[Phase, typer.Option(help="prefill (FLOPs) or decode (bytes per step).")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Sequences processed together.")]
BytesOpt = Annotated[
    float,
    typer.Option(
        "--bytes", callback=positive, help="Bytes per weight / KV element at decode (2 = bf16)."
    ),
]

# --- posterior summaries -----------------------------------------------------------------------
IntervalProbOpt = Annotated[
    float, typer.Option(callback=probability, help="Central interval probability.")
]
MaxDrawsOpt = Annotated[int, typer.Option(min=1, help="Posterior draws used at most.")]
