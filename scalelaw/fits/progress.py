"""Progress of the fitting API: how a `progress=` callback is told what is to come.

A `progress=` callback is called with a message before each step (a fit, a refit, a
refinement, a bootstrap refit). One that also has an `expect(n)` method (the command line's
tracker) is told the number of steps first, so that it can show "i of n" and an ETA; a plain
function is only called with messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def announce(progress: Any, steps: int) -> None:
    """Tell a `progress` callback that counts that `steps` more steps are to come (negative:
    fewer than announced); nothing for a plain function or None."""
    expect = getattr(progress, "expect", None)
    if callable(expect) and steps:
        expect(steps)


def messages_only(progress: Any) -> Callable[[str], None] | None:
    """`progress` for a nested call whose steps the caller has announced already: the
    messages pass, the nested `announce` does not count them twice."""
    if progress is None:
        return None
    return lambda message: progress(message)
