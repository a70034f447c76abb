"""The binomial with lack of fit: each configuration misses the law by a normal amount on the logit.

A law is rarely exactly right. When it is wrong, the measured accuracies scatter around it by
more than the binomial noise of their samples, and by amounts that belong to the
configuration, not to the measurement. The ``logit_normal_binomial`` likelihood says so:

    k_i ~ Binomial(n_i, sigmoid(logit(mu_i) + tau z_i)),   z_i ~ Normal(0, 1)

with `tau` (stored as ``obs_tau``) the lack of fit on the logit scale, estimated from how far the
configurations fall from the law beyond their sampling noise. `z_i` is integrated out by
adaptive Gauss-Hermite quadrature (nodes centred and scaled on each row's own posterior of
z_i, so accuracy does not fall as the number of samples grows), so the model has no latent variable per row: PSIS-LOO scores whole
rows and a predictive interval at a new configuration includes the law's typical miss there.
Unlike a beta-binomial, which widens every interval by a per-sample overdispersion whatever the
number of samples, the extra variance here is (p(1-p) tau)^2 on the score: large where the law is
uncertain (mid-range accuracies), small near 0 and 1, and it does not shrink with more samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

NAME = "logit_normal_binomial"
#: Quadrature nodes: with adaptive centring, 16 give the log density to about 1e-4 or better
#: (tests/fits/test_lack_of_fit.py checks it against numerical integration).
NODES = 16


def quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log weights of Gauss-Hermite quadrature against the standard normal."""
    x, w = np.polynomial.hermite_e.hermegauss(NODES)
    return x, np.log(w / w.sum())


def logit_of(mu: Any, link: str, eta: Any = None) -> Any:
    """The logit of the mean: the law's linear predictor when its link is the logit."""
    if link == "logit" and eta is not None:
        return eta
    p = np.clip(mu, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _centre(k: Any, n: Any, theta: Any, tau: Any, xp: Any) -> tuple[Any, Any]:
    """Mean and sd of z given the row, from a normal approximation of the binomial on the
    logit (adaptive quadrature: the nodes go where the integrand is, whatever n)."""
    phat = (k + 0.5) / (n + 1.0)
    that = xp.log(phat) - xp.log1p(-phat)
    info = n * phat * (1.0 - phat)
    precision = 1.0 + tau**2 * info
    return tau * info * (that - theta) / precision, 1.0 / xp.sqrt(precision)


def log_likelihood(k: np.ndarray, n: np.ndarray, theta: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """log p(k | n, theta, tau) for arrays broadcasting to (draws, rows).

    Accumulated node by node, so memory stays at a few (draws x rows) arrays.
    """
    x, logw = quadrature()
    k, n = np.asarray(k, float), np.asarray(n, float)
    m, s = _centre(k, n, theta, tau, np)
    log_choose = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    total: np.ndarray | None = None
    for xj, lw in zip(x, logw, strict=True):
        z = m + s * xj
        t = theta + tau * z
        term = (
            lw - 0.5 * (z**2 - xj**2) - k * np.logaddexp(0.0, -t) - (n - k) * np.logaddexp(0.0, t)
        )
        total = term if total is None else np.logaddexp(total, term)
    assert total is not None
    return log_choose + np.log(s) + total


def pytensor_logp(value: Any, n: Any, theta: Any, tau: Any) -> Any:
    """The same log density in PyTensor (whole or fractional successes), for PyMC."""
    import pytensor.tensor as pt  # deferred: heavy
    from pytensor.tensor.math import gammaln, softplus  # deferred: heavy

    x, logw = quadrature()
    m, s = _centre(value, n, theta, tau, pt)
    nodes = pt.as_tensor_variable(x)
    z = m[..., None] + s[..., None] * nodes
    t = theta[..., None] + tau * z
    k, nn = value[..., None], n[..., None]
    terms = (
        pt.as_tensor_variable(logw)
        - 0.5 * (z**2 - nodes**2)
        - k * softplus(-t)
        - (nn - k) * softplus(t)
    )
    log_choose = gammaln(n + 1) - gammaln(value + 1) - gammaln(n - value + 1)
    return log_choose + pt.log(s) + pt.logsumexp(terms, axis=-1)


def draw_probability(
    theta: np.ndarray, tau: np.ndarray, rng: np.random.Generator, size: Any = None
) -> np.ndarray:
    """The success probability of a new measurement at a configuration: the law plus its miss."""
    shape = np.broadcast_shapes(np.shape(theta), np.shape(tau)) if size is None else size
    return special.expit(theta + tau * rng.standard_normal(shape))


def tau_by_moments(y: np.ndarray, p: np.ndarray, n: np.ndarray, dof: int) -> float:
    """tau matching the residual variance beyond the binomial's (delta method on the logit)."""
    v = p * (1 - p)
    extra = float(((y - p) ** 2).sum() / max(dof, 1)) - float(np.mean(v / n))
    if extra <= 0:
        return 0.0
    return float(np.sqrt(extra / max(float(np.mean(v**2)), 1e-12)))


__all__ = ["NAME", "NODES", "draw_probability", "log_likelihood", "logit_of", "pytensor_logp"]
