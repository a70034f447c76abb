"""Value of information: importance re-weighting of the draws, the exact EVSI of one
measurement, and the simulated joint outcomes that value a batch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from scalelaw.frontier.planning.decision import wrong_probability

_CLIP = 1e-9


def reweight(
    mu: np.ndarray, successes: float, samples: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Importance weights of the draws after observing `successes` out of `samples` at a point
    whose expected score per draw is `mu` (binomial likelihood)."""
    mu = np.clip(np.asarray(mu, dtype=float), _CLIP, 1 - _CLIP)
    logw = successes * np.log(mu) + (samples - successes) * np.log1p(-mu)
    if weights is not None:
        with np.errstate(divide="ignore"):
            logw = logw + np.log(weights)
    w = np.exp(logw - logw.max())
    return np.asarray(w / w.sum(), dtype=float)


@dataclass(frozen=True)
class Value:
    """Preposterior summary of one candidate measurement."""

    loss_before: float
    loss_after: float
    ess: float

    @property
    def evsi(self) -> float:
        # the exact expectation cannot exceed the loss before (min is concave); clip rounding
        return max(self.loss_before - self.loss_after, 0.0)


def evsi(
    mu: np.ndarray, samples: int, wins: np.ndarray, weights: np.ndarray | None = None
) -> Value:
    """Expected drop in P(wrong decision) from measuring `samples` trials at one point.

    Exact over every outcome 0..samples (no simulation noise): each outcome re-weights the
    draws by its binomial likelihood and is weighted by its posterior predictive probability.
    `ess` is the effective number of draws after the measurement, averaged over outcomes.
    """
    m = wins.shape[0]
    w0 = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=float)
    p = np.clip(np.asarray(mu, dtype=float), _CLIP, 1 - _CLIP)
    y = np.arange(samples + 1, dtype=float)[:, None]
    comb = gammaln(samples + 1) - gammaln(y + 1) - gammaln(samples - y + 1)
    with np.errstate(divide="ignore"):
        loglik = comb + y * np.log(p)[None, :] + (samples - y) * np.log1p(-p)[None, :]
        loglik = loglik + np.log(w0)[None, :]
    top = loglik.max(axis=1, keepdims=True)
    joint = np.exp(loglik - top)
    mass = joint.sum(axis=1)
    predictive = np.exp(top[:, 0]) * mass
    post = joint / mass[:, None]
    pw = post @ wins.astype(float)
    loss_y = np.minimum(pw, 1 - pw).mean(axis=1)
    ess_y = 1.0 / np.square(post).sum(axis=1)
    total = predictive.sum()
    before = wrong_probability(wins, w0)
    return Value(
        before,
        float(predictive @ loss_y / total),
        float(predictive @ ess_y / total),
    )


class _Simulator:
    """Joint outcomes of many configurations, simulated once per configuration.

    Simulation s takes draw `truth[s]` as the truth (the draws in turn, so the prior
    predictive is sampled evenly); each configuration's successes come from its own seeded
    stream, so a configuration's outcomes do not depend on which others are in the batch.
    """

    def __init__(self, mu: np.ndarray, wins: np.ndarray, sims: int, seed: int, keys: Sequence[str]):
        m = mu.shape[0]
        self.sims = max(int(sims), 1)
        self.truth = (np.arange(self.sims) * m) // self.sims
        self.logp = np.log(np.clip(mu, _CLIP, 1 - _CLIP))
        self.log1mp = np.log1p(-np.clip(mu, _CLIP, 1 - _CLIP))
        self.mu = mu
        self.wins = wins.astype(float)
        self.seed = seed
        self.keys = list(keys)

    def loglik(self, k: int, samples: int) -> np.ndarray:
        digest = hashlib.sha256(self.keys[k].encode()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
        p = np.clip(self.mu[self.truth, k], 0.0, 1.0)
        y = rng.binomial(samples, p).astype(float)
        out = y[:, None] * self.logp[None, :, k] + (samples - y)[:, None] * self.log1mp[None, :, k]
        # float32 halves the memory of the batch search; weights are renormalised per row
        return np.asarray(out, dtype=np.float32)

    def loss(self, total: np.ndarray | None) -> tuple[float, float]:
        """Expected P(wrong) and effective draws after observing the simulated outcomes."""
        if total is None:
            return wrong_probability(self.wins.astype(bool)), float(self.wins.shape[0])
        w = np.exp(total - total.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        p = w @ self.wins
        return float(np.minimum(p, 1 - p).mean()), float((1.0 / np.square(w).sum(axis=1)).mean())
