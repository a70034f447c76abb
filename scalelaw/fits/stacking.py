"""Stacking several laws fitted to the same table (Yao, Vehtari, Simpson, Gelman 2018).

A stacked fit predicts with the mixture of its laws' posterior predictive distributions, each
weighted by how well it predicts data it did not see. PSIS-LOO scores interpolation (ArviZ's
``compare(method="stacking")``). For extrapolation, the user's real question, the weights come
from each law's log predictive density on a held-out slice (``holdout="N=max"``: fit every law
without the largest model, score the largest model, choose the weights that maximise the
mixture's score); the mixture then uses the fits on all rows. When the laws disagree off the
grid, the mixture's intervals widen instead of inheriting one law's false certainty.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from scalelaw.data import load_table, table_hash
from scalelaw.errors import ScalelawError
from scalelaw.fits import lack_of_fit
from scalelaw.fits.design import Design, bind
from scalelaw.fits.evaluate import mean_response
from scalelaw.fits.law import Law, unique_names
from scalelaw.fits.prediction import (
    Points,
    noise_draws,
    observe,
    predict_draws,
    require_noise,
    thin,
)
from scalelaw.fits.result import FORMAT_VERSION, FitResult, misfit_line, write_atomically

#: Below this weight a law of a stack adds (almost) no draws; its diagnostics do not taint it.
MIN_WEIGHT = 0.01


class StackError(ScalelawError):
    """Fits that cannot be stacked (different data, no log-likelihood, one law)."""


@dataclass
class StackedFit:
    """Several fits of one table and their stacking weights; predicts with the mixture."""

    fits: list[FitResult]
    weights: np.ndarray
    method: str
    meta: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    #: column -> (largest fitted value, weights held out on that axis): a point beyond the
    #: largest value is predicted with the weights of how each law extrapolates that axis
    extrapolation: dict[str, tuple[float, np.ndarray]] = field(default_factory=dict)

    backend = "stack"

    @property
    def laws(self) -> list[Law]:
        return [f.law for f in self.fits]

    @property
    def law(self) -> Law:
        """The first law: response, link and likelihood family are shared by the stack."""
        return self.fits[0].law

    @property
    def levels(self) -> dict[str, list[str]]:
        return self.fits[0].levels

    @property
    def convergence(self) -> list[str]:
        """What failed in the laws that predict: a law weighted below 1% (inside the ranges
        and beyond every axis) draws no predictions."""
        largest = np.max([self.weights, *(w for _, w in self.extrapolation.values())], axis=0)
        return [
            f"{f.law.name}: {c}"
            for f, w in zip(self.fits, largest, strict=True)
            if w >= MIN_WEIGHT
            for c in f.convergence
        ]

    @property
    def converged(self) -> bool:
        return not self.convergence

    @property
    def misfit_share(self) -> float:
        """The stacking weight carried by laws whose predictive checks failed."""
        return float(sum(w for f, w in zip(self.fits, self.weights, strict=True) if f.misfit))

    def headline(self) -> str | None:
        """NOT CONVERGED (any law) and MISFIT when laws carrying most of the weight misfit."""
        parts = []
        if not self.converged:
            parts.append("NOT CONVERGED: " + "; ".join(self.convergence))
        if self.misfit_share > 0.5:
            bad = [f for f in self.fits if f.misfit]
            which = (
                "no candidate law fits the table"
                if len(bad) == len(self.fits)
                else f"laws carrying {self.misfit_share:.0%} of the weight misfit"
            )
            best = max(bad, key=lambda f: self.weights[self.fits.index(f)])
            line = misfit_line(best.diagnostics["misfit"]).removeprefix("MISFIT: ")
            parts.append(f"MISFIT: {which}; {best.law.name}: {line}")
        return " | ".join(parts) or None

    def _counts(self, total: int) -> list[int]:
        # largest-remainder allocation: draws per law proportional to its weight
        raw = self.weights * total
        counts = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - counts))[: total - counts.sum()]:
            counts[i] += 1
        return [int(c) for c in counts]

    def point_weights(self, points: Points, *, joint: bool = False) -> np.ndarray | None:
        """Per point (rows) and law (columns): the held-out weights of every axis the point
        extrapolates, averaged; PSIS-LOO (`weights`) inside the fitted ranges. None when no
        point leaves them, so that the stack predicts as one mixture. With `joint`, every point
        takes the weights of every axis that any point extrapolates: points compared with one
        another (a decision) are then predicted by the same law in each draw."""
        import polars as pl

        if not self.extrapolation:
            return None
        frame = points if isinstance(points, pl.DataFrame) else pl.DataFrame(dict(points))
        total = np.zeros((frame.height, len(self.fits)))
        count = np.zeros(frame.height)
        for column, (largest, weights) in self.extrapolation.items():
            if column not in frame.columns:
                continue
            beyond = frame[column].cast(pl.Float64).to_numpy() > largest * (1 + 1e-9)
            if joint and beyond.any():
                beyond[:] = True
            total[beyond] += weights
            count += beyond
        if not count.any():
            return None
        inside = count == 0
        total[inside] = self.weights
        return total / np.maximum(count, 1)[:, None]

    def _mixture(self, weights: np.ndarray, total: int, draw: Any) -> np.ndarray:
        # Draw i of every point comes from the law whose cumulative weight first passes
        # (i + 1/2) / total at that point: points with equal weights share their laws draw by
        # draw, so a comparison of two points (a decision) compares like with like.
        u = (np.arange(total) + 0.5) / total
        choice = np.stack([np.searchsorted(np.cumsum(w), u) for w in weights], axis=1)
        choice = np.minimum(choice, len(self.fits) - 1)
        out = np.empty(choice.shape)
        for k, f in enumerate(self.fits):
            if (choice == k).any():
                block = draw(f, total)
                out[choice == k] = block[choice == k]
        return out

    def predict_draws(
        self, points: Points, max_draws: int = 2000, *, joint: bool = False
    ) -> np.ndarray:
        per_point = self.point_weights(points, joint=joint)
        if per_point is not None:
            return self._mixture(per_point, max_draws, lambda f, n: _resample(f, points, n))
        parts = [
            _resample(f, points, n)
            for f, n in zip(self.fits, self._counts(max_draws), strict=True)
            if n > 0
        ]
        return np.concatenate(parts, axis=0)

    def predictive_draws(
        self,
        points: Points,
        *,
        samples: Any = None,
        rng: np.random.Generator,
        max_draws: int = 2000,
    ) -> np.ndarray:
        total = max(max_draws, 4000)
        for f in self.fits:
            require_noise(f)
        per_point = self.point_weights(points)
        if per_point is not None:

            def draw(f: FitResult, n: int) -> np.ndarray:
                mu = _resample(f, points, n)
                return np.asarray(observe(f.law, mu, noise_draws(f, n), samples, rng))

            return self._mixture(per_point, total, draw)
        parts = []
        for f, n in zip(self.fits, self._counts(total), strict=True):
            if n == 0:
                continue
            mu = _resample(f, points, n)
            parts.append(observe(f.law, mu, noise_draws(f, n), samples, rng))
        return np.concatenate(parts, axis=0)

    def save(self, path: str | Path) -> Path:
        """One NetCDF file: each law's fit as a group, weights and method in the root."""
        import xarray as xr

        path = Path(path)
        tree = xr.DataTree()
        for i, f in enumerate(self.fits):
            tree[f"fit_{i}"] = f._tree()
        tree.attrs = {
            "scalelaw": json.dumps(
                {
                    "format": FORMAT_VERSION,
                    "kind": "stack",
                    "weights": [float(w) for w in self.weights],
                    "method": self.method,
                    "meta": self.meta,
                    "extrapolation": {
                        c: {"beyond": largest, "weights": [float(w) for w in ws]}
                        for c, (largest, ws) in self.extrapolation.items()
                    },
                }
            )
        }
        write_atomically(tree, path)
        return path


