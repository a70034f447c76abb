"""A stacked fit is saved all at once or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scalelaw.fits import FitResult, get_card
from scalelaw.fits.result import FitFileError, load_fit
from scalelaw.fits.stacking import StackedFit


def _stack() -> StackedFit:
    card = get_card("sparse-frontier-v1:prefill")
    other = FitResult.card(card.law, {**card.meta["values"], "gamma": -1.5})
    return StackedFit([card, other], np.array([0.3, 0.7]), "equal weights")


def test_round_trip(tmp_path: Path) -> None:
    back = load_fit(_stack().save(tmp_path / "s.nc"))
    assert back.weights.tolist() == pytest.approx([0.3, 0.7])


def test_a_folder_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "d.nc").mkdir()
    with pytest.raises(FitFileError, match="is a directory"):
        _stack().save(tmp_path / "d.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.nc"]
