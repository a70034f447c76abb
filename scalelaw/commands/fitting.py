"""Commands: laws, fit, predict, simulate, compare, stack, plot, quickstart.

Each command imports the API it calls inside itself, so that `scalelaw --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from scalelaw.commands.common import (
    byte_size,
    check_output,
    console,
    emit,
    err,
    fail,
    in_range,
    messages,
    one_line,
    positive,
    probability,
    refuse_overwrite,
    warn,
)
from scalelaw.commands.common import errors as _errors
from scalelaw.commands.options import (
    FIGURE_FILES,
    FIT_FILES,
    TABLE_FILES,
    Backend,
    ChainsOpt,
    DrawsOpt,
    ForceOpt,
    FormatOpt,
    IntervalProbOpt,
    QuietOpt,
    SeedOpt,
    TableOrJsonOpt,
    TuneOpt,
    new_output,
)
from scalelaw.commands.progress import track

LawOpt = Annotated[
    str,
    typer.Option(
        "--law",
        "-l",
        help="A built-in law name (see `scalelaw laws`) or an expression such as "
        "'E + A / N**alpha'.",
    ),
]


def warn_if_not_converged(src: Any) -> None:
    """predict, plot and frontier say so when the fit behind them did not converge."""
    headline = src.headline() if hasattr(src, "headline") else None
    if headline:
        warn(f"this fit is {headline}")


def _build_law(
    spec: str,
    covariates: str | None,
    priors: list[str] | None,
    bounds: list[str] | None,
    link: str | None,
    likelihood: str | None,
    response: str | None,
    transform: str | None,
    pooling: str | None,
) -> Any:
    from scalelaw.data import parse_assignments, parse_bounds
    from scalelaw.fits import Law, resolve_law

    options: dict[str, Any] = {}
    if covariates:
        options["covariates"] = [c.strip() for c in covariates.split(",") if c.strip()]
    law = resolve_law(spec, **options)
    if priors:
        law = law.with_priors(parse_assignments(priors, "--prior"))
    if bounds:
        law = law.with_bounds(parse_bounds(bounds))
    changes: dict[str, Any] = {}
    for key, value in (
        ("link", link),
        ("likelihood", likelihood),
        ("response", response),
        ("pooling", pooling),
    ):
        if value is not None:
            changes[key] = value
    if transform is not None:
        changes["transform"] = None if transform == "none" else transform
    if changes:
        law = Law.from_dict({**law.to_dict(), **changes, "fixed": {}})
    return law


def laws(
    name: Annotated[str | None, typer.Argument(help="Show one law in full.")] = None,
) -> None:
    """List built-in laws and published law cards, with formulas and citations.

    Example: scalelaw laws sparse-frontier-v1:prefill
    """
    from scalelaw.fits import get_card, get_law, is_card, law_names

    try:
        if name:
            law = get_law(name)
            values = get_card(name).meta["values"] if is_card(name) else {}
            console.print(f"[bold]{escape(name)}[/]" + (" (published card)" if values else ""))
            console.print(f"  formula    : {escape(law.formula or str(law.expr))}")
            console.print(f"  expression : {escape(str(law.expr))}  (link: {law.link})")
            console.print(f"  covariates : {', '.join(law.covariates)}")
            console.print(
                f"  likelihood : {law.likelihood}; response {law.response}"
                + (f" on {law.transform} scale" if law.transform else "")
            )
            for p in law.params:
                bounds = (
                    "" if p.lower is None and p.upper is None else f" in [{p.lower}, {p.upper}]"
                )
                value = values.get(p.name)
                shown = f" = {value}" if value is not None and not isinstance(value, dict) else ""
                console.print(f"  {p.name:<10} prior {p.prior}{bounds}{shown}")
                if isinstance(value, dict):
                    console.print(
                        "             " + ", ".join(f"{k}: {v:g}" for k, v in value.items())
                    )
            if law.description:
                console.print(f"  {escape(law.description)}")
            if law.citation:
                console.print(f"  cite: {escape(law.citation)}")
            return
        table = Table("law", "kind", "formula", title="Built-in laws")
        for n in law_names():
            law = get_law(n)
            table.add_row(
                escape(n),
                "published card" if is_card(n) else "form",
                escape(law.formula or str(law.expr)),
            )
        console.print(table)
    except _errors() as exc:
        fail(str(exc))


# --- fit ---------------------------------------------------------------------------------------
FitDataArg = Annotated[
    str, typer.Argument(help="Table file (CSV, Parquet, JSON Lines) or measured:NAME.")
]
FitLawsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--law",
        "-l",
        metavar="<law>",
        help="A built-in law name (see `scalelaw laws`), an expression such as "
        "'E + A / N**alpha', or 'auto': a family of candidate forms, stacked. Repeat to "
        "stack several (default: sparse-frontier).",
    ),
]
FitBackendOpt = Annotated[
    Backend, typer.Option(help="bayes (PyMC + nutpie) or lsq (robust least squares).")
]
FitOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write the fit here (NetCDF).")]
FitHoldoutOpt = Annotated[
    str | None,
    typer.Option(
        help="Hold out an axis value, e.g. 'N=max', 'L=max', 'C=max'. For a family of "
        "laws it sets the stacking weights: 'auto' (the default) PSIS-LOO inside the "
        "table's ranges and, beyond its largest N, L or C, how the laws extrapolate that "
        "axis; 'loo' PSIS-LOO alone; 'N=max' that one held-out slice."
    ),
]
FitWhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="<condition>",
        help="Keep rows that satisfy a comparison (repeatable, all must hold), e.g. "
        "phase=prefill, 'N<7e10', task!=NIAH.",
    ),
]
ReplicatesOpt = Annotated[
    bool,
    typer.Option(
        "--replicates", help="Repeated configurations are replicate observations, all kept."
    ),
]
AggregateOpt = Annotated[
    Literal["mean"] | None, typer.Option(help="Pool repeated configurations: 'mean'.")
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="<name=column>",
        help="Map a covariate to a column: NAME=COLUMN (repeatable).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(help="Exit 3 when diagnostics are off (after writing --out, if given)."),
]
FitProbOpt = Annotated[
    float, typer.Option(callback=probability, help="Probability of the reported intervals.")
]

# how the law is shaped: fit's --covariates, --prior, --bounds, --link ... --pooling
CovariatesOpt = Annotated[
    str | None, typer.Option(help="Which names of an expression law are covariates, e.g. N,D.")
]
PriorOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="<name=prior>",
        help="Prior for a parameter, e.g. 'alpha=normal(0, 2)' (repeatable).",
    ),
]
BoundsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--bounds",
        metavar="<name=low:high>",
        help="Bounds for a parameter, e.g. 'top=0:1', 'E=0:' (repeatable).",
    ),
]
ShowPriorsOpt = Annotated[
    bool,
    typer.Option(
        "--show-priors",
        help="Print the priors in force (bayes: before sampling; lsq: with the optimum).",
    ),
]
LinkOpt = Annotated[
    Literal["identity", "logit", "log"] | None, typer.Option(help="identity, logit or log.")
]
LikelihoodOpt = Annotated[
    Literal["normal", "student_t", "binomial", "beta_binomial", "logit_normal_binomial", "beta"]
    | None,
    typer.Option(
        help="normal, student_t, binomial, beta_binomial, logit_normal_binomial (counts with lack of fit) or beta."
    ),
]
ResponseOpt = Annotated[
    str | None, typer.Option(help="Response column (default: the law's, usually score).")
]
TransformOpt = Annotated[
    Literal["log", "none"] | None,
    typer.Option(help="Fit the response on 'log' scale, or 'none'."),
]
PoolingOpt = Annotated[
    Literal["fixed", "partial"] | None,
    typer.Option(help="Group effects: fixed (reference level) or partial."),
]

# the sampler and optimiser settings fit has beyond the shared sampler block
TargetAcceptOpt = Annotated[
    float,
    typer.Option(callback=in_range(0.5, 0.999), help="NUTS target acceptance (bayes)."),
]
#: Most bootstrap refits `fit` takes (`scalelaw.fits.fitting.MAX_BOOTSTRAP`, which the Python
#: API checks too; repeated here so that the command line need not import the fits to check).
MAX_BOOTSTRAP = 10_000


def _bootstrap_count(value: int) -> int:
    if value > MAX_BOOTSTRAP:
        raise typer.BadParameter(
            f"{value} refits: at most {MAX_BOOTSTRAP} (each refits the law; a 90% interval "
            "from a few hundred is already steady to two digits)"
        )
    return value


BootstrapOpt = Annotated[
    int,
    typer.Option(
        min=0,
        callback=_bootstrap_count,
        help=f"Bootstrap refits for intervals (lsq), at most {MAX_BOOTSTRAP}.",
    ),
]
HuberDeltaOpt = Annotated[
    float | None,
    typer.Option(
        callback=positive,
        help="Huber threshold (lsq); default 1e-3 on log scale, 0.05 otherwise.",
    ),
]
MaxMemoryOpt = Annotated[
    str,
    typer.Option(
        callback=byte_size,
        help="Memory for (draws x rows) arrays (bayes): above it the pointwise "
        "log-likelihood is not kept and PSIS-LOO runs in blocks of rows.",
    ),
]

# fit's help, given to typer at registration rather than as a docstring: with one line per
# option the signature alone takes half of the 60 lines a command may have
FIT_HELP = """Fit a scaling law to an accuracy table and report parameters and diagnostics.

    Example: scalelaw fit sim.csv --law sparse-frontier --holdout N=max --out fit.nc

    Example: scalelaw fit sim.csv --law auto --out family.nc

    Example: scalelaw fit sim.csv --law auto --holdout loo --out family-loo.nc

    With --law auto (or several --law) every form is fitted and the forms are stacked; the
    stacked fit is written. The weights (--holdout auto, the default): PSIS-LOO inside the
    table's ranges, and for a point beyond its largest N, L or C the weights of that axis held
    out (each form refitted without the largest value and scored there). --holdout loo keeps
    PSIS-LOO everywhere; --holdout N=max uses that held-out slice everywhere. Progress (fit i
    of n, ETA) goes to standard error: a bar on a terminal, else a log line every ~10 s.
    One law shows its steps the same way (least squares: starts, refinements, bootstrap
    refits; bayes: nutpie's bar on a terminal, else a line when sampling starts and ends).
    Work predicted to take 20 s or more is announced first ("about 2 min: ...").

    A fit that fails its diagnostics says NOT CONVERGED (or MISFIT) on its first line; with
    --strict it is still reported and written to --out, then the command exits 3. Priors not
    given are set on the data's scale; --show-priors prints them.
    """


def fit(
    data: FitDataArg,
    law: FitLawsOpt = None,
    backend: FitBackendOpt = "bayes",
    out: FitOutOpt = None,
    holdout: FitHoldoutOpt = None,
    where: FitWhereOpt = None,
    replicates: ReplicatesOpt = False,
    aggregate: AggregateOpt = None,
    map_: MapOpt = None,
    covariates: CovariatesOpt = None,
    prior: PriorOpt = None,
    bounds: BoundsOpt = None,
    show_priors: ShowPriorsOpt = False,
    link: LinkOpt = None,
    likelihood: LikelihoodOpt = None,
    response: ResponseOpt = None,
    transform: TransformOpt = None,
    pooling: PoolingOpt = None,
    seed: SeedOpt = 0,
    chains: ChainsOpt = 4,
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    target_accept: TargetAcceptOpt = 0.9,
    bootstrap: BootstrapOpt = 200,
    huber_delta: HuberDeltaOpt = None,
    strict: StrictOpt = False,
    prob: FitProbOpt = 0.9,
    fmt: TableOrJsonOpt = "table",
    max_memory: MaxMemoryOpt = "2GB",
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    from scalelaw.fits import FitOptions

    if out is not None:  # before the fit, which may take minutes: a bad --out would lose it
        new_output(out, force, FIT_FILES)
    shown = messages(fmt)
    specs = law or ["sparse-frontier"]
    family = _is_family(specs, holdout, locals())
    try:
        options = FitOptions(
            backend=backend, seed=seed, draws=draws, tune=tune, chains=chains,
            target_accept=target_accept, bootstrap=bootstrap, huber_delta=huber_delta,
            progressbar=not (family or quiet) and sys.stderr.isatty(), max_memory=float(max_memory),
        )  # fmt: skip
        if family:  # every form gets the options one law would; progress: law i of n, ETA
            return _fit_family(data, specs, options, holdout, where, out, fmt, strict, quiet)
        the_law = _build_law(
            specs[0], covariates, prior, bounds, link, likelihood, response, transform, pooling
        )
        guess = _say_estimate(data, the_law, options, map_, where, replicates, aggregate, quiet)
        result = _run_fit(
            data, the_law, options, map_, where, holdout=holdout, replicates=replicates,
            aggregate=aggregate, prob=prob, quiet=quiet, guess=guess,
            on_priors=(lambda law, auto: _print_priors(law, auto, shown)) if show_priors else None,
        )  # fmt: skip
    except _errors() as exc:
        fail(str(exc))
    _save_and_report(result, fmt, prob, out, shown, strict)


#: `fit`'s options that shape one law; a family fits each form its own way on the table's own
#: columns, so it refuses them rather than ignore them.
ONE_LAW_OPTIONS = (
    "covariates", "prior", "bounds", "link", "likelihood", "response", "transform", "pooling",
    "map_", "replicates", "aggregate", "show_priors",
)  # fmt: skip


def _is_family(specs: list[str], holdout: str | None, given: dict[str, Any]) -> bool:
    """--law auto or several --law: the forms are fitted and stacked. --holdout auto and loo
    weight such a stack, so they are refused for one law; the options of `given` (the
    command's arguments) that shape one law are refused for a family."""
    if holdout in ("auto", "loo") and "auto" not in specs and len(specs) == 1:
        fail(f"--holdout {holdout} weights the laws of a family: give --law auto or several --law")
    family = "auto" in specs or len(specs) > 1
    named = [f"--{k.rstrip('_').replace('_', '-')}" for k in ONE_LAW_OPTIONS if given.get(k)]
    if family and named:
        fail(
            f"{', '.join(named)} shape{'s' if len(named) == 1 else ''} one law, and a family "
            "(--law auto or several --law) fits each form its own way on the table's own columns; "
            "fit one law with them (--law NAME), or rename the table's columns for --map"
        )
    return family


def _run_fit(
    data: str,
    law: Any,
    options: Any,
    map_: list[str] | None,
    where: list[str] | None,
    *,
    quiet: bool = False,
    guess: float | None = None,
    **how: Any,
) -> Any:
    """One law fitted, its warnings printed after it as one line each: NOT CONVERGED and MISFIT
    in bold red, the rest as warnings. Its progress (`scalelaw.commands.progress`): the steps
    of the fit (least squares: starts, refinements, bootstrap refits; bayes: the start, the
    sampling, PSIS-LOO) as a bar on a terminal or log lines elsewhere; a Bayesian fit on a
    terminal shows the sampler's own bar instead. `guess`: the fit's predicted seconds, the
    ETA until measured rates give one (sampling is one long step)."""
    from dataclasses import replace

    from scalelaw.data import parse_assignments, parse_where
    from scalelaw.fits import FitWarning, NotConvergedWarning
    from scalelaw.fits import fit as run_fit
    from scalelaw.fits.fitting import MisfitWarning

    sampler_bar = options.backend == "bayes" and options.progressbar
    what = f"fitting {law.name} ({options.backend})"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", FitWarning)
        with track(what, quiet=quiet or sampler_bar, unit="steps", hold=True) as tracker:
            if guess is not None:
                tracker.guess(guess)
            result = run_fit(
                data,
                law,
                replace(options, progress=tracker),
                column_map=parse_assignments(map_ or [], "--map"),
                where=parse_where(where or []),
                **how,
            )
    for w in caught:
        if issubclass(w.category, NotConvergedWarning | MisfitWarning):
            err.print(
                str(w.message), markup=False, highlight=False, soft_wrap=True, style="bold red"
            )
        elif issubclass(w.category, FitWarning):
            warn(str(w.message))
    return result


def _say_estimate(
    data: str,
    law: Any,
    options: Any,
    map_: list[str] | None,
    where: list[str] | None,
    replicates: bool,
    aggregate: str | None,
    quiet: bool,
) -> float | None:
    """Before a Bayesian fit predicted to be long, one line on standard error: how long and
    why (`scalelaw.fits.fitting.estimate`); the seconds predicted when said (else None). The
    table is read as the fit reads it, for its number of rows; a table it cannot read is left
    to the fit to refuse."""
    if options.backend != "bayes" or quiet:
        return None
    from scalelaw.data import load_table, parse_assignments, parse_where
    from scalelaw.fits.fitting import estimate

    try:
        rows = load_table(
            data,
            require=list(law.columns.values()),
            labels=list(law.groups.values()),
            response=law.response,
            column_map=parse_assignments(map_ or [], "--map"),
            where=parse_where(where or []),
            replicates=replicates,
            aggregate=aggregate,
        ).height
    except _errors():
        return None
    guess = estimate(rows, options)
    _say(guess)
    return guess.seconds if guess.long else None  # a short run's rates come soon


def _say(guess: Any) -> None:
    if guess.long:
        err.print(str(guess), markup=False, highlight=False, soft_wrap=True)


def _save_and_report(
    result: Any, fmt: str, prob: float, out: Path | None, shown: Any, strict: bool
) -> None:
    """The fit saved to --out, reported as JSON or as tables, then exit 3 under --strict when
    its diagnostics failed."""
    from scalelaw.report import fit_report

    if out:
        try:
            result.save(out)
        except _errors() as exc:
            fail(str(exc))
    if fmt == "json":
        print(json.dumps(fit_report(result, prob), indent=2))
    else:
        from scalelaw.report import print_fit

        print_fit(result, console, prob)
    if out:
        shown.print(f"saved fit to {out}", highlight=False, markup=False)
    if strict and (problems := _diagnostic_problems(result)):
        fail(f"diagnostics failed under --strict: {problems}", code=3)


def _diagnostic_problems(result: Any) -> str:
    """What --strict fails a single-law fit for (as `FitOptions(strict=True)` does): its
    NOT CONVERGED or MISFIT headline and the data warnings; empty when there are none. The fit
    is run without `strict` so that it is reported and written before the command exits 3."""
    headline = result.headline()
    return "; ".join([*([headline] if headline else []), *result.diagnostics["warnings"]])


def _fit_family(
    data: str,
    specs: list[str],
    options: Any,
    holdout: str | None,
    where: list[str] | None,
    out: Path | None,
    fmt: str,
    strict: bool = False,
    quiet: bool = False,
) -> None:
    """`fit --law auto`: the candidate family (and any other --law), stacked, with progress
    (`scalelaw.commands.progress`); under --strict a NOT CONVERGED or MISFIT headline exits 3
    after the file is written."""
    from scalelaw.data import parse_where
    from scalelaw.fits import resolve_law
    from scalelaw.fits.family import AUTO, fit_family

    try:
        extra = [resolve_law(s) for s in specs if s != AUTO]
        guess = None if quiet else _say_family_estimate(data, specs, extra, options, holdout, where)
        with (
            _stacking_warnings(),
            track("fitting the law family", quiet=quiet, unit="fits") as tracker,
        ):
            if guess is not None:  # the ETA before the first of the fits ends
                tracker.guess(guess)
            stacked = fit_family(
                data,
                options,
                laws=None if AUTO in specs else [],
                extra=extra,
                holdout=holdout or AUTO,
                where=parse_where(where or []),
                progress=tracker,
            )
    except _errors() as exc:
        fail(str(exc))
        return
    for note in stacked.meta.get("skipped", []):
        warn(f"left out of the stack: {note}")
    for key in ("disagreement", "weighting"):
        if stacked.meta.get(key):
            warn(stacked.meta[key])
    if not hasattr(stacked, "fits"):  # one law fitted: nothing was stacked
        warn_if_not_converged(stacked)
        _save_and_report(stacked, fmt, 0.9, out, messages(fmt), False)
    else:
        _report_stack(stacked, out, fmt)
    headline = stacked.headline()
    if strict and headline:
        fail(f"diagnostics failed under --strict: {headline}", code=3)


def _say_family_estimate(
    data: str,
    specs: list[str],
    extra: list[Any],
    options: Any,
    holdout: str | None,
    where: list[str] | None,
) -> float | None:
    """Before `fit --law auto` predicted to be long: how long, from the forms the table gets,
    the fits of each (all rows, then once per held-out axis: `fit_family`'s weighting) and
    its rows; the seconds predicted when said (else None)."""
    from scalelaw.data import load_table, parse_where
    from scalelaw.fits.family import AUTO, AXES, LOO, candidates
    from scalelaw.fits.fitting import estimate

    try:
        frame = load_table(data, where=parse_where(where or []))
    except _errors():
        return None
    forms = (len(candidates(frame)) if AUTO in specs else 0) + len(extra)
    held = [c for c in AXES.values() if c in frame.columns and frame[c].n_unique() >= 3]
    weighting = holdout or AUTO
    if weighting == AUTO:
        rounds = len(held) or (0 if options.backend == "bayes" else 1)
    else:
        rounds = 0 if weighting == LOO else 1
    guess = estimate(frame.height, options, forms=forms, fits=1 + rounds)
    _say(guess)
    return guess.seconds if guess.long else None  # a short run's rates come soon


@contextmanager
def _stacking_warnings() -> Iterator[None]:
    """A fit's warning raised by the stacking itself (its optimiser stopped early), printed
    as one `warning:` line once the work is done; other warnings pass as they would."""
    from scalelaw.fits import FitWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FitWarning)
            yield
    finally:
        # after the block, where warnings are shown again rather than recorded into `caught`;
        # the others go back through the filters, so a repeated one is shown once
        seen: dict[Any, Any] = {}
        for w in caught:
            if issubclass(w.category, FitWarning):
                warn(one_line(str(w.message)))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=seen)


