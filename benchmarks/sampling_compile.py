"""What compiling a Bayesian fit's model once saves: `pm.sample` (which compiles the model for
every call) against the backend's `compile_model` + `sample`, for a run and its retry.

Each law is sampled twice per path on the same table and settings (the retry reuses the
first run's settings here, so both paths sample exactly the same chains), in the same process,
the two paths alternating after one untimed round; the draws are checked to be identical and the ratio is printed.

    python benchmarks/sampling_compile.py [--laws sparse-frontier,floor-ceiling] [--repeats 2]
                                          [--rows 297] [--chains 2] [--draws 500]

The table is the decision benchmark's (`benchmarks/decision_calibration.py`: the floor truth,
Qwen2.5 7B-32B x 16K-64K x 11 ratios x 3 tasks, 50 samples a row, seed 3), cut to `--rows`.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import decision_calibration as dc

from scalelaw.fits import FitOptions, bayes, get_law, simulate
from scalelaw.fits.defaults import resolve_priors
from scalelaw.fits.design import bind, group_levels


def prepared(name: str, rows: int, seed: int) -> tuple[Any, Any, dict[str, Any] | None]:
    """The law with its priors resolved, its design, and its chains' start (the least-squares
    optimum, for a law that is not sampled centred), as the backend prepares them."""
    frame = simulate(dc.truth("floor"), dc.grid(), samples=50, seed=3).head(rows)
    law = get_law(name)
    design = bind(law, frame, group_levels(law, frame))
    options = FitOptions(backend="bayes", seed=seed)
    optimum, noise = bayes.least_squares_start(law, design, options)
    law, _ = resolve_priors(law, design, optimum)
    start = (
        None
        if bayes.is_centred(law)
        else bayes.start_values(law, design, optimum, noise, options.seed)
    )
    return law, design, start


def with_pm_sample(law: Any, design: Any, start: Any, settings: Any) -> list[Any]:
    import pymc as pm

    out = []
    for _ in range(2):
        model = bayes.build_model(law, design)
        free = {v.name for v in model.free_RVs}
        with model:
            idata = pm.sample(
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                random_seed=settings.seed,
                nuts_sampler="nutpie",
                progressbar=False,
                nuts={"target_accept": settings.target_accept, **settings.nuts_extra},
                compute_convergence_checks=False,
                initvals={k: v for k, v in (start or {}).items() if k in free} or None,
                compile_kwargs={"jitter_rvs": set()} if start else None,
            )
        pm.compute_log_likelihood(idata, model=model, progressbar=False)
        out.append(idata)
    return out


def compiled_once(law: Any, design: Any, start: Any, settings: Any) -> list[Any]:
    compiled = bayes.compile_model(law, design, start)
    return [bayes.sample(law, design, settings, initvals=start, compiled=compiled) for _ in "ab"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--laws", default="sparse-frontier,floor-ceiling")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=297)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("pymc.sampling.mcmc").setLevel(
        logging.WARNING
    )  # pm.sample's line naming variables
    print(
        f"{args.rows} rows, {args.chains} chains x {args.draws} draws + {args.draws} tuning, "
        f"a run and a retry per fit, {args.repeats} timed repeats (median)\n"
    )
    print("| law | pm.sample twice | compiled once, sampled twice | ratio | same draws |")
    print("|---|---|---|---|---|")
    for name in args.laws.split(","):
        law, design, start = prepared(name, args.rows, seed=3)
        settings = bayes.SampleSettings(args.draws, args.draws, args.chains, seed=3)
        if start:  # a non-linear law: nutpie's low-rank mass matrix, as the backend runs it
            settings.nuts_extra = {"adaptation": "low_rank"}
        times: dict[str, list[float]] = {"pm": [], "ours": []}
        same = True
        for i in range(args.repeats + 1):  # the first round untimed: numba's own warm-up
            t = time.perf_counter()
            theirs = with_pm_sample(law, design, start, settings)
            if i:
                times["pm"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = compiled_once(law, design, start, settings)
            if i:
                times["ours"].append(time.perf_counter() - t)
            for a, b in zip(theirs, ours, strict=True):
                same &= all(
                    np.array_equal(a.posterior[p].values, b["posterior"][p].values)
                    for p in law.param_names
                )
        pm_s, ours_s = statistics.median(times["pm"]), statistics.median(times["ours"])
        print(
            f"| {name} | {pm_s:.1f} s | {ours_s:.1f} s | {ours_s / pm_s:.2f} | "
            f"{'yes' if same else 'NO'} |"
        )


if __name__ == "__main__":
    main()