def _resample(f: FitResult, points: Points, n: int) -> np.ndarray:
    """n draws of the expected response from one fit, repeating draws when it has fewer."""
    mu = predict_draws(f, points, max_draws=max(n, 1))
    idx = np.linspace(0, mu.shape[0] - 1, n).round().astype(int)
    return mu[idx]


# --- log predictive density ------------------------------------------------------------------
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


def pointwise_lpd(fit: FitResult, frame: Any, max_draws: int = 1000) -> np.ndarray:
    """log mean_s p(y_i | draw s) for each row of `frame`: the held-out predictive density."""
    design = bind(fit.law, frame, fit.levels, source="held-out rows")
    draws = thin(fit.draws, max_draws)
    n = next(iter(draws.values())).shape[0]
    ll = log_likelihood(fit.law, design, draws, noise_draws(fit, n))
    ll = np.where(np.isfinite(ll), ll, -1e10)
    return special.logsumexp(ll, axis=0) - np.log(ll.shape[0])


def stacking_weights(lpd: np.ndarray) -> np.ndarray:
    """Weights on the simplex maximising sum_i log sum_k w_k exp(lpd_ik) (Yao et al. 2018)."""
    k = lpd.shape[1]
    if k == 1:
        return np.ones(1)
    dens = np.exp(lpd - lpd.max(axis=1, keepdims=True))

    def loss(z: np.ndarray) -> float:
        w = special.softmax(np.append(z, 0.0))
        return -float(np.sum(np.log(dens @ w + 1e-300)))

    best = optimize.minimize(loss, np.zeros(k - 1), method="BFGS")
    return special.softmax(np.append(best.x, 0.0))


