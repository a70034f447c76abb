"""Commands: laws, fit, predict, simulate, compare, plot, quickstart."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

LawOpt = Annotated[
    str,
    typer.Option(
        "--law",
        "-l",
        help="A built-in law name (see `scalelaw laws`) or an expression such as "
        "'E + A / N**alpha'.",
    ),
]


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _errors() -> tuple[type[BaseException], ...]:
    from scalelaw.data import DataError
    from scalelaw.fits import ExprError, FitFileError, StrictFitError

    return (DataError, ExprError, FitFileError, StrictFitError, ValueError)


def _build_law(
    spec: str,
    covariates: str | None,
    priors: list[str],
    link: str | None,
    likelihood: str | None,
    response: str | None,
    transform: str | None,
    pooling: str | None,
) -> Any:
    from scalelaw.data import parse_assignments
    from scalelaw.fits import Law, resolve_law

    options: dict[str, Any] = {}
    if covariates:
        options["covariates"] = [c.strip() for c in covariates.split(",") if c.strip()]
    law = resolve_law(spec, **options)
    if priors:
        law = law.with_priors(parse_assignments(priors, "--prior"))
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
    from scalelaw.fits import get_law, law_names

    try:
        if name:
            law = get_law(name)
            console.print(f"[bold]{law.name}[/]")
            console.print(f"  formula    : {law.formula or law.expr}")
            console.print(f"  expression : {law.expr}  (link: {law.link})")
            console.print(f"  covariates : {', '.join(law.covariates)}")
            console.print(
                f"  likelihood : {law.likelihood}; response {law.response}"
                + (f" on {law.transform} scale" if law.transform else "")
            )
            for p in law.params:
                bounds = (
                    "" if p.lower is None and p.upper is None else f" in [{p.lower}, {p.upper}]"
                )
                value = law.fixed.get(p.name)
                shown = f" = {value}" if value is not None and not isinstance(value, dict) else ""
                console.print(f"  {p.name:<10} prior {p.prior}{bounds}{shown}")
                if isinstance(value, dict):
                    console.print(
                        "             " + ", ".join(f"{k}: {v:g}" for k, v in value.items())
                    )
            if law.description:
                console.print(f"  {law.description}")
            if law.citation:
                console.print(f"  cite: {law.citation}")
            return
        table = Table("law", "kind", "formula", title="Built-in laws")
        for n in law_names():
            law = get_law(n)
            table.add_row(
                n, "published card" if law.is_published else "form", law.formula or str(law.expr)
            )
        console.print(table)
    except _errors() as exc:
        fail(str(exc))


def fit(
    data: Annotated[
        str, typer.Argument(help="Table file (CSV, Parquet, JSON Lines) or measured:NAME.")
    ],
    law: LawOpt = "sparse-frontier",
    backend: Annotated[
        str, typer.Option(help="bayes (PyMC + nutpie) or lsq (robust least squares).")
    ] = "bayes",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the fit here (NetCDF).")
    ] = None,
    holdout: Annotated[
        str | None, typer.Option(help="Hold out an axis value, e.g. 'N=max', 'L=max', 'C=max'.")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="Keep rows with COLUMN=VALUE (repeatable), e.g. phase=prefill."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="Map a covariate to a column: NAME=COLUMN (repeatable)."),
    ] = None,
    covariates: Annotated[
        str | None, typer.Option(help="Which names of an expression law are covariates, e.g. N,D.")
    ] = None,
    prior: Annotated[
        list[str] | None,
        typer.Option(help="Prior for a parameter, e.g. 'alpha=normal(0, 2)' (repeatable)."),
    ] = None,
    link: Annotated[str | None, typer.Option(help="identity, logit or log.")] = None,
    likelihood: Annotated[
        str | None, typer.Option(help="normal, student_t, binomial, beta_binomial or beta.")
    ] = None,
    response: Annotated[
        str | None, typer.Option(help="Response column (default: the law's, usually score).")
    ] = None,
    transform: Annotated[
        str | None, typer.Option(help="Fit the response on 'log' scale, or 'none'.")
    ] = None,
    pooling: Annotated[
        str | None, typer.Option(help="Group effects: fixed (reference level) or partial.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    chains: Annotated[int, typer.Option(help="MCMC chains (bayes).")] = 4,
    draws: Annotated[int, typer.Option(help="Draws per chain (bayes).")] = 1000,
    tune: Annotated[int, typer.Option(help="Tuning steps per chain (bayes).")] = 1000,
    target_accept: Annotated[float, typer.Option(help="NUTS target acceptance (bayes).")] = 0.9,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap refits for intervals (lsq).")] = 200,
    huber_delta: Annotated[
        float | None,
        typer.Option(help="Huber threshold (lsq); default 1e-3 on log scale, 0.05 otherwise."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Fail (exit 3) when diagnostics are off.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Fit a scaling law to an accuracy table and report parameters and diagnostics.

    Example: scalelaw fit sim.csv --law sparse-frontier --holdout N=max --out fit.nc
    """
    from scalelaw.data import parse_assignments
    from scalelaw.fits import FitOptions, FitWarning, StrictFitError
    from scalelaw.fits import fit as run_fit

    try:
        the_law = _build_law(
            law, covariates, prior or [], link, likelihood, response, transform, pooling
        )
        opts = FitOptions(
            backend=backend,
            seed=seed,
            draws=draws,
            tune=tune,
            chains=chains,
            target_accept=target_accept,
            bootstrap=bootstrap,
            huber_delta=huber_delta,
            strict=strict,
            progressbar=sys.stderr.isatty(),
        )
        # Bayes fits show the sampler's own progress bar; least squares a spinner.
        spinner = console.status(f"fitting {the_law.name} ({backend})", spinner="dots")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", FitWarning)
            if backend != "bayes" or not opts.progressbar:
                spinner.start()
            try:
                result = run_fit(
                    data,
                    the_law,
                    opts,
                    holdout=holdout,
                    column_map=parse_assignments(map_ or [], "--map"),
                    where=parse_assignments(where or [], "--where"),
                )
            finally:
                spinner.stop()
        for w in caught:
            if issubclass(w.category, FitWarning):
                err.print(f"[yellow]warning:[/] {w.message}", highlight=False)
    except StrictFitError as exc:
        fail(f"diagnostics failed under --strict: {exc}", code=3)
    except _errors() as exc:
        fail(str(exc))
    if out:
        result.save(out)
    from scalelaw.report import fit_report

    if fmt == "json":
        print(json.dumps(fit_report(result), indent=2))
    else:
        from scalelaw.report import print_fit

        print_fit(result, console)
    if out:
        console.print(f"saved fit to {out}")


