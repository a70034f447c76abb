"""The project's error base class: every clear, expected failure (bad data, a bad law, an
unreadable fit file) derives from it, so the command line has one error path."""

from __future__ import annotations


class ScalelawError(ValueError):
    """A failure the user can fix; its message names what is wrong and where."""


class DataError(ScalelawError):
    """A table failed validation; the message names file, row and column.

    Raised by `scalelaw.data` (and importable from there) and by `scalelaw.datasets`, which
    `data` reads packaged tables through."""


def user_errors() -> tuple[type[BaseException], ...]:
    """What a command reports as one line and exit status 2 rather than a traceback.

    ValueError stays in the tuple while third-party libraries still raise it for bad input
    (polars on an unreadable column, scipy on a degenerate table).
    """
    return (ScalelawError, ValueError)
