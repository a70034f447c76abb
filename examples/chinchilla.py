"""Write chinchilla.csv: pre-training losses simulated from the published Chinchilla law.

The law is the `chinchilla` card (Hoffmann et al. 2022, approach 3: E = 1.69, A = 406.4,
B = 410.7, alpha = 0.34, beta = 0.28; `scalelaw laws chinchilla`), with its Student-t noise on
the log scale, at 9 model sizes from 70M to 16B parameters, each trained on 2 to 200 tokens
per parameter (under- to over-trained, as Chinchilla's runs): 63 rows, seed 0. The columns are named as in Epoch AI's digitised
Chinchilla points (`Model Size`, `D` tokens, `loss`), plus the noiseless `truth`, so the
README's expression fit reads it with `--map N='Model Size'` and can be checked against the
law it came from.

    python examples/chinchilla.py [OUT]     # default: examples/chinchilla.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

from scalelaw.fits import get_card, simulate

SIZES = np.geomspace(7e7, 1.6e10, 9)
TOKENS_PER_PARAM = (2, 5, 10, 20, 50, 100, 200)


def table(seed: int = 0) -> pl.DataFrame:
    grid = pl.DataFrame(
        [{"N": float(n), "D": float(n * t)} for n in SIZES for t in TOKENS_PER_PARAM]
    )
    simulated = simulate(get_card("chinchilla"), grid, seed=seed)
    return simulated.rename({"params": "Model Size"}).select("Model Size", "D", "loss", "truth")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("chinchilla.csv")
    frame = table()
    frame.write_csv(out)
    print(f"wrote {frame.height} rows to {out}")
