"""Fitting a law to a table: one call over the backends, data warnings, a convergence verdict.

The backends (`scalelaw.fits.bayes`, `scalelaw.fits.lsq`) each own their settings and
diagnostics behind one function, ``run(law, design, levels, options, on_priors) -> FitResult``.
This module loads and splits the table, binds the law to it, calls the backend, and says in one
line when a fit did not converge (``NOT CONVERGED: R-hat 1.74 (alpha, top), 400 divergences``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl

from scalelaw.data import ALIASES, Where, load_table, table_hash, to_conditions
from scalelaw.errors import ScalelawError
from scalelaw.fits import misfit
from scalelaw.fits.design import bind, group_levels
from scalelaw.fits.evaluate import insensitive, mean_response
from scalelaw.fits.holdout import holdout_scores, r_squared, split_holdout
from scalelaw.fits.law import Law
from scalelaw.fits.likelihoods import row_blocks, thin
from scalelaw.fits.points import as_frame
from scalelaw.fits.result import FitResult, package_versions

#: Called with the law whose priors are all concrete, and the names set from the data.
PriorHook = Callable[[Law, list[str]], None]
BACKENDS = ("bayes", "lsq")
#: Columns a law reads exactly, with no fitted slope (a task's chance level): a single value is
#: no gap in the data.
EXACT_COLUMNS = ("chance",)
#: The `phase` of rows measured with a prefill and a decode method at once: two ratios per row.
COMBINED_PHASE = "prefill+decode"
#: The built-in law that reads both ratios (`prefill_compression`, `decode_compression`).
COMBINED_LAW = "sparse-frontier-pd"
#: Most bootstrap refits a least-squares fit may ask for (each is a whole refit).
MAX_BOOTSTRAP = 10_000


class Backend(Protocol):
    """What `scalelaw.fits.lsq` and `scalelaw.fits.bayes` provide: one function that fits a
    law to a bound table with its own settings (read from `FitOptions`) and diagnostics."""

    def run(
        self,
        law: Law,
        design: Any,
        levels: dict[str, list[str]],
        options: FitOptions,
        on_priors: PriorHook | None = None,
    ) -> FitResult: ...


class FitWarning(UserWarning):
    """A fit finished but a diagnostic is off (R-hat, divergences, bounds, thin covariates)."""


class NotConvergedWarning(FitWarning):
    """The fit failed its convergence diagnostics; its message starts ``NOT CONVERGED:``."""


class MisfitWarning(FitWarning):
    """The fit's posterior predictive checks failed; its message contains ``MISFIT:``."""


class StrictFitError(ScalelawError):
    """Raised under ``strict=True`` when a fit's diagnostics are off."""


@dataclass
class FitOptions:
    backend: str = "bayes"
    seed: int = 0
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    #: One automatic retry at target acceptance 0.99 when the first run diverged (bayes).
    retry: bool = True
    loss: str = "huber"
    huber_delta: float | None = None  # 1e-3 on log scale (Epoch AI), 0.05 on scores
    bootstrap: int = 200
    refine: int = 8
    #: Sobol starts for least squares (None: chosen from the number of parameters).
    starts: int | None = None
    strict: bool = False
    loo: bool = True
    #: bytes of (draws x rows) arrays held at once: above it the pointwise log-likelihood is
    #: not kept and PSIS-LOO runs over blocks of rows (bayes)
    max_memory: float = 2e9
    progressbar: bool = False
    #: Called with a message as each step of the fit begins (least squares: scoring the
    #: starts, each refinement, each bootstrap refit; bayes: the least-squares start, the
    #: sampling, a retry, PSIS-LOO). One with an `expect(n)` method (the command line's
    #: tracker, `scalelaw.commands.progress`) is told first how many steps are to come.
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.bootstrap > MAX_BOOTSTRAP:
            raise ScalelawError(
                f"bootstrap={self.bootstrap}: at most {MAX_BOOTSTRAP} refits (each refits the "
                "law; a 90% interval from a few hundred is already steady to two digits)"
            )


