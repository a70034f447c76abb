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


def test_decision_benchmark_scores_committed_sets_without_running(tmp_path: Path) -> None:
    """`--score-only` runs no fit: a seed the results lack (99) is left out, not simulated, and
    the Brier printed is the mean squared gap between P and the truth over the file's points."""
    import json

    import numpy as np

    results = tmp_path / "decisions.jsonl"
    results.write_text((REPO / "benchmarks/results/decisions-auto.jsonl").read_text())
    before = results.read_text()
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "decision_calibration.py"), "--seeds", "2,99",
         "--score-only", "--out", str(results)],
        capture_output=True, text=True, check=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert results.read_text() == before
    rows = [json.loads(line) for line in before.splitlines()]
    for truth in ("card", "kappa", "floor"):
        (row,) = [r for r in rows if r["truth"] == truth and r["seed"] == 2]
        brier = np.mean((np.asarray(row["stack"]) - np.asarray(row["true"])) ** 2)
        heading = f"### truth {truth}, default (family, stacked): 1 sets, 18 decision points"
        assert f"{heading}, 0 confident errors, Brier {brier:.4f}" in out.stdout, out.stdout
