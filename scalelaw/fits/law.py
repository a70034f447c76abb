"""The description of a law, independent of any fitting backend.

A `Law` holds a mean expression (on a link scale), its covariates, named parameters with priors
and optional bounds, group effects (``delta[task]``) with their pooling, and a likelihood. The
PyMC backend, the least-squares backend and prediction all read this one description.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from scalelaw.data import canonical
from scalelaw.fits.expr import Expr, ExprError, parse, trace

Link = Literal["identity", "logit", "log"]
Pooling = Literal["fixed", "partial"]

LINKS = ("identity", "logit", "log")
LIKELIHOODS = ("normal", "student_t", "binomial", "beta_binomial", "beta")
COUNT_LIKELIHOODS = ("binomial", "beta_binomial")
#: Names read as covariates when a law does not say which of its names are covariates.
KNOWN_COVARIATES = ("N", "L", "C", "D", "params", "seq_len", "compression", "tokens", "flops")

#: Distributions a prior may use, with their argument names (PyMC's spelling).
PRIOR_ARGS: dict[str, tuple[str, ...]] = {
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "halfnormal": ("sigma",),
    "lognormal": ("mu", "sigma"),
    "uniform": ("lower", "upper"),
    "exponential": ("lam",),
    "gamma": ("alpha", "beta"),
}


@dataclass(frozen=True)
class Prior:
    """A prior distribution, e.g. ``Prior("normal", (0.0, 5.0))``."""

    dist: str
    args: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.dist not in PRIOR_ARGS:
            raise ExprError(
                f"unknown prior '{self.dist}'; choose from {', '.join(sorted(PRIOR_ARGS))}"
            )
        if len(self.args) != len(PRIOR_ARGS[self.dist]):
            names = ", ".join(PRIOR_ARGS[self.dist])
            raise ExprError(f"prior {self.dist} takes ({names}), got {len(self.args)} values")

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(zip(PRIOR_ARGS[self.dist], self.args, strict=True))

    @property
    def location_scale(self) -> bool:
        return self.dist in ("normal", "student_t")

    def __str__(self) -> str:
        return f"{self.dist}({', '.join(f'{a:g}' for a in self.args)})"

    @classmethod
    def parse(cls, text: str) -> Prior:
        """Read ``normal(0, 5)``: a distribution name and numbers, nothing evaluated."""
        m = re.fullmatch(r"\s*([a-z_]+)\s*\(([^()]*)\)\s*", text)
        if not m:
            raise ExprError(f"prior '{text}' is not of the form name(number, ...)")
        try:
            args = tuple(float(a) for a in m.group(2).split(",") if a.strip())
        except ValueError:
            raise ExprError(f"prior '{text}' has an argument that is not a number") from None
        return cls(m.group(1), args)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        kw = self.kwargs
        match self.dist:
            case "normal":
                return rng.normal(kw["mu"], kw["sigma"], size)
            case "student_t":
                return kw["mu"] + kw["sigma"] * rng.standard_t(kw["nu"], size)
            case "halfnormal":
                return np.abs(rng.normal(0.0, kw["sigma"], size))
            case "lognormal":
                return rng.lognormal(kw["mu"], kw["sigma"], size)
            case "uniform":
                return rng.uniform(kw["lower"], kw["upper"], size)
            case "exponential":
                return rng.exponential(1.0 / kw["lam"], size)
            case _:
                return rng.gamma(kw["alpha"], 1.0 / kw["beta"], size)


@dataclass(frozen=True)
class Param:
    """A named parameter with its prior, optional bounds and least-squares starting grid."""

    name: str
    prior: Prior = field(default_factory=lambda: Prior("normal", (0.0, 10.0)))
    lower: float | None = None
    upper: float | None = None
    starts: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prior": str(self.prior),
            "lower": self.lower,
            "upper": self.upper,
            "starts": list(self.starts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Param:
        return cls(
            name=str(d["name"]),
            prior=Prior.parse(str(d["prior"])),
            lower=None if d.get("lower") is None else float(d["lower"]),
            upper=None if d.get("upper") is None else float(d["upper"]),
            starts=tuple(float(x) for x in d.get("starts", [])),
        )


def inverse_link(link: str, eta: Any, lib: str = "numpy") -> Any:
    """Map the linear predictor to the mean."""
    if link == "identity":
        return eta
    if lib == "numpy":
        return 1.0 / (1.0 + np.exp(-eta)) if link == "logit" else np.exp(eta)
    import pytensor.tensor as pt

    return pt.sigmoid(eta) if link == "logit" else pt.exp(eta)


@dataclass(frozen=True)
class Law:
    """A scaling law: expression, covariates, parameters, link, likelihood, group effects.

    The expression gives the mean on the link scale; covariate names map to table columns via
    the standard aliases (``N`` -> ``params``, ``L`` -> ``seq_len``, ``C`` -> ``compression``).
    """

    name: str
    expr: Expr
    covariates: tuple[str, ...]
    params: tuple[Param, ...]
    link: str = "identity"
    likelihood: str = "normal"
    response: str = "score"
    transform: str | None = None
    pooling: str = "fixed"
    reference: Mapping[str, str] = field(default_factory=dict)
    formula: str = ""
    citation: str = ""
    description: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.link not in LINKS:
            raise ExprError(f"unknown link '{self.link}'; choose from {', '.join(LINKS)}")
        if self.likelihood not in LIKELIHOODS:
            raise ExprError(
                f"unknown likelihood '{self.likelihood}'; choose from {', '.join(LIKELIHOODS)}"
            )
        if self.pooling not in ("fixed", "partial"):
            raise ExprError(f"unknown pooling '{self.pooling}'; choose fixed or partial")
        if self.transform not in (None, "log"):
            raise ExprError(f"unknown response transform '{self.transform}'; use log or none")
        names = self.expr.names()
        declared = {p.name for p in self.params}
        used_params = names - set(self.covariates)
        missing = used_params - declared
        if missing:
            raise ExprError(f"law '{self.name}': no parameter declared for {sorted(missing)}")
        extra = declared - used_params
        if extra:
            raise ExprError(f"law '{self.name}': parameters {sorted(extra)} do not appear")
        for col in self.groups.values():
            if col in self.covariates:
                raise ExprError(f"law '{self.name}': '{col}' is both a covariate and a group")

    # --- derived views ---------------------------------------------------------------------
    @property
    def groups(self) -> dict[str, str]:
        """Group-effect parameters: name -> label column."""
        return self.expr.groups()

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def columns(self) -> dict[str, str]:
        """Covariate name -> table column."""
        return {c: canonical(c) for c in self.covariates}

    @property
    def is_published(self) -> bool:
        return bool(self.fixed)

    @property
    def is_count(self) -> bool:
        return self.likelihood in COUNT_LIKELIHOODS

    def with_options(self, **changes: Any) -> Law:
        return replace(self, **changes)

    def with_priors(self, priors: Mapping[str, str | Prior]) -> Law:
        """A copy with some parameters' priors replaced, e.g. ``{"alpha": "normal(0, 2)"}``."""
        unknown = set(priors) - set(self.param_names)
        if unknown:
            raise ExprError(f"law '{self.name}' has no parameters {sorted(unknown)}")
        params = tuple(
            replace(p, prior=Prior.parse(v) if isinstance(v, str) else v)
            if (v := priors.get(p.name)) is not None
            else p
            for p in self.params
        )
        return replace(self, params=params)

    def mean(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        """The expected response given covariate and parameter values."""
        return inverse_link(self.link, self.expr.evaluate(env, lib), lib)

    # --- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expr": self.expr.to_string(),
            "covariates": list(self.covariates),
            "params": [p.to_dict() for p in self.params],
            "link": self.link,
            "likelihood": self.likelihood,
            "response": self.response,
            "transform": self.transform,
            "pooling": self.pooling,
            "reference": dict(self.reference),
            "formula": self.formula,
            "citation": self.citation,
            "description": self.description,
            "fixed": _jsonable(self.fixed),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Law:
        """Rebuild a law from its stored form; the expression is parsed, never evaluated."""
        return cls(
            name=str(d["name"]),
            expr=parse(str(d["expr"])),
            covariates=tuple(str(c) for c in d["covariates"]),
            params=tuple(Param.from_dict(p) for p in d["params"]),
            link=str(d.get("link", "identity")),
            likelihood=str(d.get("likelihood", "normal")),
            response=str(d.get("response", "score")),
            transform=d.get("transform"),
            pooling=str(d.get("pooling", "fixed")),
            reference={str(k): str(v) for k, v in dict(d.get("reference", {})).items()},
            formula=str(d.get("formula", "")),
            citation=str(d.get("citation", "")),
            description=str(d.get("description", "")),
            fixed=dict(d.get("fixed", {})),
        )

    # --- constructors ----------------------------------------------------------------------
    @classmethod
    def from_string(
        cls,
        text: str,
        *,
        name: str = "custom",
        covariates: Sequence[str] | None = None,
        priors: Mapping[str, str | Prior] | None = None,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        **options: Any,
    ) -> Law:
        """A law from an expression string such as ``"E + A / N**alpha"``."""
        return cls._build(parse(text), name, covariates, priors, bounds, text, options)

    @classmethod
    def from_function(
        cls,
        func: Callable[..., Any],
        *,
        covariates: Sequence[str] | None = None,
        priors: Mapping[str, str | Prior] | None = None,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> Law:
        """A law from a plain Python function whose arguments name covariates and parameters.

        ``def chinchilla(N, D, E, A, B, alpha, beta): return E + A / N**alpha + B / D**beta``
        Covariates are the arguments named in `covariates` (default: the recognised covariate
        names such as N, L, C, D). Group effects are written ``delta[task]`` in the body, with
        ``task`` an argument too.
        """
        expr, argnames = trace(func)
        groups = expr.groups()
        unused = set(argnames) - expr.names() - set(groups.values())
        if unused:
            raise ExprError(f"law function arguments {sorted(unused)} are not used")
        return cls._build(
            expr, name or func.__name__, covariates, priors, bounds, expr.to_string(), options
        )

    @classmethod
    def _build(
        cls,
        expr: Expr,
        name: str,
        covariates: Sequence[str] | None,
        priors: Mapping[str, str | Prior] | None,
        bounds: Mapping[str, tuple[float | None, float | None]] | None,
        formula: str,
        options: dict[str, Any],
    ) -> Law:
        names = expr.names()
        if covariates is None:
            covariates = [n for n in sorted(names) if n in KNOWN_COVARIATES]
        else:
            unknown = [c for c in covariates if c not in names]
            if unknown:
                raise ExprError(f"covariates {unknown} do not appear in the law")
        if not covariates:
            raise ExprError(
                "the law has no covariates; name them (e.g. covariates=['N', 'D'] or "
                "--covariates N,D)"
            )
        params = []
        for p in sorted(names - set(covariates)):
            prior = (priors or {}).get(p)
            lo, hi = (bounds or {}).get(p, (None, None))
            params.append(
                Param(
                    p,
                    prior=Prior.parse(prior)
                    if isinstance(prior, str)
                    else prior or default_prior(lo, hi),
                    lower=lo,
                    upper=hi,
                )
            )
        unknown_p = set(priors or {}) - {p.name for p in params}
        if unknown_p:
            raise ExprError(f"priors given for unknown parameters {sorted(unknown_p)}")
        return cls(
            name=name,
            expr=expr,
            covariates=tuple(covariates),
            params=tuple(params),
            formula=formula,
            **options,
        )


def default_prior(lower: float | None, upper: float | None) -> Prior:
    """A weak prior that respects bounds."""
    if lower is not None and upper is not None:
        return Prior("uniform", (lower, upper))
    if lower == 0.0 and upper is None:
        return Prior("halfnormal", (10.0,))
    return Prior("normal", (0.0, 10.0))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        raise ExprError("fixed law values must be finite")
    return x
