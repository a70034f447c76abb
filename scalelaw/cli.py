"""The `scalelaw` command line: a thin layer over the Python API.

Each group of commands lives in `scalelaw/commands/` and registers itself on the app; heavy
imports (PyMC, torch) happen inside the commands, so `scalelaw --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from scalelaw.commands import checking, deciding, fitting, importing, kernels, measuring
from scalelaw.commands import planning as planning_commands
from scalelaw.commands.common import PlainErrors
from scalelaw.commands.progress import install_log_handler

app = typer.Typer(
    name="scalelaw",
    help="Measure, fit, predict and decide with scaling laws for sparse attention.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    cls=PlainErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("scalelaw")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from scalelaw import __version__ as number
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
