"""The method registry: names are the `method` strings of the accuracy-point table.

Names and phases come from the method spec (`scalelaw.kernels.specs`); this module maps them to
the classes that run them.
"""

from __future__ import annotations

from typing import Any

from scalelaw.kernels.base import PHASES, KernelInputError, SparseMethod
from scalelaw.kernels.block_sparse import BlockSparse
from scalelaw.kernels.dense import Dense
from scalelaw.kernels.flexprefill import FlexPrefill
from scalelaw.kernels.quest import Quest
from scalelaw.kernels.snapkv import AdaSnapKV, SnapKV
from scalelaw.kernels.specs import get_spec, method_names
from scalelaw.kernels.vertical_slash import VerticalSlash

_METHODS: dict[str, type[SparseMethod]] = {
    cls.spec.name: cls
    for cls in (Dense, BlockSparse, VerticalSlash, FlexPrefill, Quest, SnapKV, AdaSnapKV)
}


def list_methods(phase: str | None = None) -> list[str]:
    """Registered method names, optionally only those with the given phase."""
    return method_names(phase)


def get_method(name: str, phase: str | None = None, **knobs: Any) -> SparseMethod:
    """A method instance; `phase` picks the phase of `dense` (default: its first, prefill).

    Keyword knobs replace the method's defaults for every call of this instance.
    """
    get_spec(name)
    if phase is not None and phase not in PHASES:
        raise KernelInputError(f"phase must be one of {PHASES}, got {phase!r}")
    return _METHODS[name](phase=phase, **knobs)