def fit(
    data: Any,
    law: Law,
    options: FitOptions | None = None,
    *,
    holdout: str | None = None,
    column_map: Mapping[str, str] | None = None,
    where: Where = None,
    replicates: bool = False,
    aggregate: str | None = None,
    on_priors: PriorHook | None = None,
    prob: float = 0.9,
) -> FitResult:
    """Fit `law` to a table: a path, a dataset name, a polars or pandas frame, or a dict of
    columns.

    With `holdout` such as ``"N=max"`` the largest model size is left out of the fit and the
    result carries held-out error, Spearman rho and interval coverage per task in
    ``result.meta["holdout"]`` (against a ``truth`` column too, when the table has one).
    """
    opts = options or FitOptions()
    if not law.params:
        raise ScalelawError(f"law '{law.name}' has no parameters to fit")
    if opts.backend not in BACKENDS:
        raise ScalelawError(f"unknown backend '{opts.backend}' (choose bayes or lsq)")
    data = as_frame(data)
    source = data if isinstance(data, str) else "<table>"

    frame = load_table(
        data,
        require=list(law.columns.values()),
        labels=list(law.groups.values()),
        response=law.response,
        column_map=column_map,
        where=where,
        replicates=replicates,
        aggregate=aggregate,
    )
    refuse_combined(law, frame, str(source))
    train, test, holdout_desc = split_holdout(frame, holdout, str(source))
    levels = group_levels(law, train, str(source))
    design = bind(law, train, levels, source=str(source))
    result = fit_design(law, design, levels, opts, on_priors)
    if design.fractional:
        result.meta["counts"] = "score x samples (partial credit)"
    result.meta.update(
        {
            "data_hash": table_hash(frame),
            "rows": train.height,
            "seed": opts.seed,
            "versions": package_versions(),
            "source": str(source),
        }
    )
    # the covariates' fitted span: figures and reports mark what lies beyond it as extrapolated;
    # the study's axes are kept even when the law has no term for them (a family drops an axis
    # the table holds fixed), so that a prediction at another value of one is said to be beyond
    seen = dict.fromkeys([*law.columns.values(), *ALIASES.values()])
    result.meta["ranges"] = {
        column: [float(train[column].min()), float(train[column].max())]  # type: ignore[arg-type]
        for column in seen
        if column in train.columns and train[column].dtype.is_numeric()
    }
    if column_map:
        result.meta["column_map"] = dict(column_map)
    if replicates:
        result.meta["replicates"] = True
    if aggregate:
        result.meta["aggregate"] = aggregate
    if where:
        result.meta["where"] = [str(c) for c in to_conditions(where)]
    result.diagnostics["r2"] = r_squared(result, train)
    result.diagnostics["warnings"] = data_warnings(result, train)
    if "not_identified" not in result.diagnostics:  # lsq finds them itself
        result.diagnostics["not_identified"] = insensitive(law, design, result.estimates())
    result.diagnostics["not_converged"] = convergence_problems(result)
    result.diagnostics["misfit"] = misfit.check(result, train)
    if test is not None:
        result.meta["holdout"] = {"axis": holdout_desc, **holdout_scores(result, test, prob)}
    headline = result.headline()
    if headline:
        category = NotConvergedWarning if result.convergence else MisfitWarning
        warnings.warn(headline, category, stacklevel=2)
    for w in result.diagnostics["warnings"]:
        warnings.warn(w, FitWarning, stacklevel=2)
    if opts.strict and (headline or result.diagnostics["warnings"]):
        raise StrictFitError(
            "; ".join([*([headline] if headline else []), *result.diagnostics["warnings"]])
        )
    return result


def reads_one_ratio(law: Law) -> bool:
    """Whether `law` reads the single `compression` column (and not the two phase ratios)."""
    return "compression" in law.columns.values()


def refuse_combined(law: Law, frame: pl.DataFrame, source: str) -> None:
    """A law of one compression ratio cannot fit rows of combined runs, which have two."""
    if not reads_one_ratio(law) or "phase" not in frame.columns:
        return
    n = int((frame["phase"].cast(pl.String) == COMBINED_PHASE).sum())
    if n:
        raise ScalelawError(
            f"{source}: {n} rows come from combined runs (phase = {COMBINED_PHASE}), which have "
            f"a prefill and a decode ratio; {law.name} reads one 'compression': fit them with "
            f"{COMBINED_LAW}, or leave them out with --where 'phase!={COMBINED_PHASE}'"
        )


def fit_design(
    law: Law,
    design: Any,
    levels: dict[str, list[str]],
    opts: FitOptions,
    on_priors: PriorHook | None = None,
) -> FitResult:
    """Run one backend on an already bound table."""
    return backend(opts.backend).run(law, design, levels, opts, on_priors)


