"""A sampler that cannot start is retried once from the least-squares optimum, else one line."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from scalelaw.errors import ScalelawError
from scalelaw.fits import FitOptions, bayes, fit, get_law

OPTIONS = FitOptions(backend="bayes", chains=2, draws=100, tune=100)


def _failing(times: int, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    real = bayes.sample
    calls: list[Any] = []

    def sample(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("initvals"))
        if len(calls) <= times:
            raise RuntimeError("Initial evaluation of model at starting point failed!")
        return real(*args, **kwargs)

    monkeypatch.setattr(bayes, "sample", sample)
    return calls


def test_a_failed_start_is_retried_from_the_optimum(sim, monkeypatch) -> None:
    calls = _failing(1, monkeypatch)
    law = get_law("floor-ceiling")  # non-linear: started from the least-squares optimum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(sim.head(400), law, OPTIONS)
    assert len(calls) >= 2 and calls[1] is not None and "ceiling" in calls[1]
    assert result.backend == "bayes"


def test_two_failed_starts_are_one_line(sim, monkeypatch) -> None:
    _failing(2, monkeypatch)
    with pytest.raises(ScalelawError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(sim.head(400), get_law("sparse-frontier"), OPTIONS)
    message = str(info.value)
    assert "\n" not in message and "could not start" in message and "Initial evaluation" in message
