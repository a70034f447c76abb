"""A Ray worker killed mid-sweep: the sweep finishes, every configuration exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")

GRID = """
name = "ray-faults"
seed = 0
samples = 12
max_new_tokens = 2
lengths = [256]
compression = [1, 4]
models = ["tiny-llama"]

[methods]
quest = { page_size = 16 }

[tasks]
niah-multikey = { needles = 1, queries = 1 }
common-words = { top = 2 }
"""


def _busy_workers() -> list[int]:
    """PIDs of Ray workers running a measurement (Ray names the process after its task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::_ray_unit"):
            pids.append(int(entry.name))
    return pids


def test_killed_worker_is_retried_and_nothing_is_lost_or_repeated(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    out = tmp_path / "r.parquet"
    cmd = [sys.executable, "-m", "scalelaw.cli", "measure", str(grid), "--out", str(out),
           "--executor", "ray", "--cpus", "2", "-q"]  # fmt: skip
    sweep = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and sweep.poll() is None:
        busy = _busy_workers()
        if busy:
            victim = busy[0]
            time.sleep(1.0)  # let it get into the unit
            os.kill(victim, signal.SIGKILL)
        else:
            time.sleep(0.2)
    stdout, stderr = sweep.communicate(timeout=600)
    assert victim is not None, "no Ray worker was seen running a unit"
    assert sweep.returncode == 0, stdout + stderr
    table = pl.read_parquet(out)
    assert table.height == 4 and table["config_id"].n_unique() == 4
    journal = (tmp_path / "r.store" / "journal.jsonl").read_text().splitlines()
    ids = [row["config_id"] for line in journal for row in json.loads(line)["rows"]]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4
    assert all("error" not in json.loads(line) for line in journal)
