"""The least-squares backend: robust (Huber) fits from a space-filling design of starts.

Following Epoch AI's replication of Chinchilla, the objective is evaluated at many starting
points and the best are refined with a bounded local optimiser (lmfit over scipy's
``least_squares``). The starts are a scrambled Sobol design (``scipy.stats.qmc``) over ranges set
by each parameter's bounds, prior and the data's scale (`scalelaw.fits.defaults`); a law whose
parameters all list explicit starts keeps the full grid of them. Group effects that enter the
linear predictor additively start at each group's mean residual. A weak ridge from the group
prior keeps an offset the data cannot bound (a task that is always right) large but finite.
Intervals come from refitting rows resampled with replacement, each refit started from the
optimum. The settings and the diagnostics of this backend live here.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lmfit
import numpy as np
from scipy.stats import qmc

from scalelaw.fits import lack_of_fit
from scalelaw.fits.defaults import (
    exponent_params,
    resolve_priors,
    response_on_link_scale,
    rule_widths,
    start_mapper,
)
from scalelaw.fits.design import Design, additive_groups
from scalelaw.fits.evaluate import insensitive, linear_predictor, mean_response
from scalelaw.fits.fitfile import draws_tree
from scalelaw.fits.law import Law, Param
from scalelaw.fits.progress import announce
from scalelaw.fits.result import FitResult

#: Weight of the ridge that keeps group effects finite (relative to one residual).
RIDGE = 1e-3
#: A group effect beyond this many units on a logit or log link has run off.
RUNAWAY_LINK = 30.0
#: Evaluations a bootstrap refit may take from the optimum before it is dropped and counted.
BOOTSTRAP_NFEV = 200
#: Evaluations a refinement from a start may take, per free parameter plus one (lmfit's own
#: default, made explicit so that a refinement stopped by it is counted and said).
REFINE_NFEV = 2000
#: Any other parameter has run off beyond this many times its data-scale width (coefficients
#: of power laws are legitimately large: Chinchilla's B reaches 1e6 on small models).
RUNAWAY = 1e8


@dataclass
class LsqSettings:
    loss: str = "huber"
    huber_delta: float = 1e-3
    refine: int = 8
    bootstrap: int = 200
    seed: int = 0
    #: Sobol starts (a power of two); None: 2^13, or 2^14 with more than six free parameters.
    starts: int | None = None
    #: Called with a message as each step begins (scoring the starts, each refinement, each
    #: bootstrap refit); one with an `expect(n)` method is told how many steps are to come.
    progress: Callable[[str], None] | None = None


@dataclass
class LsqResult:
    point: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]
    cost: float
    n_starts: int
    #: How many of the refined starts reached the best objective (within 1e-6 relative).
    n_best: int
    n_refined: int
    at_bounds: list[str]
    #: Noise of the likelihood at the optimum (sigma for normal/Student-t, kappa for beta).
    noise: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Parameters that move no row's mean (`evaluate.insensitive`): a warning, not a failure.
    not_identified: list[str] = field(default_factory=list)
    #: Bootstrap refits dropped for hitting BOOTSTRAP_NFEV evaluations.
    capped: int = 0
    #: Refinements stopped by their cap of evaluations (`refine_cap`), and whether the best
    #: objective came from one of them.
    refine_capped: int = 0
    best_capped: bool = False
    refine_cap: int = 0


class _Layout:
    """Flattens the law's parameters (group effects minus pinned levels) into one vector."""

    def __init__(self, law: Law, design: Design):
        self.law = law
        self.design = design
        self.slots: list[tuple[str, int | None, Param]] = []
        additive = set(additive_groups(law))
        for p in law.params:
            if p.name in design.groups:
                g = design.groups[p.name]
                # Least squares has no pooling: an additive offset pins one level (the
                # reference, else the first); a per-level parameter keeps them all.
                ref = g.reference if g.reference is not None else 0
                if p.name not in additive:
                    ref = -1
                for i in range(len(g.levels)):
                    if i != ref:
                        self.slots.append((p.name, i, p))
            else:
                self.slots.append((p.name, None, p))

    def unpack(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """theta (S, K) -> draws dict with leading dimension S."""
        theta = np.atleast_2d(theta)
        out: dict[str, np.ndarray] = {}
        for name, g in self.design.groups.items():
            out[name] = np.zeros((theta.shape[0], len(g.levels)))
        for k, (name, level, _) in enumerate(self.slots):
            if level is None:
                out[name] = theta[:, k]
            else:
                out[name][:, level] = theta[:, k]
        return out

    def key(self, k: int) -> str:
        name, level, _ = self.slots[k]
        if level is None:
            return name
        g = self.design.groups[name]
        return f"{name}[{g.levels[level]}]"

    @property
    def group_slots(self) -> list[int]:
        return [k for k, (_, level, _) in enumerate(self.slots) if level is not None]


def _fitting_scale(law: Law, values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(values) if law.transform == "log" else values


def _residual_fn(
    law: Law, design: Design, layout: _Layout, ridge: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """Residuals on the fitting scale, followed by the ridge terms of the group effects."""
    assert design.y is not None
    y = _fitting_scale(law, design.y)
    groups = layout.group_slots

    def residuals(theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        r = _fitting_scale(law, mean_response(law, design, layout.unpack(theta))) - y[None, :]
        r = np.where(np.isfinite(r), r, 1e6)
        if groups:
            r = np.concatenate([r, theta[:, groups] * ridge[None, :]], axis=1)
        return r

    return residuals


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)).sum(axis=-1)


def _objective(r: np.ndarray, settings: LsqSettings) -> np.ndarray:
    if settings.loss == "huber":
        return _huber(r, settings.huber_delta)
    return 0.5 * (r**2).sum(axis=-1)


def _ridge_weights(law: Law, layout: _Layout, widths: dict[str, float]) -> np.ndarray:
    out = []
    for k in layout.group_slots:
        name, _, p = layout.slots[k]
        sd = p.prior.frozen().std() if p.prior is not None else widths[name]
        out.append(RIDGE / float(sd if np.isfinite(sd) and sd > 0 else widths[name]))
    return np.asarray(out, dtype=float)


def starts(law: Law, design: Design, layout: _Layout, settings: LsqSettings) -> np.ndarray:
    """Starting vectors (S, K).

    Parameters that enter the linear predictor linearly (an intercept, Chinchilla's E, A and B,
    additive group effects) are not searched: for every point of a Sobol design over the
    others, they are solved by linear least squares against the response on the link scale
    (variable projection, Golub and Pereyra 1973). A law whose searched parameters all list
    explicit starts keeps the full grid of them (the Epoch AI protocol).
    """
    widths = rule_widths(law, design)
    exponents = exponent_params(law)
    linear = linear_slots(law, design, layout, widths, settings.seed)
    searched = [k for k in range(len(layout.slots)) if k not in linear]
    if searched and all(layout.slots[k][2].starts for k in searched):
        grid = [layout.slots[k][2].starts for k in searched]
        base = np.array(list(itertools.product(*grid)), dtype=float)
    elif searched:
        n = settings.starts or (2**13 if len(searched) <= 6 else 2**14)
        sobol = qmc.Sobol(d=len(searched), scramble=True, seed=settings.seed)
        u = sobol.random_base2(math.ceil(math.log2(n)))
        base = np.column_stack(
            [
                start_mapper(
                    layout.slots[k][2],
                    widths[layout.slots[k][0]],
                    layout.slots[k][0] in exponents,
                )(u[:, j])
                for j, k in enumerate(searched)
            ]
        )
    else:
        base = np.zeros((1, 0))
    # the centre of every range is always a candidate: a sigmoid or softplus law converges
    # from small slopes, where random far-out starts can sit on a saturated plateau
    centre = np.array([[_centre(layout.slots[k][2], widths[layout.slots[k][0]]) for k in searched]])
    base = np.concatenate([centre, base]) if searched else base
    theta = np.zeros((base.shape[0], len(layout.slots)))
    theta[:, searched] = base
    if linear:
        theta = _project_linear(law, design, layout, theta, linear)
    return theta


def _centre(p: Param, width: float) -> float:
    """A start in the middle of a parameter's plausible range (prior median, within bounds)."""
    if p.starts:
        return float(p.starts[len(p.starts) // 2])
    if p.lower is not None and p.upper is not None:
        return 0.5 * (p.lower + p.upper)
    value = float(p.prior.quantiles(0.5)) if p.prior is not None else 0.0
    if p.prior is None and p.lower is not None:
        value = p.lower + width
    if p.prior is None and p.upper is not None:
        value = p.upper - width
    if p.lower is not None:
        value = max(value, p.lower + 1e-6 * max(1.0, abs(p.lower)))
    if p.upper is not None:
        value = min(value, p.upper - 1e-6 * max(1.0, abs(p.upper)))
    return value


def _eta(law: Law, design: Design, layout: _Layout, theta: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return linear_predictor(law, design, layout.unpack(theta))


def linear_slots(
    law: Law, design: Design, layout: _Layout, widths: dict[str, float], seed: int
) -> list[int]:
    """Slots in which the linear predictor is affine, jointly (checked numerically at two
    random points: second differences and pairwise cross differences vanish)."""
    rng = np.random.default_rng(seed)
    k = len(layout.slots)
    bases = rng.normal(0.0, 0.5, size=(2, k))
    for j, (_name, _, p) in enumerate(layout.slots):
        if p.lower is not None or p.upper is not None:
            lo = p.lower if p.lower is not None else p.upper - 2.0  # type: ignore[operator]
            hi = p.upper if p.upper is not None else lo + 2.0
            bases[:, j] = lo + (hi - lo) * rng.uniform(0.25, 0.75, size=2)

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        ok = np.isfinite(a) & np.isfinite(b)
        return bool(ok.all()) and bool(
            np.allclose(a, b, rtol=1e-6, atol=1e-8 * (1 + np.abs(a).max()))
        )

    chosen: list[int] = []
    for j in range(k):
        unit = np.zeros(k)
        unit[j] = 1.0
        good = True
        for base in bases:
            f0, f1, f2 = (_eta(law, design, layout, base + c * unit)[0] for c in (0.0, 1.0, 2.0))
            if not close(f2 - f1, f1 - f0):
                good = False
                break
            for i in chosen:
                other = np.zeros(k)
                other[i] = 1.0
                fi = _eta(law, design, layout, base + other)[0]
                fij = _eta(law, design, layout, base + other + unit)[0]
                if not close(fij - fi, f1 - f0):
                    good = False
                    break
            if not good:
                break
        if good:
            chosen.append(j)
    return chosen


def _project_linear(
    law: Law, design: Design, layout: _Layout, theta: np.ndarray, linear: list[int]
) -> np.ndarray:
    """Fill the linear slots of each start with their least-squares values."""
    target = response_on_link_scale(law, design)
    assert design.y is not None
    # on a log-transformed response, a residual of the loss counts relative to the loss
    weight = 1.0 / np.abs(design.y) if law.transform == "log" else np.ones(design.n)
    out = theta.copy()
    out[:, linear] = 0.0
    for idx in np.array_split(np.arange(len(out)), max(1, len(out) // 256)):
        block = out[idx]
        eta0 = _eta(law, design, layout, block)
        cols = []
        for j in linear:
            shifted = block.copy()
            shifted[:, j] = 1.0
            cols.append(_eta(law, design, layout, shifted) - eta0)
        g = np.stack(cols, axis=2) * weight[None, :, None]  # (S, n, K)
        r = (target[None, :] - eta0) * weight[None, :]
        ok = np.isfinite(g).all(axis=(1, 2)) & np.isfinite(r).all(axis=1)
        g = np.where(ok[:, None, None], g, 0.0)
        r = np.where(ok[:, None], r, 0.0)
        gtg = np.einsum("snk,snl->skl", g, g)
        scale = np.maximum(np.einsum("skk->sk", gtg).max(axis=1), 1e-12)
        gtg = gtg + 1e-9 * scale[:, None, None] * np.eye(len(linear))[None]
        x = np.linalg.solve(gtg, np.einsum("snk,sn->sk", g, r)[..., None])[..., 0]
        for c, j in enumerate(linear):
            p = layout.slots[j][2]
            x[:, c] = np.clip(
                x[:, c],
                -np.inf if p.lower is None else p.lower,
                np.inf if p.upper is None else p.upper,
            )
        x[~ok] = 0.0
        block[:, linear] = x
        out[idx] = block
    return out


def fit(law: Law, design: Design, settings: LsqSettings) -> LsqResult:
    """Fit by robust least squares from many starts; bootstrap draws give the intervals."""
    progress = settings.progress
    layout = _Layout(law, design)
    widths = rule_widths(law, design)
    ridge = _ridge_weights(law, layout, widths)
    residuals = _residual_fn(law, design, layout, ridge)
    announce(progress, 1)
    if progress:
        progress("choosing starts")
    candidates = starts(law, design, layout, settings)
    costs = np.concatenate(
        [
            _objective(residuals(chunk), settings)
            for chunk in np.array_split(candidates, max(1, len(candidates) // 512))
        ]
    )
    costs = np.where(np.isfinite(costs), costs, np.inf)
    order = np.argsort(costs, kind="stable")[: settings.refine]
    if 0 not in order:
        order = np.append(order, 0)  # the centre start
    announce(progress, len(order) + max(settings.bootstrap, 0))
    cap = REFINE_NFEV * (len(layout.slots) + 1)
    refined = []
    for i, start in enumerate(order, 1):
        if progress:
            progress(f"refining start {i} of {len(order)} (of {len(candidates)} scored)")
        theta, cost, _, stopped = _refine(layout, residuals, candidates[start], settings, cap)
        refined.append((theta, cost, stopped))
    best_theta, best_cost, best_capped = min(refined, key=lambda tc: tc[1])
    tol = 1e-6 * max(abs(best_cost), 1e-12)
    n_best = sum(1 for _, c, _ in refined if c - best_cost <= tol)
    point = layout.unpack(best_theta)
    draws, boot, capped = _bootstrap(layout, law, design, best_theta, ridge, settings)
    at_bounds = [
        layout.key(k)
        for k, (_, _, p) in enumerate(layout.slots)
        if _near(best_theta[k], p.lower) or _near(best_theta[k], p.upper)
    ]
    flat = insensitive(law, design, point)
    problems = _problems(law, layout, best_theta, boot, widths, flat)
    return LsqResult(
        point=point,
        draws=draws,
        cost=float(best_cost),
        n_starts=len(candidates),
        n_best=n_best,
        n_refined=len(refined),
        at_bounds=at_bounds,
        noise=noise_at(law, design, point),
        problems=problems,
        not_identified=flat,
        capped=capped,
        refine_capped=sum(1 for _, _, c in refined if c),
        best_capped=bool(best_capped),
        refine_cap=cap,
    )


def _problems(
    law: Law,
    layout: _Layout,
    theta: np.ndarray,
    boot: np.ndarray | None,
    widths: dict[str, float],
    flat: Sequence[str] = (),
) -> list[str]:
    """Name what went wrong: parameters that ran off, optima outside their own intervals.

    Parameters in `flat` move no row's mean: they are reported as not identified elsewhere,
    as a warning, and are not failures here.
    """
    out = []
    runaway = []
    for k, (name, level, _) in enumerate(layout.slots):
        value = theta[k]
        limit = (
            RUNAWAY_LINK if level is not None and law.link != "identity" else RUNAWAY * widths[name]
        )
        if abs(value) > limit:
            runaway.append(f"{layout.key(k)} = {value:.3g}")
    if runaway:
        out.append(
            "ran off along a flat direction (the data cannot bound it; a saturated group?): "
            + ", ".join(runaway)
        )
    if boot is not None and len(boot) >= 20:
        # a parameter that no resample moves (and no bound holds) does not change the fit:
        # its interval of width zero would be false certainty
        spread = boot.max(axis=0) - boot.min(axis=0)
        stuck = [
            layout.key(k)
            for k, (_, _, p) in enumerate(layout.slots)
            if spread[k] <= 1e-12 * (1.0 + abs(theta[k]))
            and layout.slots[k][0] not in flat
            and not (_near(theta[k], p.lower) or _near(theta[k], p.upper))
            and np.ptp(boot) > 0
        ]
        if stuck:
            out.append(
                "not identified by the data (no bootstrap refit moves it, so its interval "
                f"means nothing): {', '.join(stuck)}"
            )
        lo, hi = np.quantile(boot, [0.005, 0.995], axis=0)
        outside = [
            layout.key(k)
            for k in range(len(layout.slots))
            if not (lo[k] - 1e-9 * (1 + abs(lo[k])) <= theta[k] <= hi[k] + 1e-9 * (1 + abs(hi[k])))
        ]
        if outside:
            out.append(
                "optimum outside its own 99% bootstrap interval (an unstable or multi-modal "
                f"fit): {', '.join(outside)}"
            )
    return out


def noise_at(law: Law, design: Design, point: dict[str, np.ndarray]) -> dict[str, float]:
    """The likelihood's noise implied by the residuals at the optimum.

    Normal and Student-t laws: the residual standard deviation on the fitting scale (degrees of
    freedom corrected). Beta and beta-binomial: the precision kappa that matches the residual
    variance by moments; the logit-normal binomial, its lack of fit tau likewise. Binomial:
    nothing (its noise is fixed by the counts).
    """
    assert design.y is not None
    mu = mean_response(law, design, point)[0]
    k = sum(int(np.size(v[0])) for v in point.values())
    dof = max(design.n - k, 1)
    if law.likelihood in ("normal", "student_t"):
        r = _fitting_scale(law, mu) - _fitting_scale(law, design.y)
        r = r[np.isfinite(r)]
        return {"sigma": float(np.sqrt((r**2).sum() / dof))} if r.size else {}
    if law.likelihood == lack_of_fit.NAME:
        n = np.asarray(design.samples if design.samples is not None else 1, float)
        return {"tau": lack_of_fit.tau_by_moments(design.y, np.clip(mu, 1e-6, 1 - 1e-6), n, dof)}
    if law.likelihood in ("beta", "beta_binomial"):
        p = np.clip(mu, 1e-6, 1 - 1e-6)
        resid2 = float(((design.y - p) ** 2).sum() / dof)
        if law.likelihood == "beta":
            kappa = float(np.mean(p * (1 - p))) / max(resid2, 1e-12) - 1.0
        else:
            n = np.asarray(design.samples if design.samples is not None else 1, float)
            binom = float(np.mean(p * (1 - p) / n))
            extra = resid2 - binom
            # Var(score) = p(1-p)/n * (1 + (n-1)/(kappa+1)); no excess variance: kappa large
            if extra <= 0:
                kappa = 1e6
            else:
                kappa = float(np.mean(p * (1 - p) * (n - 1) / n)) / extra - 1.0
        return {"kappa": float(min(max(kappa, 0.1), 1e6))}
    return {}


def _near(x: float, bound: float | None) -> bool:
    return bound is not None and abs(x - bound) <= 1e-6 * max(1.0, abs(bound))


def _refine(
    layout: _Layout,
    residuals: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    settings: LsqSettings,
    max_nfev: int,
) -> tuple[np.ndarray, float, int, bool]:
    """The optimum from `start`, its objective, the evaluations it took and whether it was
    stopped by `max_nfev` (then the best point it reached)."""
    params = lmfit.Parameters()
    for k, (_, _, p) in enumerate(layout.slots):
        lo = -np.inf if p.lower is None else p.lower
        hi = np.inf if p.upper is None else p.upper
        inner_lo = lo + 1e-9 * max(1.0, abs(lo)) if np.isfinite(lo) else lo
        inner_hi = hi - 1e-9 * max(1.0, abs(hi)) if np.isfinite(hi) else hi
        params.add(f"p{k}", value=float(np.clip(start[k], inner_lo, inner_hi)), min=lo, max=hi)

    def fcn(ps: lmfit.Parameters) -> np.ndarray:
        theta = np.array([ps[f"p{k}"].value for k in range(len(layout.slots))])
        return residuals(theta)[0]

    kws: dict[str, object] = {"x_scale": "jac"}
    if settings.loss == "huber":
        kws.update(loss="huber", f_scale=settings.huber_delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = lmfit.minimize(fcn, params, method="least_squares", max_nfev=max_nfev, **kws)
    theta = np.array([out.params[f"p{k}"].value for k in range(len(layout.slots))])
    # lmfit stops a run at its cap by aborting it: `aborted`, or a count at the cap
    capped = bool(getattr(out, "aborted", False)) or int(out.nfev) >= max_nfev
    return theta, float(_objective(residuals(theta), settings)[0]), int(out.nfev), capped


def _bootstrap(
    layout: _Layout,
    law: Law,
    design: Design,
    theta: np.ndarray,
    ridge: np.ndarray,
    settings: LsqSettings,
) -> tuple[dict[str, np.ndarray], np.ndarray | None, int]:
    """Refits on resampled rows; returns draws, the raw vectors and how many hit the cap."""
    if settings.bootstrap <= 0:
        return layout.unpack(theta[None, :]), None, 0
    rng = np.random.default_rng(settings.seed)
    thetas, capped = [], 0
    for i in range(settings.bootstrap):
        if settings.progress:
            settings.progress(f"bootstrap refit {i + 1} of {settings.bootstrap}")
        rows = rng.integers(0, design.n, design.n)
        sub = design.take(rows)
        res = _residual_fn(law, sub, _Layout(law, sub), ridge)
        # a resample starts at the optimum, next to its own: a refit still moving after
        # BOOTSTRAP_NFEV evaluations crawls along a flat ridge (a ceiling against its bound,
        # say); it stops there, close to its optimum, and is counted
        t, _, _, hit = _refine(layout, res, theta, settings, max_nfev=BOOTSTRAP_NFEV)
        thetas.append(t)
        capped += hit
    boot = np.array(thetas)
    return layout.unpack(boot), boot, capped


def run(
    law: Law,
    design: Design,
    levels: dict[str, list[str]],
    options: Any,
    on_priors: Any = None,
) -> FitResult:
    """The least-squares backend behind `scalelaw.fits.fit`."""
    delta = options.huber_delta
    if delta is None:
        delta = 1e-3 if law.transform == "log" else 0.05
    settings = LsqSettings(
        options.loss,
        delta,
        options.refine,
        options.bootstrap,
        options.seed,
        options.starts,
        getattr(options, "progress", None),
    )
    res = fit(law, design, settings)
    # the fitted law records concrete priors, so a Bayesian refit or a reader sees the same
    law, auto = resolve_priors(law, design, res.point)
    if on_priors is not None:
        on_priors(law, auto)
    n = next(iter(res.draws.values())).shape[0]
    result = FitResult(
        law=law,
        backend="lsq",
        draws=res.draws,
        levels=levels,
        point=res.point,
        noise={k: np.full(n, v) for k, v in res.noise.items()},
        diagnostics={
            "cost": res.cost,
            "starts": res.n_starts,
            "reached_best": res.n_best,
            "refined": res.n_refined,
            "at_bounds": res.at_bounds,
            "problems": res.problems,
            "not_identified": res.not_identified,
            "bootstrap_capped": res.capped,
            "refine_capped": res.refine_capped,
            "refine_best_capped": res.best_capped,
            "refine_cap": res.refine_cap,
            "loss": options.loss,
            "huber_delta": delta,
            "bootstrap": options.bootstrap,
            "auto_priors": auto,
        },
    )
    # the tree its file holds (`fitfile.draws_tree`), so in memory and read back are alike
    result.idata = draws_tree(result)
    return result
