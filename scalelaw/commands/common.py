"""What every command shares: one error path, number parsing, and table output.

Errors are printed as plain text (no markup interpretation, so a file called `[v2].csv` is
named as it is; no wrapping, so one error is one line in a log) with exit status 2; `--strict`
fit failures use 3. Helpers that call the API (polars, fits, frontier) import it inside
themselves, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from scalelaw.commands.consoles import console, err
from scalelaw.commands.progress import track
from scalelaw.errors import ScalelawError, user_errors


def one_line(text: str) -> str:
    """A message on one line: a log line per error, whatever a library put in it."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def say_error(message: str) -> None:
    """Print `error: message` on standard error: plain (no markup, so `[v2].csv` stays as it
    is), unwrapped and on one line."""
    text = f"error: {one_line(message)}"
    err.print(text, markup=False, highlight=False, soft_wrap=True, style="red")


def fail(message: str, code: int = 2) -> NoReturn:
    say_error(message)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True, style="yellow")


def messages(fmt: str) -> Any:
    """Where a command's messages go when its standard output carries `fmt`: beside tables,
    there too; beside JSON or CSV, standard error, so that standard output parses."""
    return console if fmt == "table" else err


def errors() -> tuple[type[BaseException], ...]:
    return user_errors()


def number(text: str, what: str, *, at_least: float | None = None) -> float:
    """A number such as ``7e9`` or ``128K``, at least `at_least` when given."""
    from scalelaw.data import as_float

    value = as_float(text, what)
    if at_least is not None and value < at_least:
        raise ScalelawError(f"{what}: '{text.strip()}' is below {at_least:g}")
    return value


def numbers(text: str, what: str, *, at_least: float | None = None) -> list[float]:
    """Comma-separated numbers (see `number`)."""
    values = [number(t, what, at_least=at_least) for t in text.split(",") if t.strip()]
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
    if fmt == "csv":
        sys.stdout.write(table.write_csv())
    elif fmt == "json":
        print(json.dumps(table.to_dicts(), indent=2))
    else:
        # cells are text from the user's files: a task called `[v2]` is not markup
        t = Table(*[escape(c) for c in table.columns], title=title)
        for row in table.iter_rows():
            t.add_row(*[escape(cell(v)) for v in row])
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


@contextmanager
def fitting_status(source: str, quiet: bool = False) -> Iterator[None]:
    """Progress (fit i of n, ETA) while a data table is fitted with the law family, also when
    that happens inside the API (`decide`); a fit file or a published law is only read, so it
    gets none."""
    from scalelaw.fits.family import is_table, reporting

    if not is_table(source):
        yield
        return
    with (
        track("fitting the law family to the table", quiet=quiet, unit="fits") as tracker,
        reporting(tracker),
    ):
        yield


# --- option checks -----------------------------------------------------------------------------
def in_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[float | None], float | None]:
    """A typer callback: the value is a finite number within the given ends.

    Typer's own `min=`/`max=` include their ends and let nan through; this covers both.
    """

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise typer.BadParameter(
                f"{value:g} is not {_describe(low, high, low_open, high_open)}"
            )
        return value

    return check


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "a finite number"


positive = in_range(0, low_open=True)
probability = in_range(0, 1, low_open=True, high_open=True)


_UNITS = {"": 1.0, "b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}


def byte_size(text: str | None) -> float | None:
    """A typer callback: '2GB', '500MB', '1.5e9' as a number of bytes (> 0)."""
    if text is None:
        return None
    raw = str(text).strip().lower().replace(" ", "")
    number_part = raw.rstrip("kmgtb")
    unit = raw[len(number_part) :]
    try:
        value = float(number_part) * _UNITS[unit]
    except (ValueError, KeyError):
        raise typer.BadParameter(f"'{text}' is not a size such as 2GB, 500MB or 1e9") from None
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"'{text}' must be a positive size")
    return value


def check_output(path: Path, option: str, suffixes: Sequence[str]) -> Path:
    """Refuse an output path before any work is done: a folder, a missing or read-only folder,
    or a file type the command does not write (exit 2, naming the option)."""
    where = f"{option} {path}"
    if path.is_dir():
        fail(f"{where}: is a directory; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        fail(f"{where}: unsupported file type '{path.suffix}' (expected {', '.join(suffixes)})")
    folder = path.parent
    if not folder.exists():
        fail(f"{where}: folder '{folder}' does not exist")
    if not folder.is_dir():
        fail(f"{where}: '{folder}' is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{where}: cannot write there (permission denied)")
    return path


def refuse_overwrite(path: Path, force: bool, flag: str = "--force") -> None:
    """Keep an existing output file unless `flag` is given (exit 2, naming both)."""
    if path.exists() and not force:
        fail(f"{path}: exists; give {flag} to overwrite it, or another --out")


# --- the root command --------------------------------------------------------------------------
class PlainErrors(TyperGroup):
    """The root command: every error the user can fix is one plain line and exit status 2.

    Typer draws usage errors (an unknown option, a value out of range) in a box wrapped to the
    terminal, and an error a command did not catch ends in a traceback; both become one
    `error: ...` line here, as the commands' own errors are.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        call = (args, prog_name, complete_var)
        if not standalone_mode:
            return super().main(*call, False, windows_expand_args, **extra)
        try:
            code = super().main(*call, False, windows_expand_args, **extra)
        except TyperException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # typer has printed the help
                ctx = getattr(exc, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                say_error(where + exc.format_message())
            sys.exit(2)
        except Abort:
            say_error("aborted")
            sys.exit(1)
        except OSError as exc:
            say_error(_os_error(exc))
            sys.exit(2)
        except errors() as exc:
            say_error(str(exc))
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


def _os_error(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or type(exc).__name__
    return f"{name}: {reason}" if name else reason
