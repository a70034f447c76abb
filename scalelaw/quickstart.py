"""The main job on the embedded default data: simulate -> fit -> predict -> plot.

The data is simulated from the published sparse-frontier-v1 prefill coefficients on the study's
grid, so the fit can be checked against known true values.

Its first line says which files it writes where. It overwrites them in its own folder (named
`quickstart-out`, the default), so that it can be run again; elsewhere an existing one stops it
before any work unless `overwrite` is given, since a folder the user names may hold files of
the same names that are not the quickstart's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from scalelaw.errors import ScalelawError
from scalelaw.fits import (
    FitOptions,
    beyond_fitted,
    fit,
    get_card,
    get_law,
    predict_table,
    simulate,
)
from scalelaw.fits.fitting import estimate, rough_duration
from scalelaw.report import print_fit

CARD = "sparse-frontier-v1:prefill"
#: the quickstart's own folder, where it overwrites what an earlier run wrote
DEFAULT_OUT = Path("quickstart-out")
FIGURES = ("fit", "posterior", "trace", "ppc")
OUTPUTS = ("sim.csv", "fit.nc", *(f"{kind}.png" for kind in FIGURES))

#: `progress(what, total, unit=...)`: a context yielding `step(message)`, called as each step
#: begins (`scalelaw.commands.progress.track` has this form)
Progress = Callable[..., AbstractContextManager[Callable[[str], Any]]]


@contextmanager
def _no_progress(what: str, total: int | None = None, **_: Any) -> Iterator[Callable[[str], Any]]:
    yield lambda message: None


def check_out(out: Path, overwrite: bool = False) -> list[Path]:
    """The files the quickstart will write under `out`; an error naming the first that exists
    already, unless `out` is the quickstart's own folder or `overwrite` is given."""
    paths = [out / name for name in OUTPUTS]
    if out.exists() and not out.is_dir():
        raise ScalelawError(f"--out {out}: is a file; give a folder for the outputs")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite and out.name != DEFAULT_OUT.name:
        raise ScalelawError(
            f"{existing[0]}: exists; the quickstart overwrites its outputs only in a folder "
            f"named {DEFAULT_OUT.name}: give an empty or new folder"
        )
    return paths


def run(
    out: Path,
    *,
    seed: int = 0,
    console: Console | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> dict[str, float]:
    """Run the quickstart, writing its table, fit and figures under `out` (see the module's
    text for which existing files it overwrites). `progress` shows the fit and the figures as
    they are made (the command line passes `track`: a bar on a terminal, log lines elsewhere);
    without it nothing is shown but the report."""
    console = console or Console(emoji=False)
    step = progress or _no_progress
    paths = check_out(out, overwrite)
    console.print(
        f"The quickstart writes {', '.join(p.name for p in paths)} into {out}/ (files of these "
        "names left there by an earlier run are overwritten; nothing else is touched).",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    card = get_card(CARD)
    console.rule("1. simulate")
    console.print(
        f"The data below is SIMULATED from the published coefficients of {CARD} "
        "(Nawrot et al. 2025, v1 Table 3) on the study's grid: 4 Qwen2.5 sizes x 4 lengths x "
        "11 compression ratios x 9 tasks, 100 samples per configuration."
    )
    table = simulate(card, "paper", samples=100, seed=seed)
    data = out / "sim.csv"
    table.write_csv(data)
    console.print(f"wrote {table.height} rows to {data}", markup=False)

    console.rule("2. fit (PyMC + nutpie, binomial likelihood)")
    options = FitOptions(seed=seed)
    guess = estimate(table.height, options)
    console.print(
        f"{options.chains} chains x {options.draws} draws after {options.tune} tuning steps on "
        f"{table.height} rows: about {rough_duration(guess.seconds)} (a rough rate: longer on a "
        "busy machine)."
    )
    with (
        step("quickstart: fitting", 1, unit="fits") as begin,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        if hasattr(begin, "guess"):  # the ETA of the one long step, before it ends
            begin.guess(guess.seconds)
        begin(f"sparse-frontier on {data.name}")
        result = fit(str(data), get_law("sparse-frontier"), options)
    fit_path = result.save(out / "fit.nc")
    print_fit(result, console)
    truth = {k: float(card.draws[k][0]) for k in ("eps", "alpha", "beta", "gamma")}
    console.print("true values: " + ", ".join(f"{k} = {v:g}" for k, v in truth.items()))
    covered = {
        k: bool(result.interval(k)[0] <= v <= result.interval(k)[1]) for k, v in truth.items()
    }
    console.print(
        "90% intervals contain the truth: "
        + ", ".join(f"{k} {'yes' if c else 'NO'}" for k, c in covered.items())
    )

    console.rule("3. predict where nobody measured")
    points = {
        "N": [7e9, 7e9, 72e9],
        "L": [262144.0] * 3,
        "C": [1.0, 10.0, 10.0],
        "task": ["QuALITY"] * 3,
    }
    pred = predict_table(result, points, prob=0.9, samples=100)
    console.print(pred)
    far = beyond_fitted(result, points)
    if far:  # every point is, by design: the intervals hold the parameters' doubt, not the form's
        console.print(f"note: {far}", markup=False, highlight=False)

    console.rule("4. plot")
    from scalelaw import plots  # deferred: matplotlib and ArviZ (about 1.4 s)

    with step("quickstart: drawing figures", len(FIGURES), unit="figures") as begin:
        for kind in FIGURES:
            begin(f"{kind}.png")
            path = plots.plot(result, kind, out / f"{kind}.png")
            console.print(f"wrote {path}", markup=False)
    console.print(
        f"fit saved to {fit_path}; try: scalelaw plot {fit_path} --kind fit --out fit.png",
        markup=False,
    )
    return {k: float(np.median(result.draws[k])) for k in truth}
