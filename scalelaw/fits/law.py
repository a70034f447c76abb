"""The description of a law, independent of any fitting backend.

A `Law` holds a mean expression (on a link scale), its covariates, named parameters with priors
and optional bounds, group effects (``delta[task]``) with their pooling, and a likelihood. The
PyMC backend, the least-squares backend and prediction all read this one description.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from scalelaw.data import canonical
from scalelaw.fits.expr import BinOp, Call, Expr, ExprError, Group, Neg, parse, trace
from scalelaw.fits.priors import Prior

Link = Literal["identity", "logit", "log"]
Pooling = Literal["fixed", "partial"]

LINKS = ("identity", "logit", "log")
LIKELIHOODS = (
    "normal",
    "student_t",
    "binomial",
    "beta_binomial",
    "logit_normal_binomial",
    "beta",
)
#: Likelihoods of successes out of trials (`scalelaw.fits.lack_of_fit` for the logit-normal one).
COUNT_LIKELIHOODS = ("binomial", "beta_binomial", "logit_normal_binomial")
#: Names read as covariates when a law does not say which of its names are covariates.
KNOWN_COVARIATES = ("N", "L", "C", "D", "params", "seq_len", "compression", "tokens", "flops")


@dataclass(frozen=True)
class Param:
    """A named parameter with its prior, optional bounds and least-squares starting values.

    A prior of None means "weakly informative on the data's scale": the fit sets it from the
    table (see `scalelaw.fits.defaults`), and the fitted law records the prior it used.
    """

    name: str
    prior: Prior | None = None
    lower: float | None = None
    upper: float | None = None
    starts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        lo, hi = self.lower, self.upper
        for b in (lo, hi):
            if b is not None and not math.isfinite(b):
                raise ExprError(f"parameter {self.name}: bounds must be finite numbers")
        if lo is not None and hi is not None and lo >= hi:
            raise ExprError(f"parameter {self.name}: lower bound {lo:g} >= upper bound {hi:g}")

    @property
    def bounded(self) -> bool:
        return self.lower is not None or self.upper is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prior": "auto" if self.prior is None else self.prior.spec(),
            "lower": self.lower,
            "upper": self.upper,
            "starts": list(self.starts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Param:
        return cls(
            name=str(d["name"]),
            prior=None if d.get("prior", "auto") == "auto" else Prior.parse(str(d["prior"])),
            lower=None if d.get("lower") is None else float(d["lower"]),
            upper=None if d.get("upper") is None else float(d["upper"]),
            starts=tuple(float(x) for x in d.get("starts", [])),
        )


def unique_names(names: Sequence[str]) -> list[str]:
    """`names` with repeats told apart (``a``, ``a#2``, ``a#3``): laws fitted side by side."""
    out: list[str] = []
    for name in names:
        unique, i = name, 2
        while unique in out:
            unique, i = f"{name}#{i}", i + 1
        out.append(unique)
    return out


def inverse_link(link: str, eta: Any, lib: str = "numpy") -> Any:
    """Map the linear predictor to the mean."""
    if link == "identity":
        return eta
    if lib == "numpy":
        return 1.0 / (1.0 + np.exp(-eta)) if link == "logit" else np.exp(eta)
    import pytensor.tensor as pt  # deferred: heavy

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
        for reason, taken in (
            ("names starting with 'obs_' are reserved for the likelihood's own parameters",
             lambda n: n.startswith("obs_")),
            ("'chain' and 'draw' name the posterior's own dimensions in a fit file",
             lambda n: n in ("chain", "draw")),
            ("names ending in '_level' name the levels of a group effect in a fit file",
             lambda n: n.endswith("_level")),
        ):  # fmt: skip
            reserved = sorted(n for n in declared if taken(n))
            if reserved:
                raise ExprError(f"law '{self.name}': {reason}; rename {reserved}")
        # a score is correct / samples: grouping by `correct` fits one level per outcome
        responses = {self.response, "correct"} if self.response == "score" else {self.response}
        for param, col in self.groups.items():
            if col in responses:
                raise ExprError(
                    f"law '{self.name}': '{param}[{col}]' groups by the response column"
                    + (f" ({self.response} is correct / samples)" if col != self.response else "")
                )
            if col in self.covariates:
                raise ExprError(f"law '{self.name}': '{col}' is both a covariate and a group")
            if param in self.covariates:  # N[task] has no per-level values to fit
                raise ExprError(
                    f"law '{self.name}': '{param}' is a covariate and cannot be a group effect "
                    f"{param}[{col}]; give the per-{col} parameter another name"
                )
        if self.pooling == "partial":
            other = set(self.groups) - set(additive_groups(self))
            if other:
                raise ExprError(
                    f"law '{self.name}': partial pooling draws offsets around 0, so it applies "
                    f"to additive offsets (+ delta[task]) only, not to {sorted(other)}"
                )

    def __repr__(self) -> str:
        """``Law(name='sparse-frontier', 'score ~ sigmoid(eps + alpha * log(N) + ...)',
        likelihood='binomial', params=['alpha', ..., 'delta[task]', ...])``."""
        inverse = {"identity": "{}", "logit": "sigmoid({})", "log": "exp({})"}[self.link]
        formula = f"{self.response} ~ " + inverse.format(self.expr.to_string())
        groups = self.groups
        params = [f"{p}[{groups[p]}]" if p in groups else p for p in self.param_names]
        return (
            f"Law(name={self.name!r}, {formula!r}, likelihood={self.likelihood!r}, "
            f"params={params!r})"
        )

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

    def with_bounds(self, bounds: Mapping[str, tuple[float | None, float | None]]) -> Law:
        """A copy with some parameters' bounds set, e.g. ``{"top": (0, 1)}``.

        An end given as None keeps the law's own bound there. A prior that does not cover the
        new bounds (a uniform prior on the old ones, say) is unset, so the fit sets one on the
        data's scale that does: both backends then search the same interval.
        """
        unknown = set(bounds) - set(self.param_names)
        if unknown:
            raise ExprError(f"law '{self.name}' has no parameters {sorted(unknown)}")
        params = []
        for p in self.params:
            if p.name not in bounds:
                params.append(p)
                continue
            lo, hi = bounds[p.name]
            lo = p.lower if lo is None else lo
            hi = p.upper if hi is None else hi
            prior = p.prior
            if prior is not None:
                s_lo, s_hi = prior.support
                if (s_lo is not None and (lo is None or lo < s_lo)) or (
                    s_hi is not None and (hi is None or hi > s_hi)
                ):
                    prior = None
            params.append(replace(p, lower=lo, upper=hi, prior=prior))
        return replace(self, params=tuple(params))

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
                    prior=Prior.parse(prior) if isinstance(prior, str) else prior,
                    lower=lo,
                    upper=hi,
                )
            )
        for what, given in (("priors", priors), ("bounds", bounds)):
            unknown_p = set(given or {}) - {p.name for p in params}
            if unknown_p:
                raise ExprError(f"{what} given for unknown parameters {sorted(unknown_p)}")
        return cls(
            name=name,
            expr=expr,
            covariates=tuple(covariates),
            params=tuple(params),
            formula=formula,
            **options,
        )


def additive_groups(law: Law) -> list[str]:
    """Group effects that are offsets: a ``+ delta[task]`` term of a sum (anywhere in the
    expression, e.g. inside a sigmoid) that also holds other parameters, so that one level must
    be pinned for the sum to be identified. ``ceiling[task] - 0.25`` is not an offset."""
    covs = set(law.covariates)
    out: list[str] = []

    def flatten(e: Expr) -> list[Expr]:
        if isinstance(e, BinOp) and e.op in "+-":
            return flatten(e.left) + flatten(e.right)
        if isinstance(e, Neg):
            return flatten(e.operand)
        return [e]

    def walk(e: Expr) -> None:
        if (isinstance(e, BinOp) and e.op in "+-") or isinstance(e, Neg):
            terms = flatten(e)
            for t in terms:
                if isinstance(t, Group):
                    others = [u for u in terms if u is not t and (u.names() - covs)]
                    if others and t.param not in out:
                        out.append(t.param)
                else:
                    walk(t)
        elif isinstance(e, BinOp):
            walk(e.left)
            walk(e.right)
        elif isinstance(e, Call):
            for a in e.args:
                walk(a)

    walk(law.expr)
    return out