# --- building stacks -------------------------------------------------------------------------
def _check_same_data(fits: Sequence[Any]) -> None:
    if len(fits) < 2:
        raise StackError("stacking needs at least two fits")
    if any(not isinstance(f, FitResult) or f.is_card for f in fits):
        raise StackError("stack fits of a table, not stacked fits or published cards")
    hashes = {f.meta.get("data_hash") for f in fits}
    if len(hashes) > 1 or None in hashes:
        raise StackError(
            "fits were made on different tables (data hashes "
            + ", ".join(str(f.meta.get("data_hash")) for f in fits)
            + "); stack fits of one table"
        )
    holdouts = {bool(f.meta.get("holdout")) for f in fits}
    if True in holdouts:
        raise StackError("stack fits made on all rows, not fits with a held-out slice")
    if len({f.law.response for f in fits}) > 1:
        raise StackError("the fits predict different responses")


def stack(
    fits: Sequence[FitResult],
    *,
    data: Any = None,
    holdout: str | None = None,
    options: Any = None,
    progress: Any = None,
) -> StackedFit:
    """Stack fits of the same table.

    Without `holdout` the weights come from PSIS-LOO (Bayesian fits with log-likelihoods).
    With `holdout` (``"N=max"``, ``"L=max"``, ``"C=max"``), every law is refitted on the table
    (`data`, default: the fits' source) without the held-out slice, with the same options, and
    the weights maximise the held-out log predictive density of the mixture.

    `progress`, if given, is called with a message before each refit ("refitting NAME without
    N=max (2 of 5)"); see `announce` for a callback that counts.
    """
    from scalelaw.fits.fitting import FitWarning, fit
    from scalelaw.fits.validation import split_holdout

    fits = list(fits)
    _check_same_data(fits)
    names = unique_names([f.law.name for f in fits])
    if holdout is None:
        import arviz as az

        missing = [
            n
            for n, f in zip(names, fits, strict=True)
            if not (_has_log_likelihood(f) or _has_pointwise_loo(f))
        ]
        if missing:
            raise StackError(
                f"PSIS-LOO stacking needs Bayesian fits with log-likelihoods; {', '.join(missing)} "
                "has none (use --holdout, which works for least-squares fits too)"
            )
        if all(_has_log_likelihood(f) for f in fits):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = az.compare(
                    {n: f.idata for n, f in zip(names, fits, strict=True)},
                    method="stacking",
                    round_to="none",  # its default rounds the weights to two decimals
                )
            weights = np.array([float(table.loc[n, "weight"]) for n in names])
            scores = {n: float(table.loc[n, "elpd"]) for n in names}
        else:  # a large table: each row's ELPD-LOO was kept instead of its log-likelihood
            lpd = np.column_stack([pointwise_loo(f) for f in fits])
            weights = stacking_weights(lpd)
            scores = {n: float(lpd[:, i].sum()) for i, n in enumerate(names)}
        method = "PSIS-LOO"
    else:
        source = data if data is not None else fits[0].meta.get("source")
        if source is None or (isinstance(source, str) and source == "<table>"):
            raise StackError(
                "give the table (data=...) to refit the laws without the held-out slice"
            )
        frame = table_of(fits[0], source)
        if table_hash(frame) != fits[0].meta.get("data_hash"):
            raise StackError(
                f"{source if isinstance(source, str) else 'the table given'} is not the table "
                "the fits were made on (its data hash differs)"
            )
        train, test, desc = split_holdout(frame, holdout, str(source))
        assert test is not None
        columns = []
        announce(progress, len(fits))
        for i, (n, f) in enumerate(zip(names, fits, strict=True), 1):
            if progress:
                progress(f"refitting {n} without {holdout} ({i} of {len(fits)})")
            opts = options or options_of(f)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                held = fit(train, f.law_for_refit(), opts)
            columns.append(pointwise_lpd(held, test))
        lpd = np.column_stack(columns)
        weights = stacking_weights(lpd)
        method = f"held-out {desc} log predictive density"
        scores = {n: float(lpd[:, i].sum()) for i, n in enumerate(names)}
    weights = np.clip(weights, 0.0, None)
    weights = weights / weights.sum()
    return StackedFit(
        fits=fits,
        weights=weights,
        method=method,
        meta={
            "data_hash": fits[0].meta.get("data_hash"),
            "source": fits[0].meta.get("source"),
            "laws": names,
            "scores": scores,
            "holdout": holdout,
        },
    )


