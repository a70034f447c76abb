"""Degenerate designs: parameters that take one value in every draw, so the data do not
identify them and planning cannot value measuring them."""

from __future__ import annotations

from typing import Any

import numpy as np


def _flag_degenerate(src: Any) -> list[str]:
    draws = getattr(src, "draws", None)
    if not isinstance(draws, dict) or getattr(src, "n_draws", 1) < 2:
        return []
    flat = [k for k, v in draws.items() if np.ndim(v) == 1 and np.ptp(v) == 0]
    if not flat:
        return []
    return [
        f"parameter(s) {', '.join(sorted(flat))} take one value in every draw: the data do not "
        "identify them (a bootstrap cannot move them), so their uncertainty and the value of "
        "measuring it are missing; fit with the bayes backend"
    ]
