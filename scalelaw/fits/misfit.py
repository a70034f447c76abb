"""Posterior predictive checks that say MISFIT when a law does not describe its table.

A converged fit can still be the wrong law: the sampler found the posterior of a form that the
data contradict. Three checks, each with a threshold that a right law passes (tests simulate
from the law itself):

* **LOO-PIT** (`arviz_stats.loo_pit`; in-sample PIT for least squares): where each observation
  falls in its leave-one-out predictive distribution. Under the right law these are uniform; a
  Kolmogorov-Smirnov distance with p < 0.001 fails.
* **Pareto k**: more than 5% of rows with k > 0.7 means single rows pull the posterior, a sign
  that the form bends to reach them.
* **Dispersion**: the mean squared standardised residual against the predictive distribution
  (1 under the right law); above 2 with a chi-square p < 0.001 fails.

The worst rows are those furthest from their predictive mean in predictive standard deviations.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from scalelaw.fits.design import bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.likelihoods import noise_draws, observe, thin
from scalelaw.fits.result import FitResult

PIT_P = 1e-3
PARETO_SHARE = 0.05
DISPERSION = 2.0
DISPERSION_P = 1e-3
WORST = 5
#: draws of the predictive distribution used by the checks
DRAWS = 1000


def predictive_sample(result: FitResult, frame: pl.DataFrame, draws: int, seed: int = 0) -> Any:
    """(draws, rows) new observations of the fitted rows, on the response's scale."""
    design = bind(result.law, frame, result.levels, observed=False)
    d = thin(result.draws, draws)
    n = next(iter(d.values())).shape[0]
    mu = mean_response(result.law, design, d)
    reps = max(1, draws // n)
    mu = np.repeat(mu, reps, axis=0)
    samples = frame["samples"].to_numpy() if "samples" in frame.columns else None
    rng = np.random.default_rng(seed)
    return observe(result.law, mu, noise_draws(result, mu.shape[0]), samples, rng)


def _loo_pit(
    result: FitResult, y: np.ndarray, sample: np.ndarray, scale: Any = 1.0
) -> np.ndarray | None:
    """PSIS-LOO-PIT from the fit's log-likelihood (None when it was not kept)."""
    idata = result.idata
    if idata is None or "log_likelihood" not in getattr(idata, "children", {}):
        return None
    import xarray as xr  # deferred: heavy
    from arviz_stats import loo_pit  # deferred: heavy

    ll = idata["log_likelihood"]["obs"]
    chains, per_chain = ll.sizes["chain"], ll.sizes["draw"]
    total = chains * per_chain
    if sample.shape[0] < total:
        sample = sample[np.linspace(0, sample.shape[0] - 1, total).round().astype(int)]
    pp = sample[:total].reshape(chains, per_chain, -1)
    tree = xr.DataTree.from_dict(
        {
            "posterior": idata["posterior"].to_dataset(),
            "log_likelihood": xr.Dataset({"obs": ll}),
            "posterior_predictive": xr.Dataset({"obs": (("chain", "draw", "row"), pp * scale)}),
            "observed_data": xr.Dataset({"obs": ("row", y * scale)}),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pit = loo_pit(tree, var_names="obs", random_state=0)
        except (ValueError, KeyError, FloatingPointError):
            return None
    return np.asarray(pit["obs"].values if hasattr(pit, "data_vars") else pit, float).ravel()


def check(result: FitResult, frame: pl.DataFrame) -> dict[str, Any]:
    """The three checks on the rows a fit was made on; ``failed`` lists what failed."""
    law = result.law
    y = frame[law.response].to_numpy().astype(float)
    # a large table gets fewer predictive draws: (draws x rows) stays near 2e7 numbers
    sample = predictive_sample(result, frame, int(np.clip(2e7 / max(y.size, 1), 50, DRAWS)))
    # a count law's log-likelihood is of successes: its PIT compares counts with counts
    scale = frame["samples"].to_numpy().astype(float) if law.is_count else 1.0
    pit = _loo_pit(result, y, sample, scale)
    kind = "LOO-PIT"
    if pit is None:
        rng = np.random.default_rng(0)
        below = (sample < y).mean(axis=0)
        ties = (sample == y).mean(axis=0)
        pit, kind = below + rng.uniform(size=y.size) * ties, "PIT (in-sample)"
    out: dict[str, Any] = {"failed": [], "pit_kind": kind}
    pit = np.clip(pit[np.isfinite(pit)], 0.0, 1.0)
    if pit.size >= 10:
        ks = stats.kstest(pit, "uniform")
        out["pit_ks"] = float(ks.statistic)
        out["pit_p"] = float(ks.pvalue)
        tails = float(np.mean((pit < 0.05) | (pit > 0.95)))
        out["pit_tails"] = tails
        if ks.pvalue < PIT_P:
            out["failed"].append(
                f"{kind} not uniform (KS {ks.statistic:.2f}, p {ks.pvalue:.1e}; "
                f"{tails:.0%} of rows in the outer 10%)"
            )
    k_bad = result.diagnostics.get("pareto_k_bad")
    if k_bad is not None and y.size:
        share = k_bad / y.size
        out["pareto_k_share"] = share
        if share > PARETO_SHARE:
            out["failed"].append(f"Pareto k > 0.7 on {share:.0%} of rows (limit 5%)")
    mean, sd = sample.mean(axis=0), sample.std(axis=0)
    z = (y - mean) / np.where(sd > 0, sd, np.nan)
    finite = np.isfinite(z)
    if finite.sum() >= 10:
        disp = float(np.mean(z[finite] ** 2))
        p = float(stats.chi2.sf(disp * finite.sum(), finite.sum()))
        out["dispersion"] = disp
        if disp > DISPERSION and p < DISPERSION_P:
            out["failed"].append(
                f"residuals {disp:.1f}x the predictive variance (observed dispersion beyond "
                "the likelihood's)"
            )
    order = np.argsort(-np.where(finite, np.abs(z), -np.inf))[:WORST]
    out["worst_rows"] = [_describe(frame, int(i), float(z[i])) for i in order if finite[i]]
    return out


def _describe(frame: pl.DataFrame, i: int, z: float) -> str:
    row = frame.row(i, named=True)
    parts = [f"row {i + 1}"]
    for col, short in (("params", "N"), ("seq_len", "L"), ("compression", "C"), ("task", "task")):
        if col in row and row[col] is not None:
            v = row[col]
            parts.append(f"{short}={v:g}" if isinstance(v, float | int) else f"{short}={v}")
    return " ".join(parts) + f" ({z:+.1f} sd)"


__all__ = ["check"]
