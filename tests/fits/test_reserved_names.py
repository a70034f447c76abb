"""Names a fit file needs for itself are refused when the law is written, with the reason."""

from __future__ import annotations

import pytest

from scalelaw.fits import Law
from scalelaw.fits.expr import ExprError


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("eps + chain * log(N)", "'chain' and 'draw' name the posterior's own dimensions"),
        ("draw + a * log(N)", "'chain' and 'draw' name the posterior's own dimensions"),
        ("eps + a * log(N) + delta_level[task]", "names ending in '_level'"),
        ("obs_eps + a * log(N)", "names starting with 'obs_'"),
        ("eps + a * log(N) + d[score]", "groups by the response column"),
    ],
)
def test_reserved_names_are_refused(expr: str, reason: str) -> None:
    with pytest.raises(ExprError, match=reason):
        Law.from_string(expr)


def test_ordinary_names_are_kept() -> None:
    law = Law.from_string("eps + draws * log(N) + level[task]")
    assert {p.name for p in law.params} == {"eps", "draws", "level"}