def options_of(f: FitResult) -> Any:
    """The settings a fit was made with, for refitting it on part of its table."""
    from scalelaw.fits.fitting import FitOptions

    d = f.diagnostics
    if f.backend == "lsq":
        return FitOptions(
            backend="lsq",
            seed=int(f.meta.get("seed", 0) or 0),
            loss=str(d.get("loss", "huber")),
            huber_delta=d.get("huber_delta"),
            bootstrap=int(d.get("bootstrap", 200)),
            loo=False,
        )
    retry = d.get("retry") or {}
    draws = int(d.get("draws", 1000))
    return FitOptions(
        backend="bayes",
        seed=int(f.meta.get("seed", 0) or 0),
        chains=int(d.get("chains", 4)),
        # a retried fit records its longer run; the refit starts where the first run started
        draws=int(retry.get("first_draws", draws)),
        tune=int(retry.get("first_tune", d.get("tune", draws))),
        loo=False,
    )


def _has_pointwise_loo(f: FitResult) -> bool:
    from scalelaw.fits.bayes import POINTWISE_LOO

    return f.idata is not None and POINTWISE_LOO in getattr(f.idata, "children", {})


def pointwise_loo(f: FitResult) -> np.ndarray:
    """Each row's ELPD-LOO: from the kept values, or PSIS-LOO of the log-likelihood."""
    from scalelaw.fits.bayes import POINTWISE_LOO

    assert f.idata is not None
    if POINTWISE_LOO in f.idata.children:
        return np.asarray(f.idata[POINTWISE_LOO]["elpd_i"].values, dtype=float).ravel()
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(az.loo(f.idata, var_name="obs", pointwise=True).elpd_i).ravel()


def _has_log_likelihood(f: FitResult) -> bool:
    return f.idata is not None and "log_likelihood" in getattr(f.idata, "children", {})


def table_of(f: FitResult, source: Any) -> Any:
    return load_table(
        source,
        require=list(f.law.columns.values()),
        labels=list(f.law.groups.values()),
        response=f.law.response,
        column_map=f.meta.get("column_map"),
        where=f.meta.get("where"),
        replicates=bool(f.meta.get("replicates", False)),
        aggregate=f.meta.get("aggregate"),
    )


