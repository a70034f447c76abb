"""The likelihoods: noise models, the pointwise log-likelihood and predictive draws.

What every layer above stands on: which noise parameters each likelihood has (and their
stored names), the log density of each observed row under each draw (PSIS-LOO, stacking,
held-out scores), the group a fit keeps in place of a log-likelihood too large to store, and
new observations drawn around a law's expectation. Nothing here knows a backend or a file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import special, stats

from scalelaw.data import DataError
from scalelaw.fits import lack_of_fit
from scalelaw.fits.design import Design, bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law

# --- noise models ------------------------------------------------------------------------------
#: The likelihood's own parameters (sigma, nu, kappa, and tau for the lack of fit), stored beside
#: the law's in the posterior under prefixed names, so a law may have a parameter called sigma.
NOISE_PARAMS = ("sigma", "nu", "kappa", "tau")
NOISE_PREFIX = "obs_"
#: Which of them each likelihood has, as the backends draw them (`bayes._likelihood`,
#: `lsq.noise_at`); a binomial's spread is fixed by its counts.
LIKELIHOOD_NOISE: dict[str, tuple[str, ...]] = {
    "normal": ("sigma",),
    "student_t": ("sigma", "nu"),
    "binomial": (),
    "beta_binomial": ("kappa",),
    "logit_normal_binomial": ("tau",),
    "beta": ("kappa",),
}


def noise_name(name: str) -> str:
    """The stored (and PyMC) name of a likelihood parameter."""
    return NOISE_PREFIX + name


def thin(draws: Mapping[str, np.ndarray], max_draws: int) -> dict[str, np.ndarray]:
    """At most `max_draws` draws, evenly spaced (deterministic)."""
    n = next(iter(draws.values())).shape[0]
    if n <= max_draws:
        return dict(draws)
    idx = np.linspace(0, n - 1, max_draws).round().astype(int)
    return {k: v[idx] for k, v in draws.items()}


def noise_draws(result: Any, n: int) -> dict[str, np.ndarray]:
    """The likelihood's noise parameters of a fit for `n` draws (thinned like the law's)."""
    out = {}
    for k, v in result.noise.items():
        v = np.asarray(v, float).ravel()
        idx = np.linspace(0, len(v) - 1, n).round().astype(int) if len(v) > 1 else np.zeros(n, int)
        out[k] = v[idx]
    return out


def require_noise(fit: Any) -> None:
    """Normal, Student-t and beta laws need a fitted noise for predictive intervals."""
    if fit.law.likelihood not in ("normal", "student_t", "beta") or fit.noise:
        return
    why = (
        "a published card has coefficients but no noise scale"
        if fit.is_card
        else "this fit stores no noise scale (it was made by an older scalelaw): refit it"
    )
    raise DataError(f"{fit.law.name}: no predictive interval: {why}")


# --- predictive draws --------------------------------------------------------------------------
def observe(
    law: Law,
    mu: np.ndarray,
    noise: Mapping[str, np.ndarray],
    samples: np.ndarray | int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """One new observation per draw and point, given expectations `mu` (draws, points)."""

    def column(name: str) -> np.ndarray:
        return np.asarray(noise[name], float)[:, None]

    if law.is_count:
        p = np.clip(mu, 0.0, 1.0)
        n = np.broadcast_to(np.asarray(samples if samples is not None else 100), p.shape)
        if law.likelihood == "beta_binomial" and "kappa" in noise:
            kappa = column("kappa")
            q = np.clip(p, 1e-9, 1 - 1e-9)
            p = rng.beta(q * kappa, (1 - q) * kappa)
        if law.likelihood == lack_of_fit.NAME and "tau" in noise:
            theta = lack_of_fit.logit_of(p, "identity")
            p = lack_of_fit.draw_probability(theta, column("tau"), rng, p.shape)
        return rng.binomial(n.astype(np.int64), p) / n
    if law.likelihood == "beta" and "kappa" in noise:
        q = np.clip(mu, 1e-9, 1 - 1e-9)
        kappa = column("kappa")
        return rng.beta(q * kappa, (1 - q) * kappa)
    if law.likelihood in ("normal", "student_t") and "sigma" in noise:
        with np.errstate(divide="ignore", invalid="ignore"):
            loc = np.log(mu) if law.transform == "log" else mu
        sigma = column("sigma")
        if law.likelihood == "student_t" and "nu" in noise:
            eps = rng.standard_t(column("nu"), size=mu.shape)
        else:
            eps = rng.standard_normal(mu.shape)
        y = loc + sigma * eps
        return np.exp(y) if law.transform == "log" else y
    if law.response == "score" and samples is not None:
        p = np.clip(mu, 0.0, 1.0)
        return rng.binomial(int(np.max(samples)), p) / np.max(samples)
    return mu


# --- pointwise log-likelihood ------------------------------------------------------------------
#: a (draws x rows) array a block of rows may take; evaluating a law makes a few of them
BLOCK_BYTES = 2e8


def row_blocks(rows: int, draws: int, budget: float = BLOCK_BYTES) -> list[tuple[int, int]]:
    """(start, stop) of blocks of rows whose (draws x rows) float arrays stay within budget."""
    step = max(1, int(budget / (8.0 * max(draws, 1))))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)] or [(0, 0)]


def log_likelihood(
    law: Law, design: Design, draws: dict[str, np.ndarray], noise: dict[str, np.ndarray]
) -> np.ndarray:
    """Log density of each observed row under each draw: shape (n_draws, n_rows).

    Densities are of the observed response on its own scale (a log-transformed law carries the
    Jacobian), so laws fitted on different scales are scored alike.
    """
    mu = mean_response(law, design, draws)
    s = mu.shape[0]

    def noise_col(name: str, default: float) -> np.ndarray:
        v = noise.get(name)
        return np.full((s, 1), default) if v is None else np.asarray(v, float)[:s, None]

    assert design.y is not None
    with np.errstate(all="ignore"):
        if law.is_count:
            assert design.correct is not None and design.samples is not None
            k = np.asarray(design.correct, float)[None, :]
            n = np.asarray(design.samples, float)[None, :]
            if law.likelihood == lack_of_fit.NAME:
                theta = lack_of_fit.logit_of(mu, "identity")
                return lack_of_fit.log_likelihood(k, n, theta, noise_col("tau", 0.0))
            p = np.clip(mu, 1e-12, 1 - 1e-12)
            log_choose = (
                special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
            )
            if law.likelihood == "beta_binomial" and "kappa" in noise:
                kappa = noise_col("kappa", 1e6)
                a, b = p * kappa, (1 - p) * kappa
                return log_choose + special.betaln(k + a, n - k + b) - special.betaln(a, b)
            return log_choose + k * np.log(p) + (n - k) * np.log1p(-p)
        y = np.asarray(design.y, float)[None, :]
        if law.likelihood == "beta":
            q = np.clip(mu, 1e-9, 1 - 1e-9)
            kappa = noise_col("kappa", 10.0)
            yy = np.clip(y, 1e-6, 1 - 1e-6)
            return stats.beta.logpdf(yy, q * kappa, (1 - q) * kappa)
        loc = np.log(mu) if law.transform == "log" else mu
        obs = np.log(y) if law.transform == "log" else y
        jac = -np.log(y) if law.transform == "log" else 0.0
        sigma = noise_col("sigma", float(np.std(obs)) or 1.0)
        if law.likelihood == "student_t":
            nu = noise_col("nu", 1e6)
            return stats.t.logpdf(obs, nu, loc, sigma) + jac
        return stats.norm.logpdf(obs, loc, sigma) + jac


def pointwise_lpd(fit: Any, frame: Any, max_draws: int = 1000) -> np.ndarray:
    """log mean_s p(y_i | draw s) for each row of `frame`: the held-out predictive density."""
    design = bind(fit.law, frame, fit.levels, source="held-out rows")
    draws = thin(fit.draws, max_draws)
    n = next(iter(draws.values())).shape[0]
    ll = log_likelihood(fit.law, design, draws, noise_draws(fit, n))
    ll = np.where(np.isfinite(ll), ll, -1e10)
    return special.logsumexp(ll, axis=0) - np.log(ll.shape[0])


# --- PSIS-LOO, kept or recomputed --------------------------------------------------------------
#: the group of a fit file that holds each row's ELPD-LOO and Pareto k when the pointwise
#: log-likelihood was too large to keep
POINTWISE_LOO = "loo_pointwise"


def pointwise_loo_group(elpd: np.ndarray, pareto_k: np.ndarray) -> Any:
    """The DataTree group (`POINTWISE_LOO`) that stands in for a log-likelihood not kept: each
    row's ELPD-LOO and Pareto k, what `compare` and stacking read."""
    import xarray as xr  # deferred: heavy

    return xr.DataTree(xr.Dataset({"elpd_i": ("row", elpd), "pareto_k": ("row", pareto_k)}))


def _has_log_likelihood(f: Any) -> bool:
    return f.idata is not None and "log_likelihood" in getattr(f.idata, "children", {})


def _has_pointwise_loo(f: Any) -> bool:
    return f.idata is not None and POINTWISE_LOO in getattr(f.idata, "children", {})


def pointwise_loo(f: Any) -> np.ndarray:
    """Each row's ELPD-LOO: from the kept values, or PSIS-LOO of the log-likelihood."""
    assert f.idata is not None
    if POINTWISE_LOO in f.idata.children:
        return np.asarray(f.idata[POINTWISE_LOO]["elpd_i"].values, dtype=float).ravel()
    import arviz as az  # deferred: heavy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(az.loo(f.idata, var_name="obs", pointwise=True).elpd_i).ravel()
