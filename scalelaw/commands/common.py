"""What every command shares: one error path, number parsing, and table output.

Errors are printed as plain text (no markup interpretation, so a file called `[v2].csv` is
named as it is; no wrapping, so one error is one line in a log) with exit status 2; `--strict`
fit failures use 3.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

# wide enough for the frontier table when the output is a pipe or a file
console = Console(width=shutil.get_terminal_size((150, 24)).columns)
err = Console(stderr=True)

FORMATS = ("table", "csv", "json")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True, style="red")
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True, style="yellow")


def errors() -> tuple[type[BaseException], ...]:
    from scalelaw.errors import user_errors

    return user_errors()


def check_format(fmt: str, formats: tuple[str, ...] = FORMATS) -> None:
    if fmt not in formats:
        fail(f"unknown --format '{fmt}' ({', '.join(formats)})")


def number(text: str, what: str) -> float:
    from scalelaw.data import as_float

    return as_float(text, what)


def numbers(text: str, what: str) -> list[float]:
    from scalelaw.errors import ScalelawError

    values = [number(t, what) for t in text.split(",") if t.strip()]
    if not values:
        raise ScalelawError(f"{what}: no values in '{text}'")
    return values


def cell(value: Any) -> str:
    """One table cell: integers as such, other floats to four significant digits."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) < 1e7:
            return str(int(value))
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def emit(table: Any, fmt: str, title: str) -> None:
    """A polars frame as a rich table, CSV or JSON on standard output."""
    check_format(fmt)
    if fmt == "csv":
        sys.stdout.write(table.write_csv())
    elif fmt == "json":
        print(json.dumps(table.to_dicts(), indent=2))
    else:
        t = Table(*table.columns, title=title)
        for row in table.iter_rows():
            t.add_row(*[cell(v) for v in row])
        console.print(t)


def architectures(family: str, sizes: str | None, configs: list[Path] | None) -> list[Any]:
    """The competing architectures: config.json files, or sizes of a built-in family."""
    from scalelaw.frontier import family_sizes, from_hf_config, get_architecture

    if configs:
        return [from_hf_config(p, size=p.parent.name or p.stem) for p in configs]
    if sizes:
        return sorted(
            (get_architecture(family, s) for s in sizes.split(",") if s.strip()),
            key=lambda a: a.params(),
        )
    return family_sizes(family)