def _print_priors(law: Any, auto: list[str], to: Any) -> None:
    t = Table(
        "parameter", "prior", "bounds", "set from", title=f"priors in force: {escape(law.name)}"
    )
    for p in law.params:
        bounds = "" if not p.bounded else f"[{p.lower}, {p.upper}]"
        t.add_row(p.name, str(p.prior), bounds, "the data's scale" if p.name in auto else "the law")
    to.print(t)


def predict(
    source: Annotated[str, typer.Argument(help="A fit file (.nc) or a published law name.")],
    at: Annotated[
        list[str] | None,
        typer.Option(
            "--at",
            metavar="<point>",
            help="A point, e.g. N=7e9,L=131072,C=10,task=NIAH (repeatable).",
        ),
    ] = None,
    grid: Annotated[
        Path | None, typer.Option(help="A table of points (CSV, Parquet, JSON Lines).")
    ] = None,
    prob: IntervalProbOpt = 0.9,
    samples: Annotated[
        int | None,
        typer.Option(
            min=1, help="Also give the predictive interval of a score over this many samples."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for predictive draws.")] = 0,
    fmt: FormatOpt = "table",
) -> None:
    """Predict the expected score (mean, median, interval) at new configurations.

    Example: scalelaw predict sparse-frontier-v1:prefill --at N=7e9,L=16384,C=1,task=QuALITY

    With --samples, also the predictive interval of a new measurement (pred_lower, pred_upper):
    the expectation's uncertainty plus the likelihood's noise. A stacked fit predicts with the
    mixture of its laws.
    """
    from scalelaw.data import read_frame
    from scalelaw.fits import beyond_fitted, predict_table
    from scalelaw.fits import source as load_source

    if grid is not None and at:
        fail("give points with --at or --grid, not both")
    if grid is None and not at:
        fail("give points with --at or --grid")
    try:
        src = load_source(source)
        points = read_frame(grid) if grid is not None else _points(at or [])
        warn_if_not_converged(src)
        table = predict_table(
            src,
            points,
            prob=prob,
            samples=samples,
            seed=seed,
            source=str(grid) if grid is not None else "--at",
        )
        far = beyond_fitted(src, points, str(grid) if grid is not None else "--at")
    except _errors() as exc:
        fail(str(exc))
        return
    if far:
        warn(far)
    emit(table, fmt, f"expected score, {prob:.0%} interval")


def _points(items: list[str]) -> Any:
    """--at points as a frame: a column of numbers where every value reads as one, else text.

    Text in a covariate column (`N=abc`) is then refused by the same checks as a table's rows,
    which name the row (the --at item) and the column.
    """
    import polars as pl

    from scalelaw.data import DataError, as_float, canonical, parse_assignments

    rows = [parse_assignments([item], "--at") for item in items]
    columns: dict[str, list[str | None]] = {k: [] for row in rows for k in row}
    for row in rows:
        for k, values in columns.items():
            values.append(row.get(k))

    def number(v: str | None) -> float | None:
        return None if v is None else as_float(v, "--at")

    frame: dict[str, Any] = {}
    for k, values in columns.items():
        try:
            frame[k] = pl.Series(k, [number(v) for v in values], dtype=pl.Float64)
        except DataError:
            frame[k] = pl.Series(k, values, dtype=pl.String)
    # the table's column names (N -> params): `predict` prints and writes those, whichever
    # name a point used; N and params both given are left for the points' check to refuse
    long = {k: canonical(k) for k in frame if canonical(k) != k and canonical(k) not in frame}
    return pl.DataFrame(frame).rename(long)


def simulate(
    law: LawOpt = "sparse-frontier-v1:prefill",
    grid: Annotated[
        str, typer.Option(help="'paper' (the study's grid) or a table of points.")
    ] = "paper",
    samples: Annotated[int, typer.Option(min=1, help="Trials per configuration.")] = 100,
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output table (.csv, .parquet, .jsonl); required."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the output table if it exists.")
    ] = False,
) -> None:
    """Simulate an accuracy table from a published law card or a fit file.

    Example: scalelaw simulate --law sparse-frontier-v1:prefill --grid paper --samples 100 --seed 0 --out sim.csv

    The table is written to --out only (without it, --force writes sim.csv); an existing
    table is kept (exit 2) unless --force is given.
    """
    from scalelaw.fits import simulate as run_simulate
    from scalelaw.fits import source as load_source

    if out is None:
        out = _default_table(force)
    check_output(out, "--out", TABLE_FILES)
    refuse_overwrite(out, force)
    try:
        src = load_source(law)
        table = run_simulate(src, grid, samples=samples, seed=seed)
    except _errors() as exc:
        fail(str(exc))
        return
    write_table(table, out)
    console.print(
        f"wrote {table.height} simulated rows from {law} to {out}", markup=False, highlight=False
    )


