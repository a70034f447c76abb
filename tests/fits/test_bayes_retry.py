"""The one automatic retry of a Bayesian fit: what it changes, by the reason for it."""

from __future__ import annotations

import pytest

from scalelaw.fits.bayes import SampleSettings, retry_reasons, retry_settings


def _diagnostics(rhat: float = 1.0, ess: float = 1000.0, divergences: int = 0) -> dict:
    return {"rhat_max": rhat, "ess_bulk_min": ess, "divergences": divergences}


@pytest.mark.parametrize(
    ("diagnostics", "accept", "scale"),
    [
        (_diagnostics(rhat=1.05), 0.95, 2),
        (_diagnostics(ess=50.0), 0.95, 2),
        (_diagnostics(divergences=3), 0.99, 1),
        (_diagnostics(rhat=1.05, divergences=3), 0.99, 2),
    ],
)
def test_retry_settings_follow_the_reason(diagnostics, accept, scale) -> None:
    first = SampleSettings(draws=500, tune=400, chains=4, target_accept=0.9)
    assert retry_reasons(diagnostics, first)
    again = retry_settings(first, diagnostics)
    # slow mixing also takes smaller steps: divergences first seen in the final run are final
    assert again.target_accept == accept
    assert (again.tune, again.draws) == (400 * scale, 500 * scale)
    assert first.target_accept == 0.9  # the first run's settings are left as they were


def test_no_retry_for_a_healthy_run() -> None:
    assert retry_reasons(_diagnostics(), SampleSettings()) == []
