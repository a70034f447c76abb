"""The project's error base class: every clear, expected failure (bad data, a bad law, an
unreadable fit file) derives from it, so the command line has one error path."""

from __future__ import annotations


class ScalelawError(ValueError):
    """A failure the user can fix; its message names what is wrong and where."""
