"""Time `scalelaw fit` (bayes, defaults) against a minimal hand-written PyMC + nutpie model.

Both run as fresh processes on the same simulated paper-grid table (imports, compilation and
sampling included), one after the other in the same run, and the ratio is printed.

    python benchmarks/fit_speed.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HAND_WRITTEN = r"""
import sys
import numpy as np
import polars as pl
import pymc as pm

df = pl.read_csv(sys.argv[1])
tasks = sorted(df["task"].unique().to_list())
ref = tasks.index("QuALITY")
idx = np.array([tasks.index(t) for t in df["task"]])
x = {k: np.log(df[c].to_numpy()) for k, c in (("N", "params"), ("L", "seq_len"), ("C", "compression"))}
with pm.Model():
    eps = pm.Normal("eps", 0, 50)
    coef = {k: pm.Normal(k, 0, 5) for k in ("alpha", "beta", "gamma")}
    free = pm.Normal("delta_free", 0, 10, shape=len(tasks) - 1)
    delta = pm.math.concatenate([free[:ref], np.zeros(1), free[ref:]])
    eta = eps + coef["alpha"] * x["N"] + coef["beta"] * x["L"] + coef["gamma"] * x["C"] + delta[idx]
    pm.Binomial("obs", n=df["samples"].to_numpy(), logit_p=eta, observed=df["correct"].to_numpy())
    pm.sample(1000, tune=1000, chains=4, random_seed=0, nuts_sampler="nutpie", progressbar=False)
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    exe = Path(sys.executable)
    scalelaw = str(exe.with_name("scalelaw"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sim.csv"
        subprocess.run(
            [scalelaw, "simulate", "--law", "sparse-frontier-v1:prefill", "--grid", "paper",
             "--samples", "100", "--seed", "0", "--out", str(data)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        script = Path(tmp) / "hand.py"
        script.write_text(HAND_WRITTEN)
        ours, hand = [], []
        for _ in range(args.repeats):
            hand.append(timed([str(exe), str(script), str(data)]))
            ours.append(
                timed(
                    [
                        scalelaw,
                        "fit",
                        str(data),
                        "--law",
                        "sparse-frontier",
                        "--out",
                        str(Path(tmp) / "fit.nc"),
                        "--force",  # the previous repeat's file
                    ]
                )
            )
    o, h = statistics.median(ours), statistics.median(hand)
    print(
        f"rows: 1584 (paper grid, 9 tasks), 4 chains x 1000 draws + 1000 tune, repeats {args.repeats}"
    )
    print(
        f"hand-written PyMC + nutpie : {h:6.1f} s (median; runs {', '.join(f'{t:.1f}' for t in hand)})"
    )
    print(
        f"scalelaw fit (CLI, bayes)  : {o:6.1f} s (median; runs {', '.join(f'{t:.1f}' for t in ours)})"
    )
    print(f"ratio scalelaw / hand-written: {o / h:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