def stacked_from_tree(tree: Any, info: dict[str, Any], path: Path) -> StackedFit:
    """Rebuild a stacked fit from its file (see `scalelaw.fits.result.load_fit`)."""
    from scalelaw.fits.result import FitFileError, fit_from_tree

    try:
        weights = np.asarray(info["weights"], dtype=float)
        fits = [fit_from_tree(tree[f"fit_{i}"], path) for i in range(len(weights))]
    except KeyError as exc:
        raise FitFileError(f"{path}: damaged stacked fit ({exc})") from None
    if len(fits) < 2 or not _is_simplex(weights):
        raise FitFileError(f"{path}: damaged stacked fit (weights {weights.tolist()})")
    extrapolation: dict[str, tuple[float, np.ndarray]] = {}
    for column, spec in dict(info.get("extrapolation") or {}).items():
        try:
            largest = float(spec["beyond"])
            ws = np.asarray(spec["weights"], dtype=float)
        except (KeyError, TypeError, ValueError):
            raise FitFileError(f"{path}: damaged stacked fit (extrapolation '{column}')") from None
        if ws.shape != weights.shape or not _is_simplex(ws) or not np.isfinite(largest):
            raise FitFileError(f"{path}: damaged stacked fit (extrapolation weights of '{column}')")
        extrapolation[str(column)] = (largest, ws)
    return StackedFit(
        fits,
        weights,
        str(info.get("method", "")),
        dict(info.get("meta", {})),
        extrapolation=extrapolation,
    )


def _is_simplex(weights: np.ndarray) -> bool:
    return bool(
        np.all(np.isfinite(weights)) and np.isclose(weights.sum(), 1.0) and (weights >= 0).all()
    )


def stack_laws(
    data: Any,
    laws: Sequence[Law],
    options: Any = None,
    *,
    holdout: str | None = None,
    where: Any = None,
    progress: Any = None,
) -> StackedFit:
    """Fit each law to all rows of `data`, then stack them (see `stack`). `progress` is
    called with a message before each fit and each refit ("fitting NAME (1 of 3)")."""
    from scalelaw.fits.fitting import FitWarning, fit

    fits = []
    announce(progress, len(laws) * (2 if holdout else 1))
    for i, law in enumerate(laws, 1):
        if progress:
            progress(f"fitting {law.name} ({i} of {len(laws)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            fits.append(fit(data, law, options, where=where))
    frame = data if not isinstance(data, str | Path) else None
    return stack(
        fits,
        data=frame if frame is not None else data,
        holdout=holdout,
        options=options,
        progress=messages_only(progress),
    )


def announce(progress: Any, steps: int) -> None:
    """Tell a `progress` callback that counts how many steps (fits, refits) are to come.

    A `progress=` callback of the fitting API is called with a message before each step. One
    that also has an `expect(n)` method (the command line's tracker) is told the number of
    steps first, so that it can show "i of n" and an ETA; a plain function is only called."""
    expect = getattr(progress, "expect", None)
    if callable(expect) and steps:
        expect(steps)


def messages_only(progress: Any) -> Callable[[str], None] | None:
    """`progress` for a nested call whose steps the caller has announced already: the
    messages pass, the nested `announce` does not count them twice."""
    if progress is None:
        return None
    return lambda message: progress(message)


def weights_table(stacked: StackedFit) -> Any:
    """Law, weight and score (ELPD or held-out log density) as a polars frame."""
    import polars as pl

    from scalelaw.fits.family import AXES

    names = stacked.meta.get("laws") or [f.law.name for f in stacked.fits]
    scores = stacked.meta.get("scores", {})
    symbol = {c: a for a, c in AXES.items()}
    beyond = {
        f"weight beyond {symbol.get(c, c)}={largest:g}": [float(w) for w in ws]
        for c, (largest, ws) in stacked.extrapolation.items()
    }
    score = [scores.get(n) for n in names]
    return pl.DataFrame(
        {
            "law": names,
            "weight": [float(w) for w in stacked.weights],
            **beyond,
            **({"score": score} if any(v is not None for v in score) else {}),
            "converged": [f.converged for f in stacked.fits],
        }
    )