def predict(
    source: Annotated[str, typer.Argument(help="A fit file (.nc) or a published law name.")],
    at: Annotated[
        list[str] | None,
        typer.Option("--at", help="A point, e.g. N=7e9,L=131072,C=10,task=NIAH (repeatable)."),
    ] = None,
    grid: Annotated[
        Path | None, typer.Option(help="A table of points (CSV, Parquet, JSON Lines).")
    ] = None,
    prob: Annotated[float, typer.Option(help="Central interval probability.")] = 0.9,
    samples: Annotated[
        int | None,
        typer.Option(help="Also give the predictive interval of a score over this many samples."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for predictive draws.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Predict the expected score (mean, median, interval) at new configurations.

    Example: scalelaw predict sparse-frontier-v1:prefill --at N=7e9,L=16384,C=1,task=QuALITY
    """
    import polars as pl

    from scalelaw.data import DataError, as_float, parse_assignments, read_frame
    from scalelaw.fits import get_law, load_fit, predict_table

    try:
        src = (
            load_fit(source) if source.endswith(".nc") or Path(source).exists() else get_law(source)
        )
        if grid is not None:
            points = read_frame(grid)
        elif at:
            rows = []
            for i, item in enumerate(at):
                values = parse_assignments([item], "--at")
                row: dict[str, Any] = {}
                for k, v in values.items():
                    try:
                        row[k] = as_float(v, f"--at #{i + 1} {k}")
                    except DataError:
                        row[k] = v
                rows.append(row)
            points = pl.DataFrame(rows)
        else:
            fail("give points with --at or --grid")
            return
        table = predict_table(src, points, prob=prob, samples=samples, seed=seed)
    except _errors() as exc:
        fail(str(exc))
        return
    _emit(table, fmt, f"expected score, {prob:.0%} interval")


def _emit(table: Any, fmt: str, title: str) -> None:
    if fmt == "csv":
        sys.stdout.write(table.write_csv())
    elif fmt == "json":
        print(json.dumps(table.to_dicts(), indent=2))
    elif fmt == "table":
        t = Table(*table.columns, title=title)
        for row in table.iter_rows():
            t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
        console.print(t)
    else:
        fail(f"unknown --format '{fmt}' (table, csv or json)")


def simulate(
    law: LawOpt = "sparse-frontier-v1:prefill",
    grid: Annotated[
        str, typer.Option(help="'paper' (the study's grid) or a table of points.")
    ] = "paper",
    samples: Annotated[int, typer.Option(help="Trials per configuration.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output table (.csv, .parquet, .jsonl).")
    ] = Path("sim.csv"),
) -> None:
    """Simulate an accuracy table from a published law card or a fit file.

    Example: scalelaw simulate --law sparse-frontier-v1:prefill --grid paper --samples 100 --seed 0 --out sim.csv
    """
    from scalelaw.fits import get_law, load_fit
    from scalelaw.fits import simulate as run_simulate

    try:
        src = load_fit(law) if law.endswith(".nc") else get_law(law)
        table = run_simulate(src, grid, samples=samples, seed=seed)
    except _errors() as exc:
        fail(str(exc))
        return
    write_table(table, out)
    console.print(f"wrote {table.height} simulated rows from {law} to {out}")


def write_table(table: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        table.write_parquet(out)
    elif out.suffix in (".jsonl", ".ndjson"):
        table.write_ndjson(out)
    else:
        table.write_csv(out)


def compare(
    data: Annotated[str, typer.Argument(help="Table file or measured:NAME.")],
    law: Annotated[list[str], typer.Option("--law", "-l", help="A law to compare (repeat).")],
    holdout: Annotated[
        str | None, typer.Option(help="Also rank by held-out MAE, e.g. N=max.")
    ] = None,
    where: Annotated[list[str] | None, typer.Option(help="Keep rows with COLUMN=VALUE.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    draws: Annotated[int, typer.Option(help="Draws per chain.")] = 1000,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Rank several laws on the same data by ELPD-LOO and held-out error.

    Example: scalelaw compare sim.csv --law sparse-frontier --law sparse-frontier-nc --holdout C=max
    """
    from scalelaw.data import parse_assignments
    from scalelaw.fits import FitOptions, resolve_law
    from scalelaw.fits import compare as run_compare

    try:
        laws_ = [resolve_law(s) for s in law]
        with console.status("comparing laws") as status:
            table = run_compare(
                data,
                laws_,
                FitOptions(seed=seed, draws=draws, tune=draws),
                holdout=holdout,
                where=parse_assignments(where or [], "--where"),
                progress=lambda n: status.update(f"fitting {n}"),
            )
    except _errors() as exc:
        fail(str(exc))
        return
    _emit(table, fmt, "laws ranked (higher ELPD-LOO is better)")


def plot(
    fit_file: Annotated[Path, typer.Argument(help="A fit file (.nc).")],
    kind: Annotated[str, typer.Option(help="posterior, trace, ppc or fit.")] = "fit",
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("fit.png"),
    data: Annotated[
        str | None, typer.Option(help="Table for --kind fit/ppc (default: the fitted file).")
    ] = None,
) -> None:
    """Draw a fit: posterior densities, traces, posterior predictive check, or data with curves.

    Example: scalelaw plot fit.nc --kind fit --out fit.png
    """
    from scalelaw import plots
    from scalelaw.fits import load_fit

    try:
        result = load_fit(fit_file)
        plots.plot(result, kind, out, data=data)
    except _errors() as exc:
        fail(str(exc))
    console.print(f"wrote {out}")


def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")] = Path(
        "quickstart-out"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the main job end to end on the embedded default data: simulate, fit, predict, plot.

    Example: scalelaw quickstart --out quickstart-out
    """
    from scalelaw.quickstart import run

    try:
        run(out, seed=seed, console=console)
    except _errors() as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add this group's commands to `app`."""
    app.command()(laws)
    app.command()(fit)
    app.command()(predict)
    app.command()(simulate)
    app.command()(compare)
    app.command()(plot)
    app.command()(quickstart)
