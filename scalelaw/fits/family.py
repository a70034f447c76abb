"""Law families: the candidate forms fitted and stacked when the user does not pin one law.

A researcher rarely knows the law's form, and a single wrong form gives confident, wrong
answers off the grid. `candidates` builds the forms that suit a table's columns (only the axes
that vary enter; a slope of an axis that never moves is not identified and is left out) and
`fit_family` fits each one and stacks them (`scalelaw.fits.stacking`), so predictions and
decisions carry the doubt about the form. For accuracy over N, L and C the family holds:

* ``log-linear``: the reference study's law, logit(score) = eps + alpha ln N + beta ln L
  + gamma ln C + delta[task];
* ``size-compression``: the compression slope moves with ln N as well;
* ``task-slopes``: each task its own size and length slopes (benchmarks whose categories
  saturate at different sizes, or move in opposite directions with length);
* ``task-ceilings``: each task saturates at its own ceiling, with its own length slope;
* ``floor-ceiling``: accuracy between a floor and a ceiling below 1 (Ruan et al. 2024);
* ``tolerance``: flat in C up to a tolerance C*(N, L), then declining.

Expanded, not only stacked. When both L and C vary, every form's compression slope moves with
length: gamma becomes gamma + kappa ln(L / L0), L0 the table's central length, the study's
"longer sequences tolerate sparsity differently". kappa = 0 is the form as published, so a
form loses little when the slope is constant (kappa's posterior sits at 0, and its width is the
doubt a decision at 8x the longest measured length must carry), while a family of one-slope
forms stacked by how well they fit the grid puts its weight on a form that is certain of a
slope it cannot know off the grid (docs/frontier.md measures both families).

Count tables get the logit-normal binomial (`scalelaw.fits.lack_of_fit`), so each form's
intervals include how far it misses the configurations; score-only tables a normal likelihood.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaw.data import load_table
from scalelaw.errors import ScalelawError
from scalelaw.fits import lack_of_fit
from scalelaw.fits.catalog import SPARSE_FRONTIER_CITATION, SPARSE_PRIORS, TOLERANCE_PRIORS
from scalelaw.fits.catalog import source as load_source
from scalelaw.fits.fitting import FitOptions, FitWarning, fit
from scalelaw.fits.law import Law
from scalelaw.fits.points import as_frame
from scalelaw.fits.progress import announce, messages_only
from scalelaw.fits.stacking import StackedFit, stack

#: The name that asks for the family instead of one law (``scalelaw fit TABLE --law auto``),
#: and the family's default weighting (PSIS-LOO inside the ranges, held out per axis beyond).
AUTO = "auto"
#: The weighting by PSIS-LOO alone (interpolation), for Bayesian fits.
LOO = "loo"
#: Axes of the accuracy laws: law covariate -> table column.
AXES = {"N": "params", "L": "seq_len", "C": "compression"}
#: Suffixes of data tables: a source with one of these is fitted, not loaded as a fit.
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson")
#: Agreement between PSIS-LOO and held-out weights below which the report says they disagree.
DISAGREE = 0.3


#: A progress callback: called with a message before each step (see `fit_family`).
Progress = Callable[[str], None]
_REPORTING: ContextVar[Progress | None] = ContextVar("scalelaw_family_progress", default=None)


class FamilyError(ScalelawError):
    """No candidate form suits the table, or none could be fitted."""


def _varying(frame: pl.DataFrame) -> list[str]:
    return [a for a, c in AXES.items() if c in frame.columns and frame[c].n_unique() > 1]


def _likelihood(frame: pl.DataFrame) -> str:
    return lack_of_fit.NAME if "samples" in frame.columns else "normal"


def candidates(
    frame: pl.DataFrame, likelihood: str | None = None, *, expand: bool = True
) -> list[Law]:
    """The family's forms for this table (see the module's text), on its varying axes.

    `expand=False` keeps each form's one compression slope and adds the length-dependent slope
    as a form of its own (``length-compression``), the family before the expansion."""
    axes = _varying(frame)
    if not axes:
        raise FamilyError(
            "no axis varies in the table (params, seq_len, compression): there is no law to fit"
        )
    tasks = "task" in frame.columns and frame["task"].n_unique() > 1
    lik = likelihood or _likelihood(frame)
    slope = {"N": "alpha * log(N)", "L": "beta * log(L)", "C": "gamma * log(C)"}
    offset = " + delta[task]" if tasks else ""

    def linear(drop: str = "", **replace: str) -> str:
        terms = [replace.get(a, slope[a]) for a in axes if a != drop]
        return " + ".join(["eps", *terms]) + offset

    priors = {**SPARSE_PRIORS, "kappa": "normal(0, 2)", "kappaN": "normal(0, 2)"}
    reference = {"task": "QuALITY"} if tasks else {}
    # the compression slope of every form moves with length (module text), centred so that
    # gamma stays the slope at a length inside the table and the two are not confounded
    moves = expand and "C" in axes and "L" in axes
    length = f"log(L / {central(frame['seq_len'])})" if moves else ""
    if moves:
        slope["C"] = f"(gamma + kappa * {length}) * log(C)"

    def make(name: str, expr: str, description: str, **extra: Any) -> Law:
        used = [a for a in AXES if a in axes]
        if moves:
            description += " Its compression slope moves with length (kappa; 0: it does not)."
        law = Law.from_string(
            expr,
            name=f"{AUTO}:{name}",
            covariates=tuple(used),
            priors={
                k: v
                for k, v in {**priors, **extra.pop("priors", {})}.items()
                if re.search(rf"\b{k}\b", expr)
            },
            link=extra.pop("link", "logit"),
            likelihood=lik,
            reference=reference,
            description=description,
            citation=SPARSE_FRONTIER_CITATION,
            **extra,
        )
        return law

    laws = [make("log-linear", linear(), "The reference study's log-linear law on the logit.")]
    if "C" in axes and "N" in axes:
        size = f"log(N / {central(frame['params'])})"
        laws.append(
            make(
                "size-compression",
                linear() + f" + kappaN * {size} * log(C)",
                "The compression slope moves with model size: + kappaN ln(N / N0) ln C.",
            )
        )
    if not moves and "C" in axes and "L" in axes:  # the expansion, as one form among others
        laws.append(
            make(
                "length-compression",
                linear() + f" + kappa * log(L / {central(frame['seq_len'])}) * log(C)",
                "The compression slope moves with length: + kappa ln(L / L0) ln C.",
            )
        )
    if tasks and ("N" in axes or "L" in axes):
        per_task = {a: f"{slope[a].split()[0]}[task] * log({a})" for a in ("N", "L") if a in axes}
        laws.append(
            make(
                "task-slopes",
                linear(**per_task),
                "Each task its own size and length slopes: benchmarks whose tasks saturate "
                "at different sizes or move apart with length.",
                priors={"alpha": "normal(0, 5)", "beta": "normal(0, 5)"},
            )
        )
    if tasks:
        per_length = {"L": "beta[task] * log(L)"} if "L" in axes else {}
        laws.append(
            make(
                "task-ceilings",
                f"ceiling[task] * sigmoid({linear(**per_length)})",
                "Each task saturates at its own ceiling (and has its own length slope): "
                "benchmarks whose tasks plateau at different levels as models grow.",
                link="identity",
                priors={"ceiling": "uniform(0, 1)", "beta": "normal(0, 5)"},
                bounds={"ceiling": (0.0, 1.0)},
            )
        )
    laws.append(
        make(
            "floor-ceiling",
            f"floor + (ceiling - floor) * sigmoid({linear()})",
            "Accuracy rises from a floor towards a ceiling below 1 along a sigmoid.",
            link="identity",
            priors={"floor": "uniform(0, 0.5)", "ceiling": "uniform(0.5, 1)"},
            bounds={"floor": (0.0, 0.5), "ceiling": (0.5, 1.0)},
        )
    )
    if "C" in axes:
        hinge = "log(C) - tau0" + "".join(
            {"N": " - tauN * log(N / 1e9)", "L": " - tauL * log(L / 16384)"}[a]
            for a in axes
            if a != "C"
        )
        # kappa keeps its sign across the family: below 0, the slope of ln C steepens with L
        decline = f"(gamma - kappa * {length})" if moves else "gamma"
        laws.append(
            make(
                "tolerance",
                linear(drop="C") + f" - {decline} * softplus(4 * ({hinge})) / 4",
                "Flat in C up to a tolerance C*(N, L), then declining by gamma per ln C.",
                priors=TOLERANCE_PRIORS,
                bounds={"gamma": (0.0, None)},
            )
        )
    return laws


def central(values: pl.Series) -> str:
    """A round value at the centre of an axis (the power of two nearest the geometric mean of
    its distinct values; two significant digits for sizes), where a slope is referred to."""
    distinct = np.unique(values.cast(pl.Float64).to_numpy())
    middle = float(np.exp(np.mean(np.log(distinct))))
    if values.name == "seq_len":
        return str(int(2 ** round(np.log2(middle))))
    return f"{float(f'{middle:.2g}'):.3g}"


def fit_family(
    data: Any,
    options: Any = None,
    *,
    laws: Sequence[Law] | None = None,
    extra: Sequence[Law] = (),
    holdout: str | None = AUTO,
    where: Any = None,
    progress: Callable[[str], None] | None = None,
    expand: bool = True,
) -> Any:
    """Fit every candidate form (and the user's `extra` laws) and stack them.

    Weights, by default (``holdout="auto"``): PSIS-LOO inside the table's ranges, and for a
    point beyond the largest N, L or C the weights held out on that axis (every form refitted
    without the largest value and scored there): how each form extrapolates that axis, which
    is what a prediction off the grid asks. An axis joins when it takes at least three values;
    a table with none falls back to PSIS-LOO (least squares: ``N=max``), with a note in
    ``meta["weighting"]``. ``holdout="loo"`` (or None) asks for PSIS-LOO alone, ``"N=max"``
    for one held-out slice everywhere; the report notes where two weightings disagree.
    Least-squares fits have no PSIS-LOO: inside the ranges they take the axes' held-out
    weights averaged. `expand=False` fits the one-slope forms (`candidates`). A law that
    cannot be fitted is left out with a note (``meta["skipped"]``); when only one law fitted,
    that fit is returned as it is.

    `progress` (default: the one set by `reporting`) is called with a message before each fit
    and each held-out refit ("fitting auto:tolerance (6 of 6)", "refitting auto:log-linear
    without N=max (1 of 6)"); one with an `expect` method is told how many steps are to come
    (`scalelaw.fits.progress.announce`).
    """
    progress = progress or _REPORTING.get()

    opts = options or FitOptions()
    frame = load_table(as_frame(data), where=where)  # a pandas frame or a dict of columns too
    forms = list(laws) if laws is not None else candidates(frame, expand=expand)
    forms += list(extra)
    if holdout == LOO:
        holdout = None
    if holdout is None and opts.backend == "lsq":
        raise FamilyError("least-squares fits have no PSIS-LOO: use --holdout auto or N=max")
    weighting = None
    if holdout == AUTO and not _held_axes(frame):
        weighting = (
            "no axis (N, L or C) takes three values to hold out: "
            + ("PSIS-LOO weights" if opts.backend == "bayes" else "weights held out at N=max")
            + " everywhere"
        )
        holdout = None if opts.backend == "bayes" else "N=max"
    # each form is fitted, then refitted once per held-out slice that weights the stack
    rounds = 0 if holdout is None else len(_held_axes(frame)) if holdout == AUTO else 1
    announce(progress, len(forms) * (1 + rounds))
    fits, skipped = [], []
    for i, law in enumerate(forms, 1):
        if progress:
            progress(f"fitting {law.name} ({i} of {len(forms)})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                fits.append(fit(frame, law, opts))
        except (ScalelawError, RuntimeError, ValueError, FloatingPointError) as exc:
            skipped.append(f"{law.name}: {str(exc).splitlines()[0]}")
            announce(progress, -rounds)  # a form left out is not refitted
    if len(fits) == 1:
        announce(progress, -rounds)
    if not fits:
        raise FamilyError("no candidate law could be fitted: " + "; ".join(skipped))
    if len(fits) == 1:  # nothing to stack: the one law that fitted, with the others' notes
        fits[0].meta["skipped"] = skipped
        return fits[0]
    source = data if isinstance(data, str) else "<table>"
    for f in fits:
        f.meta["source"] = str(source)
    if holdout == AUTO:
        stacked = extrapolation_stack(fits, frame, opts, progress)
    else:
        stacked = stack(
            fits,
            data=frame,
            holdout=holdout,
            options=opts,
            progress=messages_only(progress),
        )
    stacked.meta["skipped"] = skipped
    stacked.meta["family"] = AUTO if laws is None else "given"
    if weighting:
        stacked.meta["weighting"] = weighting
    if holdout not in (None, AUTO) and opts.backend == "bayes":
        loo = stack(fits).weights
        gap = float(np.max(np.abs(loo - stacked.weights)))
        stacked.meta["loo_weights"] = [float(w) for w in loo]
        if gap > DISAGREE:
            stacked.meta["disagreement"] = (
                f"PSIS-LOO and held-out ({holdout}) weights disagree by up to {gap:.2f}: the "
                "forms that fit the grid best are not those that extrapolate best"
            )
    return stacked


def extrapolation_stack(
    fits: list[Any], frame: pl.DataFrame, opts: Any, progress: Callable[[str], None] | None
) -> Any:
    """PSIS-LOO weights inside the ranges, held-out weights per axis beyond them. `progress`
    is called before each refit; the caller announces them (one per fit and held axis)."""
    axes = _held_axes(frame)
    if not axes:
        raise FamilyError(
            "--holdout auto needs an axis (N, L or C) with at least three values to hold out"
        )
    held = {}
    for axis, column in axes:
        spec = f"{axis}=max"
        held[column] = stack(
            fits,
            data=frame,
            holdout=spec,
            options=opts,
            progress=messages_only(progress),
        )
    if opts.backend == "bayes":
        stacked = stack(fits)
    else:  # no PSIS-LOO for least squares: inside the ranges, the axes' weights averaged
        first = next(iter(held.values()))
        stacked = StackedFit(
            fits,
            np.mean([h.weights for h in held.values()], axis=0),
            "held-out weights averaged over " + ", ".join(a for a, _ in axes),
            # the first axis's held-out scores would read as the averaged weights' scores
            meta={k: v for k, v in first.meta.items() if k != "scores"},
        )
    stacked.meta["holdout"] = AUTO
    notes = []
    for (axis, column), h in zip(axes, held.values(), strict=True):
        largest = float(frame[column].max())  # type: ignore[arg-type]
        stacked.extrapolation[column] = (largest, h.weights)
        gap = float(np.max(np.abs(h.weights - stacked.weights)))
        if gap > DISAGREE:
            notes.append(f"{axis} by up to {gap:.2f}")
    if notes:
        stacked.meta["disagreement"] = (
            "the weights beyond the table's range differ from those inside it ("
            + "; ".join(notes)
            + "): the forms that fit the grid best are not those that extrapolate best"
        )
    return stacked


@contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Inside the block, `fit_family` calls without a `progress` of their own report to this
    one: how a command shows the progress of a family fitted deep inside another function
    (`scalelaw.frontier.decide` given a table)."""
    token = _REPORTING.set(progress)
    try:
        yield
    finally:
        _REPORTING.reset(token)


def _held_axes(frame: pl.DataFrame) -> list[tuple[str, str]]:
    """The axes whose largest value can be held out with two values left to fit a slope."""
    return [(a, c) for a, c in AXES.items() if c in frame.columns and frame[c].n_unique() >= 3]


def is_table(source: Any) -> bool:
    """A data table rather than a fit: a polars frame or a path with a table's suffix."""
    if isinstance(source, pl.DataFrame):
        return True
    return isinstance(source, str | Path) and Path(source).suffix.lower() in TABLE_SUFFIXES


def load_or_fit(source: Any, options: Any = None, progress: Progress | None = None) -> Any:
    """What `decide`, `plan` and their commands predict with: a fit, a stacked fit or a card as
    given (or by file or card name), and a data table fitted with the whole family (`progress`
    as `fit_family`'s)."""
    if is_table(source):
        return fit_family(source, options, progress=progress)
    return load_source(str(source)) if isinstance(source, str | Path) else source


__all__ = [
    "AUTO",
    "LOO",
    "FamilyError",
    "candidates",
    "extrapolation_stack",
    "fit_family",
    "is_table",
    "load_or_fit",
    "reporting",
]