def backend(name: str) -> Backend:
    """The backend module by name (imported on demand: PyMC loads only for bayes)."""
    import importlib

    if name not in BACKENDS:
        raise ScalelawError(f"unknown backend '{name}' (choose bayes or lsq)")
    return importlib.import_module(f"scalelaw.fits.{name}")  # type: ignore[return-value]


def convergence_problems(result: FitResult) -> list[str]:
    """Why a fit cannot be trusted as an optimum or a posterior; empty when it can."""
    d = result.diagnostics
    out: list[str] = []
    # a parameter that moves no row's mean samples its prior: slow mixing there is no failure
    flat = set(d.get("not_identified", []))
    if result.backend == "bayes":
        rhat = d.get("rhat", {})
        bad = [n for n, v in rhat.items() if v is not None and v > 1.01 and n not in flat]
        if bad:
            out.append(f"R-hat {max(rhat[n] for n in bad):.3f} ({', '.join(bad)})")
        ess = d.get("ess_bulk", {})
        # deferred: heavy (the backends load on demand, see `backend`: bayes loads lmfit)
        from scalelaw.fits.bayes import ess_needed

        needed = ess_needed(d.get("chains", 4), d.get("draws", 1000))
        thin = [n for n, v in ess.items() if v is not None and v < needed and n not in flat]
        if thin:
            out.append(f"ESS {min(ess[n] for n in thin):.0f} ({', '.join(thin)})")
        if d.get("divergences", 0) > 0:
            after = (
                f" after a retry at target_accept {d['retry']['target_accept']:g}"
                if d.get("retry")
                else ""
            )
            out.append(f"{d['divergences']} divergences{after}")
    else:
        out += list(d.get("problems", []))
    r2 = d.get("r2")
    if r2 is not None and r2 == r2 and r2 < 0:
        out.append(f"R^2 {r2:.2f} < 0: worse than a constant")
    return out


def data_warnings(result: FitResult, frame: pl.DataFrame) -> list[str]:
    """Things the data cannot tell, and diagnostics that are off without failing the fit."""
    law = result.law
    d = result.diagnostics
    out = []
    if d.get("not_identified"):
        out.append(
            f"not identified by the table (moves no row's mean): {', '.join(d['not_identified'])}; "
            "harmless for predictions at the table's own covariate values, from the prior "
            "(bayes) or arbitrary (lsq) elsewhere"
        )
    if d.get("bootstrap_capped"):
        out.append(
            f"{d['bootstrap_capped']} of {d.get('bootstrap')} bootstrap refits hit the cap of "
            "evaluations and stopped there, near their optimum (a flat ridge in the law: its "
            "interval may be slightly too narrow)"
        )
    if d.get("refine_capped"):
        best = (
            "the optimum is one of them: it may not be converged"
            if d.get("refine_best_capped")
            else "the optimum came from a refinement that converged"
        )
        out.append(
            f"{d['refine_capped']} of {d.get('refined')} refinements hit the cap of "
            f"{d.get('refine_cap')} evaluations and stopped there; {best}"
        )
    if d.get("at_bounds"):
        out.append(f"parameters at their bounds: {', '.join(d['at_bounds'])}")
    if d.get("pareto_k_bad"):
        out.append(f"{d['pareto_k_bad']} rows with Pareto k > 0.7: PSIS-LOO is unreliable there")
    outside = _mean_outside_unit_interval(result, frame)
    if outside:
        out.append(outside)
    if law.response in frame.columns and frame[law.response].n_unique() == 1:
        out.append(
            f"every row has {law.response} = {frame[law.response][0]:g}: the data cannot tell "
            "how the covariates move it"
        )
    if d.get("loo_error"):
        out.append(f"ELPD-LOO not computed: {d['loo_error']}")
    for name, column in law.columns.items():
        if name in EXACT_COLUMNS:
            continue
        n_levels = frame[column].n_unique()
        if n_levels == 1:
            value = frame[column][0]
            out.append(
                f"covariate {name} ({column}) is {value:g} in every row: the data say nothing "
                f"about how the score moves with {name}, so predictions at other values of "
                f"{name} come from the prior (bayes) or are arbitrary (lsq)"
            )
        elif n_levels < 3:
            out.append(f"covariate {name} has only {n_levels} distinct values (< 3)")
    copies = frame.height - frame.unique().height
    if copies and not result.meta.get("replicates"):
        each = "rows repeat" if copies > 1 else "row repeats"
        counts = "each counts" if copies > 1 else "it counts"
        out.append(
            f"{copies} {each} an earlier row in every column, and {counts} as a measurement of "
            "its own: drop copies, or mark real replicates with a 'run' column"
        )
    return out


