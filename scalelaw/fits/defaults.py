"""Default priors and least-squares start ranges on the data's scale.

A parameter the user gave no prior gets one that is weakly informative on the scale of the
table it is fitted to, in the spirit of bambi's automatic priors. The rules (docs/fitting.md,
"Default priors") read the response on the law's link scale (its centre m and spread s) and
the role the parameter plays in the expression:

* slope of a feature f in a law linear in its parameters: width 2.5 s / sd(f) (bambi's rule);
* intercept of such a law: width 2.5 sqrt(max(s, |m|)^2 + sum_k (width_k mean(f_k))^2), so it
  can absorb the features' means (the law is written on raw, uncentred covariates);
* exponent of a covariate (``N**alpha``): width 2.5;
* anything else (constants, coefficients of non-linear terms): width 2.5 max(s, |m|).

A rule's width is then widened to at least three times the distance of the multi-start
least-squares optimum from the prior's centre, so the default prior never sits in conflict with
what the data say (a coefficient such as Chinchilla's A ~ 500 gets a width of ~1500).
The shape follows the bounds: both bounds give uniform(lower, upper); a lower bound of 0 gives
halfnormal(width); one other bound gives a normal centred on it (truncated at the bound);
no bounds give normal(0, width). PyMC samples bounded parameters on an unconstrained
transform (log, interval), so no draw leaves its bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from scalelaw.fits.design import Design, linear_form
from scalelaw.fits.expr import BinOp, Call, Expr, Neg
from scalelaw.fits.law import Law, Param
from scalelaw.fits.priors import Prior

#: Below this, a response spread is treated as no spread at all.
_TINY = 1e-9


def response_on_link_scale(law: Law, design: Design) -> np.ndarray:
    """The observed response mapped through the law's link (empirical logits for scores)."""
    assert design.y is not None
    y = np.asarray(design.y, dtype=float)
    if law.link == "logit":
        if design.correct is not None and design.samples is not None:
            p = (np.asarray(design.correct, float) + 0.5) / (np.asarray(design.samples) + 1.0)
        else:
            p = np.clip(y, 0.01, 0.99)
        return np.log(p) - np.log1p(-p)
    if law.link == "log":
        return np.log(np.clip(y, 1e-12, None))
    return y


def exponent_params(law: Law) -> set[str]:
    """Parameters that appear as the exponent of a power of a covariate (``N**alpha``)."""
    covs = set(law.covariates)
    found: set[str] = set()

    def walk(e: Expr) -> None:
        if isinstance(e, BinOp):
            if e.op == "**" and e.left.names() & covs:
                found.update(n for n in e.right.names() if n not in covs)
            walk(e.left)
            walk(e.right)
        elif isinstance(e, Neg):
            walk(e.operand)
        elif isinstance(e, Call):
            for a in e.args:
                walk(a)

    walk(law.expr)
    return found


def rule_widths(law: Law, design: Design) -> dict[str, float]:
    """The data-scale width of each parameter's default prior, before widening."""
    y = response_on_link_scale(law, design)
    m = float(np.mean(y))
    s = max(float(np.std(y)), _TINY)
    big = max(s, abs(m))
    widths = {p: 2.5 * big for p in law.param_names}
    for p in exponent_params(law):
        widths[p] = 2.5
    form = linear_form(law)
    if form is not None:
        shift = 0.0
        for name, feat in form.slopes:
            x = np.broadcast_to(np.asarray(feat.evaluate(design.covariates), float), (design.n,))
            sd = float(np.std(x))
            widths[name] = 2.5 * s / sd if sd > _TINY else 2.5 * big
            shift += (widths[name] * float(np.mean(x))) ** 2
        if form.intercept is not None:
            widths[form.intercept] = 2.5 * float(np.sqrt(big**2 + shift))
        for g in form.groups:
            widths[g] = 2.5 * big
    return widths


def _centre(p: Param) -> float:
    if p.lower is not None and p.upper is None:
        return p.lower
    if p.upper is not None and p.lower is None:
        return p.upper
    return 0.0


def _shape(p: Param, width: float) -> Prior:
    if p.lower is not None and p.upper is not None:
        return Prior("uniform", (p.lower, p.upper))
    if p.lower == 0.0 and p.upper is None:
        return Prior("halfnormal", (width,))
    return Prior("normal", (_centre(p), width))


def resolve_priors(
    law: Law, design: Design, optimum: Mapping[str, np.ndarray] | None = None
) -> tuple[Law, list[str]]:
    """The law with every automatic prior made concrete, and the names that were automatic."""
    widths = rule_widths(law, design)
    params = []
    auto: list[str] = []
    for p in law.params:
        if p.prior is not None:
            params.append(p)
            continue
        width = widths[p.name]
        if optimum is not None and p.name in optimum:
            distance = float(np.max(np.abs(np.asarray(optimum[p.name]) - _centre(p))))
            if np.isfinite(distance):
                width = max(width, 3.0 * distance)
        params.append(replace(p, prior=_shape(p, float(width))))
        auto.append(p.name)
    return law.with_options(params=tuple(params)), auto


# --- least-squares starts --------------------------------------------------------------------
#: Decades either side of the data-scale width that starts of an unbounded parameter span.
_DECADES = 4.0


def start_mapper(p: Param, width: float, exponent: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Map uniform numbers in [0, 1) to start values of `p` covering its plausible range.

    Explicit starts are chosen among; two bounds are covered uniformly (log-uniformly when they
    span many decades above zero); a given prior's central 98% is covered; an automatic prior
    covers magnitudes from 1e-4 to 1e4 times its data-scale width on either side of its centre
    (exponents: -width..width), since the gradient vanishes at a start of exactly 0.
    """
    lo, hi = p.lower, p.upper
    if p.starts:
        grid = np.asarray(p.starts, float)
        return lambda u: grid[np.minimum((u * len(grid)).astype(int), len(grid) - 1)]
    if lo is not None and hi is not None:
        if lo > 0 and hi / lo > 1e3:
            a, b = np.log(lo), np.log(hi)
            return lambda u: np.exp(a + u * (b - a))
        return lambda u: lo + u * (hi - lo)
    if p.prior is not None:
        q_lo, q_hi = p.prior.quantiles([0.01, 0.99])
        if lo is not None:
            q_lo = max(q_lo, lo)
        if hi is not None:
            q_hi = min(q_hi, hi)
        if q_lo >= 0 and q_hi > 0 and q_hi / max(q_lo, q_hi * 1e-8) > 1e3:
            a, b = np.log(max(q_lo, q_hi * 1e-8)), np.log(q_hi)
            return lambda u: np.exp(a + u * (b - a))
        return lambda u: q_lo + u * (q_hi - q_lo)
    if exponent:
        a = max(-width, lo if lo is not None else -np.inf)
        b = min(width, hi if hi is not None else np.inf)
        return lambda u: a + u * (b - a)
    log_lo, log_hi = np.log(width) - _DECADES * np.log(10), np.log(width) + _DECADES * np.log(10)
    if lo is not None:
        return lambda u: lo + np.exp(log_lo + u * (log_hi - log_lo))
    if hi is not None:
        return lambda u: hi - np.exp(log_lo + u * (log_hi - log_lo))

    def signed(u: np.ndarray) -> np.ndarray:
        # the lower half of [0, 1) gives negative values, the upper half positive ones
        v = np.abs(2.0 * u - 1.0)
        return np.sign(u - 0.5) * np.exp(log_lo + v * (log_hi - log_lo))

    return signed
