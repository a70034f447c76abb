"""The least-squares backend: robust (Huber) fits from a grid of starts, bootstrap intervals.

Following Epoch AI's replication of Chinchilla: the objective is evaluated at every point of a
grid of starting values, and the best starts are refined with a bounded local optimiser
(lmfit over scipy's ``least_squares`` with a Huber loss). Intervals come from refitting rows
resampled with replacement, each refit started from the best estimate.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import lmfit
import numpy as np

from scalelaw.fits.design import Design
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law, Param


@dataclass
class LsqSettings:
    loss: str = "huber"
    huber_delta: float = 1e-3
    refine: int = 8
    bootstrap: int = 200
    seed: int = 0


@dataclass
class LsqResult:
    point: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]
    cost: float
    n_starts: int
    at_bounds: list[str]


class _Layout:
    """Flattens the law's parameters (group effects minus pinned levels) into one vector."""

    def __init__(self, law: Law, design: Design):
        self.law = law
        self.design = design
        self.slots: list[tuple[str, int | None, Param]] = []
        for p in law.params:
            if p.name in design.groups:
                g = design.groups[p.name]
                # Least squares has no pooling: pin one level (the reference, else the first).
                ref = g.reference if g.reference is not None else 0
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
        return name if level is None else f"{name}__{level}"


def _start_values(p: Param, is_group: bool) -> tuple[float, ...]:
    if p.starts:
        return p.starts
    if is_group:
        return (0.0,)
    lo, hi = p.lower, p.upper
    if lo is not None and hi is not None:
        return ((lo + hi) / 2,)
    kw = p.prior.kwargs
    if p.prior.dist == "lognormal":
        guess = float(np.exp(kw["mu"]))
    elif p.prior.dist in ("halfnormal", "exponential", "gamma"):
        guess = 1.0
    elif p.prior.dist == "uniform":
        guess = (kw["lower"] + kw["upper"]) / 2
    else:
        guess = kw["mu"]
    if lo is not None:
        guess = max(guess, lo + 1e-6)
    if hi is not None:
        guess = min(guess, hi - 1e-6)
    return (guess,)


def _residual_fn(law: Law, design: Design, layout: _Layout) -> Callable[[np.ndarray], np.ndarray]:
    assert design.y is not None
    y = np.log(design.y) if law.transform == "log" else design.y

    def residuals(theta: np.ndarray) -> np.ndarray:
        mu = mean_response(law, design, layout.unpack(theta))
        with np.errstate(divide="ignore", invalid="ignore"):
            pred = np.log(mu) if law.transform == "log" else mu
        r = pred - y[None, :]
        return np.where(np.isfinite(r), r, 1e6)

    return residuals


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)).sum(axis=-1)


def fit(law: Law, design: Design, settings: LsqSettings) -> LsqResult:
    """Fit by robust least squares; bootstrap draws give the intervals."""
    layout = _Layout(law, design)
    residuals = _residual_fn(law, design, layout)
    grids = [_start_values(p, level is not None) for _, level, p in layout.slots]
    starts = np.array(list(itertools.product(*grids)), dtype=float)
    costs = np.concatenate(
        [
            _objective(residuals(chunk), settings)
            for chunk in np.array_split(starts, max(1, len(starts) // 512))
        ]
    )
    order = np.argsort(costs)[: settings.refine]
    best_theta, best_cost = starts[order[0]], np.inf
    for i in order:
        theta, cost = _refine(layout, residuals, starts[i], settings)
        if cost < best_cost:
            best_theta, best_cost = theta, cost
    point = layout.unpack(best_theta)
    draws = _bootstrap(layout, law, design, best_theta, settings)
    at_bounds = [
        layout.key(k)
        for k, (_, _, p) in enumerate(layout.slots)
        if _near(best_theta[k], p.lower) or _near(best_theta[k], p.upper)
    ]
    return LsqResult(point, draws, float(best_cost), len(starts), at_bounds)


def _near(x: float, bound: float | None) -> bool:
    return bound is not None and abs(x - bound) <= 1e-6 * max(1.0, abs(bound))


def _objective(r: np.ndarray, settings: LsqSettings) -> np.ndarray:
    if settings.loss == "huber":
        return _huber(r, settings.huber_delta)
    return 0.5 * (r**2).sum(axis=-1)


def _refine(
    layout: _Layout,
    residuals: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    settings: LsqSettings,
) -> tuple[np.ndarray, float]:
    params = lmfit.Parameters()
    for k, (_, _, p) in enumerate(layout.slots):
        lo = -np.inf if p.lower is None else p.lower
        hi = np.inf if p.upper is None else p.upper
        value = float(
            np.clip(
                start[k], lo + 1e-9 if np.isfinite(lo) else lo, hi - 1e-9 if np.isfinite(hi) else hi
            )
        )
        params.add(f"p{k}", value=value, min=lo, max=hi)

    def fcn(ps: lmfit.Parameters) -> np.ndarray:
        theta = np.array([ps[f"p{k}"].value for k in range(len(layout.slots))])
        return residuals(theta)[0]

    kws: dict[str, object] = {"x_scale": "jac"}
    if settings.loss == "huber":
        kws.update(loss="huber", f_scale=settings.huber_delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = lmfit.minimize(fcn, params, method="least_squares", **kws)
    theta = np.array([out.params[f"p{k}"].value for k in range(len(layout.slots))])
    return theta, float(_objective(residuals(theta), settings)[0])


def _bootstrap(
    layout: _Layout, law: Law, design: Design, theta: np.ndarray, settings: LsqSettings
) -> dict[str, np.ndarray]:
    if settings.bootstrap <= 0:
        return layout.unpack(theta[None, :])
    rng = np.random.default_rng(settings.seed)
    thetas = []
    for _ in range(settings.bootstrap):
        rows = rng.integers(0, design.n, design.n)
        sub = _subset(design, rows)
        res = _residual_fn(law, sub, _Layout(law, sub))
        t, _ = _refine(layout, res, theta, settings)
        thetas.append(t)
    return layout.unpack(np.array(thetas))


def _subset(design: Design, rows: np.ndarray) -> Design:
    from scalelaw.fits.design import GroupIndex

    return Design(
        covariates={k: v[rows] for k, v in design.covariates.items()},
        groups={
            k: GroupIndex(g.column, g.index[rows], g.levels, g.reference)
            for k, g in design.groups.items()
        },
        y=None if design.y is None else design.y[rows],
        correct=None if design.correct is None else design.correct[rows],
        samples=None if design.samples is None else design.samples[rows],
        n=len(rows),
        fractional=design.fractional,
    )
