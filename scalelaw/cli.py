"""The `scalelaw` command line: a thin layer over the Python API.

Each group of commands lives in `scalelaw/commands/` and registers itself on the app; heavy
imports (PyMC, torch) happen inside the commands, so `scalelaw --help` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer

from scalelaw import __version__
from scalelaw.commands import checking, deciding, fitting, importing, kernels, measuring
from scalelaw.commands import planning as planning_commands
from scalelaw.commands.common import PlainErrors
from scalelaw.commands.helptext import plain_types
from scalelaw.commands.progress import install_log_handler

HELP_NAMES = ["-h", "--help"]


class _Root(PlainErrors):
    """The root command (one plain line per error), whose help and every command's name no
    Python type (`scalelaw.commands.helptext`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_types(self, HELP_NAMES)


app = typer.Typer(
    name="scalelaw",
    help="Measure, fit, predict and decide with scaling laws for sparse attention.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    cls=_Root,
    context_settings={"help_option_names": HELP_NAMES},
)


def _print_version(value: bool) -> None:
    if value:
        try:
            number = version("scalelaw")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = __version__
        typer.echo(f"scalelaw {number}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            expose_value=False,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Measure, fit, predict and decide with scaling laws for sparse attention."""
    # progress of long commands off a terminal: log lines on standard error
    install_log_handler()


for module in (fitting, checking, measuring, importing, kernels, deciding):
    module.register(app)
planning_commands.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
