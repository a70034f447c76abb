"""The main job on the embedded default data: simulate -> fit -> predict -> plot.

The data is simulated from the published sparse-frontier-v1 prefill coefficients on the study's
grid, so the fit can be checked against known true values.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from rich.console import Console

from scalelaw.fits import FitOptions, fit, get_card, get_law, predict_table, simulate
from scalelaw.report import print_fit

CARD = "sparse-frontier-v1:prefill"


def run(out: Path, *, seed: int = 0, console: Console | None = None) -> dict[str, float]:
    """Run the quickstart, writing its table, fit and figures under `out`."""
    console = console or Console(emoji=False)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(str(data), get_law("sparse-frontier"), FitOptions(seed=seed))
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

    console.rule("4. plot")
    from scalelaw import plots

    for kind in ("fit", "posterior", "trace", "ppc"):
        path = plots.plot(result, kind, out / f"{kind}.png")
        console.print(f"wrote {path}", markup=False)
    console.print(
        f"fit saved to {fit_path}; try: scalelaw plot {fit_path} --kind fit --out fit.png",
        markup=False,
    )
    return {k: float(np.median(result.draws[k])) for k in truth}