#: The table `simulate --force` writes without --out.
DEFAULT_TABLE = Path("sim.csv")


def _default_table(force: bool) -> Path:
    """No --out: no file the user did not name, unless --force consents to sim.csv."""
    if force:
        return DEFAULT_TABLE
    if DEFAULT_TABLE.exists():
        fail(
            f"no --out given and {DEFAULT_TABLE} exists: name the table to write with --out, "
            f"or give --force to overwrite {DEFAULT_TABLE}"
        )
    fail(
        f"no --out given: name the table to write, e.g. --out {DEFAULT_TABLE} (or give "
        f"--force to write {DEFAULT_TABLE})"
    )


def write_table(table: Any, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        table.write_parquet(out)
    elif suffix in (".jsonl", ".ndjson"):
        table.write_ndjson(out)
    else:
        table.write_csv(out)


# --- compare -----------------------------------------------------------------------------------
CompareDataArg = Annotated[str, typer.Argument(help="Table file or measured:NAME.")]
CompareLawsOpt = Annotated[
    list[str], typer.Option("--law", "-l", metavar="<law>", help="A law to compare (repeat).")
]
CompareHoldoutOpt = Annotated[
    str | None,
    typer.Option(help="Also rank by held-out error, e.g. N=max (with --stack: the weights)."),
]
CompareWhereOpt = Annotated[
    list[str] | None,
    typer.Option(metavar="<condition>", help="Keep rows satisfying a comparison (repeatable)."),
]
CompareBackendOpt = Annotated[Backend, typer.Option(help="bayes or lsq.")]
StackFlagOpt = Annotated[
    bool, typer.Option("--stack", help="Stack the laws and print their weights.")
]
StackOutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="With --stack: write the stacked fit.")
]
CompareDrawsOpt = Annotated[int, typer.Option(min=1, help="Draws per chain.")]


