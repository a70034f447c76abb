"""Help that says what a value is, never how Python types it.

Typer's help has a type column: `<bool>` for a flag, which takes no value, and `<list[Path]>`
for an argument given several times, which no metavar renames (an argument's metavar replaces
its name, not its type). `plain_types` walks a built command tree once: flags, the help
option included, show no type, and a repeated argument shows the type of one value (its name
already ends in `...`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, get_args

import typer
from typer.core import TyperArgument, TyperOption


class _RepeatedArgument(TyperArgument):
    """An argument given one or more times: its type column names one value."""

    def display_type_rich(self, ctx: Any) -> str | None:
        (element,) = get_args(self.type_descriptor.annotation) or (str,)
        if isinstance(element, type) and issubclass(element, PurePath):
            return "<path>"
        return f"<{getattr(element, '__name__', 'value').lower()}>"


def plain_types(command: Any, help_names: Sequence[str]) -> None:
    """Clean the type column of `command` and every command under it (see the module's text).

    `help_names` are the help option's names (the root's context settings): the help option is
    made once per command and kept, so it is made here with them and cleaned like any flag."""
    params = list(command.params)
    helper = command.get_help_option(typer.Context(command, help_option_names=list(help_names)))
    for param in [*params, *([helper] if helper is not None else [])]:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # shown as the type: empty
        elif (
            isinstance(param, TyperArgument)
            and param.nargs != 1
            and get_args(param.type_descriptor.annotation)
        ):
            param.__class__ = _RepeatedArgument  # same state, another type column
    for sub in getattr(command, "commands", {}).values():
        plain_types(sub, help_names)
