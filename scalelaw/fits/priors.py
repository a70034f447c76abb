"""Prior distributions: one table from a prior's name to everything the backends need of it.

Each family names its arguments (PyMC's spelling), its PyMC class, a SciPy factory (sampling,
quantiles and typical values for least-squares starts come from SciPy, not from hand-written
formulas) and its natural support, which decides whether a parameter's bounds need truncation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from scalelaw.fits.expr import ExprError


class PriorError(ExprError):
    """A prior is not well formed."""


@dataclass(frozen=True)
class Family:
    args: tuple[str, ...]
    pymc: str
    scipy: Callable[..., Any]
    support: Callable[[dict[str, float]], tuple[float | None, float | None]]


FAMILIES: dict[str, Family] = {
    "normal": Family(
        ("mu", "sigma"), "Normal", lambda mu, sigma: stats.norm(mu, sigma), lambda k: (None, None)
    ),
    "student_t": Family(
        ("nu", "mu", "sigma"),
        "StudentT",
        lambda nu, mu, sigma: stats.t(nu, mu, sigma),
        lambda k: (None, None),
    ),
    "halfnormal": Family(
        ("sigma",), "HalfNormal", lambda sigma: stats.halfnorm(scale=sigma), lambda k: (0.0, None)
    ),
    "lognormal": Family(
        ("mu", "sigma"),
        "LogNormal",
        lambda mu, sigma: stats.lognorm(s=sigma, scale=np.exp(mu)),
        lambda k: (0.0, None),
    ),
    "uniform": Family(
        ("lower", "upper"),
        "Uniform",
        lambda lower, upper: stats.uniform(lower, upper - lower),
        lambda k: (k["lower"], k["upper"]),
    ),
    "exponential": Family(
        ("lam",), "Exponential", lambda lam: stats.expon(scale=1.0 / lam), lambda k: (0.0, None)
    ),
    "gamma": Family(
        ("alpha", "beta"),
        "Gamma",
        lambda alpha, beta: stats.gamma(alpha, scale=1.0 / beta),
        lambda k: (0.0, None),
    ),
}

#: Distributions a prior may use, with their argument names.
PRIOR_ARGS: dict[str, tuple[str, ...]] = {name: f.args for name, f in FAMILIES.items()}


@dataclass(frozen=True)
class Prior:
    """A prior distribution, e.g. ``Prior("normal", (0.0, 5.0))``."""

    dist: str
    args: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.dist not in FAMILIES:
            raise PriorError(
                f"unknown prior '{self.dist}'; choose from {', '.join(sorted(FAMILIES))}"
            )
        if len(self.args) != len(FAMILIES[self.dist].args):
            names = ", ".join(FAMILIES[self.dist].args)
            raise PriorError(f"prior {self.dist} takes ({names}), got {len(self.args)} values")
        if not all(np.isfinite(a) for a in self.args):
            raise PriorError(f"prior {self.dist}{self.args} has an argument that is not finite")
        try:
            self.frozen()
        except (ValueError, ZeroDivisionError):
            raise PriorError(f"prior {self} has invalid arguments") from None
        if self.dist == "uniform" and self.args[0] >= self.args[1]:
            raise PriorError(f"prior {self}: lower must be below upper")
        scale_args = {"sigma", "lam", "alpha", "beta"} & set(FAMILIES[self.dist].args)
        if any(self.kwargs[a] <= 0 for a in scale_args) or (
            self.dist == "student_t" and self.kwargs["nu"] <= 0
        ):
            raise PriorError(f"prior {self}: scale and shape arguments must be positive")

    @property
    def family(self) -> Family:
        return FAMILIES[self.dist]

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(zip(self.family.args, self.args, strict=True))

    @property
    def support(self) -> tuple[float | None, float | None]:
        return self.family.support(self.kwargs)

    @property
    def location_scale(self) -> bool:
        return self.dist in ("normal", "student_t")

    def frozen(self) -> Any:
        """The SciPy distribution."""
        return self.family.scipy(**self.kwargs)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.asarray(self.frozen().rvs(size=size, random_state=rng), dtype=float)

    def quantiles(self, q: Any) -> np.ndarray:
        return np.asarray(self.frozen().ppf(q), dtype=float)

    def pymc_dist(self) -> Any:
        """An unnamed PyMC distribution (for ``pm.logp`` and ``pm.Truncated``)."""
        import pymc as pm  # deferred: heavy

        return getattr(pm, self.family.pymc).dist(**self.kwargs)

    def pymc_variable(self, name: str, **extra: Any) -> Any:
        """A named PyMC random variable; PyMC transforms bounded supports (log, interval)."""
        import pymc as pm  # deferred: heavy

        return getattr(pm, self.family.pymc)(name, **self.kwargs, **extra)

    def __str__(self) -> str:
        return f"{self.dist}({', '.join(f'{a:g}' for a in self.args)})"

    def spec(self) -> str:
        """The prior as text that parses back to exactly the same numbers (for fit files)."""
        return f"{self.dist}({', '.join(repr(float(a)) for a in self.args)})"

    @classmethod
    def parse(cls, text: str) -> Prior:
        """Read ``normal(0, 5)``: a distribution name and numbers, nothing evaluated."""
        m = re.fullmatch(r"\s*([a-z_]+)\s*\(([^()]*)\)\s*", text)
        if not m:
            raise PriorError(f"prior '{text}' is not of the form name(number, ...)")
        try:
            args = tuple(float(a) for a in m.group(2).split(",") if a.strip())
        except ValueError:
            raise PriorError(f"prior '{text}' has an argument that is not a number") from None
        return cls(m.group(1), args)