def compare(
    data: CompareDataArg,
    law: CompareLawsOpt,
    holdout: CompareHoldoutOpt = None,
    where: CompareWhereOpt = None,
    backend: CompareBackendOpt = "bayes",
    stack_: StackFlagOpt = False,
    out: StackOutOpt = None,
    seed: SeedOpt = 0,
    draws: CompareDrawsOpt = 1000,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Rank several laws on the same data by ELPD-LOO and held-out error, or stack them.

    Example: scalelaw compare sim.csv --law sparse-frontier --law sparse-frontier-nc --holdout C=max

    Example: scalelaw compare sim.csv -l sparse-frontier -l floor-ceiling --stack --holdout N=max --out stack.nc

    Bayesian fits are ranked by ArviZ's compare: ELPD-LOO and its standard error (se), the
    difference to the best and its standard error (dse), stacking weights, and rows with
    unreliable PSIS-LOO (Pareto k) as a warning. A line under the table says when a near-zero
    weight is a near tie. Progress (law i of n, ETA) goes to standard error; see `--quiet`.
    """
    from scalelaw.data import parse_where
    from scalelaw.fits import FitOptions, resolve_law
    from scalelaw.fits import compare as run_compare
    from scalelaw.fits.stacking import stack_laws

    if out is not None:
        if not stack_:
            fail("--out writes the stacked fit: give --stack with it")
        new_output(out, force, FIT_FILES)
    options = FitOptions(backend=backend, seed=seed, draws=draws, tune=draws)
    try:
        laws_ = [resolve_law(s) for s in law]
        conditions = parse_where(where or [])
        total = None if stack_ else len(laws_)  # stack_laws counts its fits and refits
        with (
            _stacking_warnings(),
            track("comparing laws", total, quiet=quiet, unit="fits") as tracker,
        ):
            if stack_:
                stacked = stack_laws(
                    data, laws_, options, holdout=holdout, where=conditions, progress=tracker
                )
            else:
                table = run_compare(
                    data, laws_, options, holdout=holdout, where=conditions,
                    progress=lambda n: tracker(f"fitting {n}"),
                )  # fmt: skip
    except _errors() as exc:
        fail(str(exc))
        return
    if stack_:
        _report_stack(stacked, out, fmt)
    else:
        _report_compare(table, fmt)


def _report_compare(table: Any, fmt: str) -> None:
    """The ranked table, then one line per note (on standard error under CSV or JSON, so that
    standard output stays a table)."""
    from scalelaw.fits.validation import compare_notes

    if "elpd_loo" in table.columns:
        title = "laws ranked by ELPD-LOO (higher is better; rank 0 is the best)"
    elif "holdout_mae" in table.columns:
        title = "laws ranked by held-out MAE (lower is better)"
    else:
        title = "laws, in the order given"
    emit(table, fmt, title)
    out = messages(fmt)
    for note in compare_notes(table):
        out.print(note, markup=False, highlight=False, soft_wrap=True)


def _report_stack(stacked: Any, out: Path | None, fmt: str) -> None:
    from scalelaw.fits.stacking import weights_table

    warn_if_not_converged(stacked)
    emit(weights_table(stacked), fmt, f"stacking weights from {stacked.method}")
    if out:
        try:
            stacked.save(out)
        except _errors() as exc:
            fail(str(exc))
        messages(fmt).print(f"saved stacked fit to {out}", markup=False, highlight=False)


def stack(
    fits: Annotated[list[Path], typer.Argument(help="Fit files (.nc) of the same table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the stacked fit here.")],
    holdout: Annotated[
        str | None,
        typer.Option(
            help="Weights from held-out log predictive density on this slice (N=max, L=max, "
            "C=max); default: PSIS-LOO."
        ),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="The table (default: the file the fits were made on).")
    ] = None,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Stack fits of one table into one fit whose predictions mix the laws by weight.

    Example: scalelaw stack loglinear.nc ceiling.nc --holdout N=max --out stack.nc

    Without --holdout the weights come from PSIS-LOO (interpolation); with it, every law is
    refitted without the held-out slice and weighted by how well it predicts that slice
    (extrapolation), with progress (refit i of n, ETA) on standard error. predict, plot
    --kind fit and frontier accept the stacked file.
    """
    from scalelaw.fits import load_fit
    from scalelaw.fits.stacking import stack as run_stack

    if data is not None and holdout is None:
        fail("--data is read only with --holdout (PSIS-LOO weights need no refit)")
    twice = [f for i, f in enumerate(fits) if f.resolve() in {g.resolve() for g in fits[:i]}]
    if twice:  # one law twice would take two weights as if two forms agreed
        fail(f"{twice[0]}: given twice; stack each fit once")
    new_output(out, force, FIT_FILES)
    try:
        loaded = [load_fit(f) for f in fits]
        # PSIS-LOO weights refit nothing: progress only for held-out refits
        with (
            _stacking_warnings(),
            track("stacking", quiet=quiet or holdout is None, unit="refits") as tracker,
        ):
            stacked = run_stack(loaded, data=data, holdout=holdout, progress=tracker)
    except _errors() as exc:
        fail(str(exc))
        return
    _report_stack(stacked, out, fmt)


def plot(
    fit_file: Annotated[Path, typer.Argument(help="A fit file (.nc).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Figure to write (PNG, PDF or SVG).")],
    kind: Annotated[
        Literal["posterior", "trace", "ppc", "fit"],
        typer.Option(help="posterior, trace, ppc or fit."),
    ] = "fit",
    data: Annotated[
        str | None, typer.Option(help="Table for --kind fit/ppc (default: the fitted file).")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Draw a fit: posterior densities, traces, posterior predictive check, or data with curves.

    Example: scalelaw plot fit.nc --kind fit --out fit.png
    """
    from scalelaw import plots
    from scalelaw.fits import load_fit

    new_output(out, force, FIGURE_FILES)
    try:
        result = load_fit(fit_file)
        warn_if_not_converged(result)
        plots.plot(result, kind, out, data=data)
    except _errors() as exc:
        fail(str(exc))
    console.print(f"wrote {out}", markup=False, highlight=False)


def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")] = Path(
        "quickstart-out"
    ),
    seed: SeedOpt = 0,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Overwrite earlier outputs in a folder other than quickstart-out."
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the main job end to end on the embedded default data: simulate, fit, predict, plot.

    Example: scalelaw quickstart --out quickstart-out

    It rewrites its own files in quickstart-out (so it can be rerun); in another folder an
    existing output stops it unless --force. Progress of the fit and the figures goes to
    standard error (a bar on a terminal, log lines elsewhere); see --quiet.
    """
    from scalelaw.quickstart import run

    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; give a folder for the outputs")
    try:
        progress = partial(track, quiet=quiet)
        run(out, seed=seed, console=console, progress=progress, overwrite=force)
    except _errors() as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.command()(laws)
    app.command(help=FIT_HELP)(fit)
    app.command()(predict)
    app.command()(simulate)
    app.command()(compare)
    app.command()(stack)
    app.command()(plot)
    app.command()(quickstart)
