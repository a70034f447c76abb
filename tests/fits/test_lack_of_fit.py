"""The logit-normal binomial: its quadrature, its lack-of-fit estimate, its wider intervals."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy import integrate, special, stats

from scalelaw.fits import FitOptions, fit, lack_of_fit, predict_table
from scalelaw.fits.family import candidates

GRID = pl.DataFrame(
    {
        "params": np.repeat([5e8, 1.5e9, 4e9, 1.2e10], 12),
        "seq_len": np.tile(np.repeat([4096.0, 16384.0], 6), 4),
        "compression": np.tile([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 8),
    }
)


def _table(tau: float, seed: int = 0, samples: int = 400) -> pl.DataFrame:
    """The log-linear law with a per-configuration miss of sd `tau` on the logit."""
    rng = np.random.default_rng(seed)
    g = GRID
    eta = (
        -8.0
        + 0.5 * np.log(g["params"].to_numpy())
        - 0.6 * np.log(g["seq_len"].to_numpy())
        - 0.5 * np.log(g["compression"].to_numpy())
    )
    p = special.expit(eta + tau * rng.standard_normal(g.height))
    k = rng.binomial(samples, p)
    return g.with_columns(
        pl.Series("score", k / samples), pl.Series("samples", np.full(g.height, samples))
    )


@pytest.mark.parametrize(("k", "n", "theta", "tau"), [(3, 10, 0.2, 0.8), (47, 50, 2.5, 1.5)])
def test_quadrature_equals_the_integral(k: int, n: int, theta: float, tau: float) -> None:
    def integrand(z: float) -> float:
        return stats.binom.pmf(k, n, special.expit(theta + tau * z)) * stats.norm.pdf(z)

    exact = np.log(integrate.quad(integrand, -12, 12)[0])
    got = lack_of_fit.log_likelihood(
        np.array(float(k)), np.array(float(n)), np.array(theta), np.array(tau)
    )
    assert float(got) == pytest.approx(exact, abs=1e-5)


def test_no_lack_of_fit_is_the_binomial() -> None:
    k, n, theta = np.array([0.0, 7.0, 20.0]), np.array([20.0] * 3), np.array([-1.0, 0.3, 2.0])
    got = lack_of_fit.log_likelihood(k, n, theta, np.zeros(3))
    assert np.allclose(got, stats.binom.logpmf(k, n, special.expit(theta)), atol=1e-10)


def test_least_squares_estimates_the_miss_and_widens_the_interval() -> None:
    data = _table(tau=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law = candidates(data)[0]  # the log-linear form, with the lack-of-fit likelihood
        assert law.likelihood == "logit_normal_binomial"
        wide = fit(data, law, FitOptions(backend="lsq", bootstrap=30))
        plain = law.with_options(likelihood="binomial")
        narrow = fit(data, plain, FitOptions(backend="lsq", bootstrap=30))
    tau = float(np.median(wide.noise["tau"]))
    assert 0.3 < tau < 0.8
    at = {"N": 3.6e10, "L": 16384, "C": 8}
    w = predict_table(wide, at, samples=400)
    b = predict_table(narrow, at, samples=400)
    width = lambda t: float(t["pred_upper"][0] - t["pred_lower"][0])  # noqa: E731
    assert width(w) > 1.5 * width(b)
