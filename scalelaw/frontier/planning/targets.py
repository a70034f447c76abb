"""Targets: the decision to get right (a length and a cost budget) and its `-t` syntax."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalelaw.frontier.planning.errors import PlanError


@dataclass(frozen=True)
class Target:
    """A decision to get right: best sparse against best dense at one length.

    With a `budget`, at that cost; without (``budget=mean``), on average over log-spaced
    budgets spanning the dense sizes' costs, the advantage whose sign change along L is the
    critical length (`scalelaw.frontier.critical_length`).
    """

    seq_len: float
    budget: float | None

    @property
    def label(self) -> str:
        spend = "mean" if self.budget is None else f"{self.budget:.3g}"
        return f"L={_tokens(self.seq_len)}, budget={spend}"


#: Budgets of a ``budget=mean`` target (as `critical_length` scans them).
MEAN_BUDGETS = 24


def _tokens(length: float) -> str:
    return f"{length / 1024:g}K" if length % 1024 == 0 else f"{length:g}"


def _number(text: str, where: str) -> float:
    t = text.strip()
    scale = 1024.0 if t[-1:] in ("k", "K") else 1.0
    try:
        value = float(t[:-1] if scale != 1.0 else t) * scale
    except ValueError:
        raise PlanError(f"{where}: '{text}' is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise PlanError(f"{where}: '{text}' must be a positive number")
    return value


def parse_target(text: str) -> Target:
    """``L=128K,budget=4e16`` (a cost in the decision's unit) or ``L=48K,budget=mean``."""
    values: dict[str, float | None] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        key = {"seq_len": "l", "length": "l"}.get(key, key)
        if not sep or key not in ("l", "budget"):
            raise PlanError(f"target '{text}': expected 'L=LENGTH,budget=COST', got '{part}'")
        if key in values:
            name = "L" if key == "l" else key
            raise PlanError(f"target '{text}': {name} is given twice (one target per -t)")
        if key == "budget" and value.strip().lower() == "mean":
            values[key] = None
        else:
            values[key] = _number(value, f"target '{text}': {'L' if key == 'l' else key}")
    missing = [k for k in ("l", "budget") if k not in values]
    if missing:
        what = " and ".join("L" if k == "l" else k for k in missing)
        raise PlanError(f"target '{text}': missing {what} (e.g. 'L=128K,budget=4e16')")
    length = values["l"]
    assert length is not None
    return Target(length, values["budget"])
