"""The benchmarks' truth outside the study's law: the prefill card with a length-moving slope."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from scalelaw.fits import get_card, predict_draws
from scalelaw.fits.simulation import length_slope_card


def _points(length: float, ratio: float) -> dict[str, list]:
    return {"N": [7e9], "L": [length], "C": [ratio], "task": ["QuALITY"]}


def test_it_equals_the_card_at_the_pivot_and_parts_with_length() -> None:
    card = get_card("sparse-frontier-v1:prefill")
    truth = length_slope_card(-0.1, pivot=32768)

    def gap(length: float, ratio: float) -> float:
        a, b = (float(predict_draws(s, _points(length, ratio))[0, 0]) for s in (truth, card))
        return float(logit(a) - logit(b))

    assert gap(32768, 10.0) == pytest.approx(0.0, abs=1e-9)
    assert gap(131072, 1.0) == pytest.approx(0.0, abs=1e-9)  # dense is untouched
    assert gap(131072, 10.0) == pytest.approx(-0.1 * np.log(4) * np.log(10), rel=1e-6)


def test_tasks_keep_only_their_offsets() -> None:
    truth = length_slope_card(tasks=("QuALITY", "SQuAD"))
    assert truth.levels["task"] == ["QuALITY", "SQuAD"]
