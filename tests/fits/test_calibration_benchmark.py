"""The calibration benchmark runs, and its misspecification case shows what stacking buys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_calibration_case_b_lsq() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "calibration.py"), "--quick", "--cases", "b",
         "--backends", "lsq"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and cells[0] == "b":
            rows[cells[1]] = cells
    assert set(rows) == {
        "sparse-frontier",
        "floor-ceiling:0.25",
        "stack(sparse-frontier + floor-ceiling:0.25)",
    }
    coverage = {law: float(cells[6]) for law, cells in rows.items()}
    # the log-linear law overshoots a saturating truth; the ceiling law and the stack cover it
    assert coverage["sparse-frontier"] < 0.5
    assert coverage["stack(sparse-frontier + floor-ceiling:0.25)"] >= 0.8
    assert "Stacking weights (lsq" in out.stdout
