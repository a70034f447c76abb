"""What a fit is: a fitted law's parameter draws, diagnostics and provenance (`FitResult`), or
several fits of one table with their stacking weights (`StackedFit`), and `load_fit` for either.

Their file format (reading, writing and checking a fit file) is `scalelaw.fits.fitfile`'s; the
names it had here are still importable from this module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scalelaw.fits.evaluate import card_draws, card_levels
from scalelaw.fits.expr import ExprError
from scalelaw.fits.fitfile import (
    AUXILIARIES,
    FILE_LOGLIK_BYTES,
    FORMAT_VERSION,
    FitFileError,
    fit_parts,
    fit_tree,
    is_stack,
    package_versions,
    read_tree,
    save_fit,
    save_stack,
    stack_parts,
    write_atomically,
)
from scalelaw.fits.law import Law
from scalelaw.fits.likelihoods import (
    LIKELIHOOD_NOISE,
    NOISE_PARAMS,
    NOISE_PREFIX,
    noise_draws,
    noise_name,
    observe,
    require_noise,
)
from scalelaw.fits.points import Points, expected_draws
from scalelaw.fits.text import (
    fit_text,
    stack_params,
    stack_report,
    stack_repr,
    stack_summary,
)

if TYPE_CHECKING:
    import polars  # deferred: heavy

#: What a MISFIT headline suggests trying.
MISFIT_SUGGESTION = (
    "try --law auto (a family of forms, stacked), an overdispersed likelihood "
    "(--likelihood logit_normal_binomial for counts), or a form with per-task slopes"
)


def misfit_line(misfit: dict[str, Any]) -> str:
    """``MISFIT: <failed checks>; worst rows: ...; try ...``."""
    worst = misfit.get("worst_rows") or []
    return (
        "MISFIT: "
        + "; ".join(misfit.get("failed", []))
        + (f"; worst rows: {', '.join(worst[:3])}" if worst else "")
        + f"; {MISFIT_SUGGESTION}"
    )


#: Below this weight a law of a stack adds (almost) no draws; its diagnostics do not taint it.
MIN_WEIGHT = 0.01


@dataclass
class FitResult:
    """Parameter draws (n_draws leading) of a law, with the levels of its group effects."""

    law: Law
    backend: str
    draws: dict[str, np.ndarray]
    levels: dict[str, list[str]]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    point: dict[str, np.ndarray] | None = None
    idata: Any = None
    #: Draws of the likelihood's own parameters (sigma, nu, kappa), n_draws leading.
    noise: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def convergence(self) -> list[str]:
        """What failed: empty when the fit converged (see `fitting.convergence_problems`)."""
        return list(self.diagnostics.get("not_converged", []))

    @property
    def converged(self) -> bool:
        return not self.convergence

    def law_for_refit(self) -> Law:
        """The law as the user gave it: priors that were set from the data are unset again."""
        auto = set(self.diagnostics.get("auto_priors", []))
        return self.law.with_options(
            params=tuple(replace(p, prior=None) if p.name in auto else p for p in self.law.params)
        )

    @property
    def misfit(self) -> list[str]:
        """Posterior predictive checks that failed (`scalelaw.fits.misfit`); empty when none."""
        return list((self.diagnostics.get("misfit") or {}).get("failed", []))

    def headline(self) -> str | None:
        """``NOT CONVERGED: ...`` and/or ``MISFIT: ...`` when a diagnostic failed, else None."""
        parts = []
        if not self.converged:
            parts.append("NOT CONVERGED: " + "; ".join(self.convergence))
        if self.misfit:
            parts.append(misfit_line(self.diagnostics["misfit"]))
        return " | ".join(parts) or None

    @classmethod
    def card(cls, law: Law, values: dict[str, Any], **meta: Any) -> FitResult:
        """A published law card: fixed coefficients as a fit with one draw.

        Group values are mappings from level to value, e.g. ``{"delta": {"QuALITY": 0.0, ...}}``.
        """
        missing = set(law.param_names) - set(values)
        if missing:
            raise ExprError(f"card '{law.name}' has no values for {sorted(missing)}")
        levels = card_levels(law, values)
        draws = card_draws(law, values, levels)
        return cls(
            law=law,
            backend="card",
            draws=draws,
            levels=levels,
            point=draws,
            meta={"card": True, "values": values, **meta},
        )

    @property
    def is_card(self) -> bool:
        return self.backend == "card"

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0])

    def estimates(self) -> dict[str, np.ndarray]:
        """Best single estimates: the least-squares optimum, or posterior medians."""
        if self.point is not None:
            return self.point
        return {k: np.median(v, axis=0, keepdims=True) for k, v in self.draws.items()}

    def interval(self, name: str, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.quantile(self.draws[name], [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        return lo, hi

    # --- in a notebook -----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"FitResult(law={self.law.name!r}, backend={self.backend!r}, "
            f"rows={self.meta.get('rows')}, converged={self.converged})"
        )

    def _row_names(self) -> list[str]:
        """One name per scalar parameter or group level, as `summary` and the CLI name them:
        ``alpha``, ``delta[QuALITY]``."""
        names = []
        for name in self.law.param_names:
            column = self.law.groups.get(name)
            if column is None:
                names.append(name)
            else:
                names += [f"{name}[{level}]" for level in self.levels[column]]
        return names

    @property
    def params(self) -> dict[str, float | dict[str, float]]:
        """The best single estimates (`estimates`): posterior medians, or the least-squares
        optimum; a group effect as ``{level: value}``, e.g. ``{"QuALITY": 0.0, "NIAH": 2.1}``."""
        out: dict[str, float | dict[str, float]] = {}
        for name, values in self.estimates().items():
            value = np.asarray(values, dtype=float)[0]
            column = self.law.groups.get(name)
            if column is None:
                out[name] = float(value)
            else:
                out[name] = dict(zip(self.levels[column], map(float, value), strict=True))
        return out

    def summary(self, prob: float = 0.9, ci_kind: str = "eti") -> polars.DataFrame:
        """One row per scalar parameter or group level (``delta[QuALITY]``), as a polars frame.

        Bayesian fits: ``median`` (the estimate the CLI prints), then the numbers of
        `arviz.summary` on the law's parameters: ``mean``, ``sd``, the central (``eti``) or
        highest-density (``hdi``) interval of probability `prob` as ``lower`` and ``upper``,
        ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean``, ``mcse_sd``. A group's pinned
        reference level has no spread, so its ``r_hat`` is NaN.
        Least squares (and cards): ``estimate`` (the optimum), ``stderr`` (standard deviation
        of the bootstrap refits; null with fewer than two) and the central `prob` interval of
        the refits as ``lower`` and ``upper``.
        """
        import polars as pl  # deferred: heavy

        if not 0 < prob < 1:
            raise ValueError(f"prob={prob!r}; give a probability between 0 and 1")
        if ci_kind not in ("eti", "hdi"):
            raise ValueError(f"ci_kind={ci_kind!r}; choose 'eti' or 'hdi'")
        names = self._row_names()
        best = self.estimates()
        est = np.concatenate([np.asarray(best[n], float).reshape(-1) for n in self.law.param_names])
        if self.backend == "bayes":
            table = self._arviz_summary(names, prob, ci_kind)
            lower, upper = (c for c in table.columns if c.endswith(("_lb", "_ub")))
            return pl.DataFrame(
                {
                    "param": names,
                    "median": est,
                    "mean": table["mean"].to_numpy(float),
                    "sd": table["sd"].to_numpy(float),
                    "lower": table[lower].to_numpy(float),
                    "upper": table[upper].to_numpy(float),
                    **{
                        k: table[k].to_numpy(float)
                        for k in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd")
                    },
                }
            )
        if ci_kind != "eti":
            raise ValueError(
                f"a {self.backend} fit has no posterior: its intervals are central intervals of "
                "the bootstrap refits (ci_kind='eti')"
            )
        draws = np.column_stack(
            [self.draws[n].reshape(self.n_draws, -1) for n in self.law.param_names]
        )
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        stderr = draws.std(axis=0, ddof=1) if self.n_draws > 1 else [None] * len(names)
        return pl.DataFrame(
            {"param": names, "estimate": est, "stderr": stderr, "lower": lo, "upper": hi},
            schema={
                k: pl.String if k == "param" else pl.Float64
                for k in ("param", "estimate", "stderr", "lower", "upper")
            },
        )

    def _arviz_summary(self, names: list[str], prob: float, ci_kind: str) -> Any:
        """`arviz.summary` of the law's parameters, unrounded, in the order of `names`."""
        import arviz as az  # deferred: heavy

        with warnings.catch_warnings():
            # a pinned reference level has no variance: R-hat divides zero by zero
            warnings.simplefilter("ignore", RuntimeWarning)
            table = az.summary(
                self.to_datatree(),
                var_names=self.law.param_names,
                kind="all",
                ci_prob=prob,
                ci_kind=ci_kind,
                round_to="none",
            )
        return table.loc[names]

    def to_datatree(self) -> Any:
        """The fit as the ArviZ DataTree its file holds: the sampler's output (or the bootstrap
        refits as a posterior of one chain), for any `arviz` function."""
        return self.idata if self.idata is not None else fit_tree(self, FILE_LOGLIK_BYTES)

    def fit_report(self, prob: float = 0.9, width: int = 100) -> str:
        """What ``scalelaw fit`` prints for this fit, as plain text: the NOT CONVERGED or MISFIT
        headline, the parameter table and the diagnostics line. ``print(fit.fit_report())``."""
        return fit_text(self, prob, width=width)

    def plot(self, kind: str = "fit", ax: Any = None, *, data: Any = None, **kw: Any) -> Any:
        """Draw the fit and return the matplotlib Figure (see `scalelaw.plots.figure`).

        `kind` is any kind ``scalelaw plot`` draws: ``fit`` (data and fitted mean with its band,
        one panel per task), ``ppc``, ``posterior`` or ``trace``. `ax` is an Axes, or a sequence
        of Axes (one per panel), to draw into. `data` is the table the fit was made from (a
        polars frame or a path); a fit made from a file path reads that file again. Further
        keywords: ``prob`` (band), ``tasks`` (panels of kind fit), ``var_names`` (posterior).
        """
        # Deferred on purpose: figures live in `scalelaw.plots`, a layer above fits; this one
        # import is declared in pyproject.toml [tool.importlinter] ignore_imports.
        from scalelaw.plots import figure

        return figure(self, kind, ax=ax, data=data, **kw)

    # --- persistence (`scalelaw.fits.fitfile`) ------------------------------------------------
    def _tree(self) -> Any:
        return fit_tree(self, FILE_LOGLIK_BYTES)

    def save(self, path: str | Path) -> Path:
        """Write the fit to `path` (NetCDF), atomically: a crash leaves the old file intact."""
        return save_fit(self, path, FILE_LOGLIK_BYTES)


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

    def __repr__(self) -> str:
        return stack_repr(self)

    def summary(self) -> Any:
        """One row per law, heaviest first: weight (and held-out weights beyond the table),
        score, and each law's headline numbers; a polars frame (`scalelaw.fits.text`)."""
        return stack_summary(self)

    def fit_report(self, prob: float = 0.9, width: int = 100) -> str:
        """The weights and each law's numbers, then each law's own report, heaviest first."""
        return stack_report(self, prob, width)

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        """Each law's estimates (`FitResult.params`), by the law's name in the stack."""
        return stack_params(self)

    def plot(self, kind: str = "fit", ax: Any = None, *, data: Any = None, **kw: Any) -> Any:
        """Draw the mixture (kind ``fit``: the data, the mixture's mean and bands) and return
        the matplotlib Figure: the figures and keywords of `FitResult.plot`, whose hand-over
        to `scalelaw.plots` draws fits and stacks alike."""
        draw: Any = FitResult.plot
        return draw(self, kind, ax, data=data, **kw)

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

    def _predicting(self) -> list[bool]:
        """Per law, whether it draws predictions: a law weighted below 1% (inside the ranges
        and beyond every axis) draws none."""
        largest = np.max([self.weights, *(w for _, w in self.extrapolation.values())], axis=0)
        return [bool(w >= MIN_WEIGHT) for w in largest]

    @property
    def convergence(self) -> list[str]:
        """What failed in the laws that predict (`_predicting`)."""
        return [
            f"{f.law.name}: {c}"
            for f, used in zip(self.fits, self._predicting(), strict=True)
            if used
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
        """NOT CONVERGED (any law that predicts) and MISFIT when laws carrying most of the weight
        misfit."""
        parts = []
        if not self.converged:
            line = "NOT CONVERGED: " + "; ".join(self.convergence)
            # their weights came from unconverged chains too: say how many there are
            quiet = sum(
                not f.converged and not used
                for f, used in zip(self.fits, self._predicting(), strict=True)
            )
            if quiet > 0:
                line += (
                    f" (and {quiet} law{'s' if quiet > 1 else ''} of weight below "
                    f"{MIN_WEIGHT:.0%}, which draw{'' if quiet > 1 else 's'} no predictions)"
                )
            parts.append(line)
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
        import polars as pl  # deferred: heavy

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
        return save_stack(self, path, FILE_LOGLIK_BYTES)


def _resample(f: FitResult, points: Points, n: int) -> np.ndarray:
    """n draws of the expected response from one fit, repeating draws when it has fewer."""
    mu = expected_draws(f, points, max(n, 1))
    idx = np.linspace(0, mu.shape[0] - 1, n).round().astype(int)
    return mu[idx]


def load_fit(path: str | Path) -> Any:
    """Read a fit file written by `FitResult.save` (or a stacked fit by `StackedFit.save`)."""
    tree, info, p = read_tree(path)
    if is_stack(info):
        return stacked_from_tree(tree, info, p)
    return fit_from_tree(tree, p)


def fit_from_tree(tree: Any, p: Path) -> FitResult:
    """One fit from its DataTree (a whole file, or one group of a stacked file), checked by
    `fitfile.fit_parts`."""
    return FitResult(**fit_parts(tree, p))


def stacked_from_tree(tree: Any, info: dict[str, Any], path: Path) -> StackedFit:
    """Rebuild a stacked fit from its file (see `load_fit`)."""
    parts = stack_parts(tree, info, path)
    fits = [FitResult(**f) for f in parts.pop("fits")]
    return StackedFit(fits, **parts)


__all__ = [
    "AUXILIARIES",
    "FILE_LOGLIK_BYTES",
    "FORMAT_VERSION",
    "LIKELIHOOD_NOISE",
    "MIN_WEIGHT",
    "NOISE_PARAMS",
    "NOISE_PREFIX",
    "FitFileError",
    "FitResult",
    "StackedFit",
    "fit_from_tree",
    "load_fit",
    "misfit_line",
    "noise_name",
    "package_versions",
    "stacked_from_tree",
    "write_atomically",
]