def _mean_outside_unit_interval(result: FitResult, frame: pl.DataFrame) -> str | None:
    """A probability law whose fitted mean leaves [0, 1] (an unbounded ceiling, say)."""
    law = result.law
    if not (law.is_count or law.likelihood == "beta") or law.link == "logit":
        return None
    # the rows were validated and bound when the table was loaded: bind once, thin once
    design = bind(law, frame, result.levels, observed=False)
    draws = thin(result.draws, 500)
    outside, cells, low, high = 0, 0, np.inf, -np.inf
    for a, b in row_blocks(design.n, 500):
        mu = mean_response(law, design.rows(a, b), draws)
        outside += int(np.sum((mu < 0) | (mu > 1)))
        cells += mu.size
        low, high = (
            min(low, float(mu.min(initial=np.inf))),
            max(high, float(mu.max(initial=-np.inf))),
        )
    share = outside / max(cells, 1)
    if share == 0:
        return None
    return (
        f"the law's mean leaves [0, 1] in {share:.1%} of draws x rows (from {low:.3g} to "
        f"{high:.3g}); the likelihood clips it, so bound the parameters that scale it "
        "(for example --bounds 'top=0:1')"
    )


# --- how long a fit will take ------------------------------------------------------------------
#: Rough rates of the fitting work, for saying before long work how long it will take. NUTS:
#: seconds per step of one chain, plus seconds per row of such a step; seconds per Bayesian
#: model built, compiled and checked (PSIS-LOO, predictive checks). Least squares: seconds per
#: row and optimiser run (a refinement or a bootstrap refit). From fits of the sparse-frontier
#: law on 2 CPU cores, 48 to 201,600 rows (docs/fitting.md, "Progress, and how long a fit
#: takes"). Rough: a law with more parameters, another machine or a busy one moves them by a
#: factor of a few.
SECONDS_PER_STEP = 5e-4
SECONDS_PER_ROW_STEP = 6.3e-7
SECONDS_PER_MODEL = 12.0
SECONDS_PER_ROW_RUN = 3e-5
#: Work predicted to take at least this many seconds is announced before it starts.
LONG_SECONDS = 20.0


@dataclass(frozen=True)
class Estimate:
    """A rough prediction of a fit's duration (`estimate`), and what it is made of."""

    seconds: float
    why: str

    @property
    def long(self) -> bool:
        return self.seconds >= LONG_SECONDS

    def __str__(self) -> str:
        return f"about {rough_duration(self.seconds)}: {self.why}"


def rough_duration(seconds: float) -> str:
    """'40 s', '2 min', '1.5 h': as precise as a rough rate allows."""
    if seconds < 60:
        return f"{max(1, round(seconds, -1) if seconds >= 10 else round(seconds)):.0f} s"
    if seconds < 3600:
        return f"{round(seconds / 60):.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(rows: int, options: FitOptions, *, forms: int = 1, fits: int = 1) -> Estimate:
    """How long fitting `forms` laws `fits` times each (a family: each form on all rows, then
    once per held-out slice) to a table of `rows` rows will take, from the rough rates above:
    steps x chains (each step costing a constant and a rate per row) per Bayesian fit, rows x
    optimiser runs per least-squares fit."""
    count = forms * fits
    shape = (
        (f"{forms} forms x " if forms > 1 else "")
        + (f"{fits} fits x " if fits > 1 else "")
        + f"{rows} rows"
    )
    if options.backend == "bayes":
        steps = options.tune + options.draws
        per_step = SECONDS_PER_STEP + SECONDS_PER_ROW_STEP * rows
        per_fit = SECONDS_PER_MODEL + per_step * steps * options.chains
        chains = f"{options.chains} chain{'s' if options.chains != 1 else ''}"
        return Estimate(count * per_fit, f"{shape}, {chains} x {steps} steps")
    runs = options.refine + 1 + max(options.bootstrap, 0)
    what = f"{options.refine + 1} refinements + {max(options.bootstrap, 0)} bootstrap refits"
    return Estimate(count * SECONDS_PER_ROW_RUN * rows * runs, f"{shape}, {what}")
