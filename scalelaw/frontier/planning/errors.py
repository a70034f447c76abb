"""The one error of planning (a `ScalelawError`, so the CLI reports it as a usage error)."""

from __future__ import annotations

from scalelaw.errors import ScalelawError


class PlanError(ScalelawError):
    """Bad input to planning, or nothing to plan."""
