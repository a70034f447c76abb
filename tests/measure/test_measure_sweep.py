"""End to end: a tiny random model through local and Ray sweeps, then load_table and `scalelaw fit`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from scalelaw.measure.grid import GridError, load_grid
from scalelaw.measure.sweep import run_sweep

GRID = """
name = "e2e"
seed = 0
samples = 2
max_new_tokens = 3
lengths = [256, 384]
compression = [1, 4]
models = ["tiny-llama"]

[methods]
dense = {}
block-sparse = { block_size = 8, local_blocks = 1 }
# 8-token pages: quest reads its budget plus the current page, 16-token pages overshoot
quest = { page_size = 8 }

[tasks]
niah-multikey = { needles = 1, queries = 1 }
common-words = { top = 2 }
"""

PROVENANCE = ("model_hash", "seed", "versions", "device", "timestamp", "tokens_per_s", "config_id")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "e2e.toml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def local_out(grid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "results.parquet"
    summary = run_sweep(grid, out, executor="local", quiet=True)
    # 2 tasks x 2 lengths x (dense, block-sparse C=1 and 4, quest C=1 and 4)
    assert summary.configurations == 20 and summary.measured == 20 and summary.runs == 12
    return out


#: The count a label is judged on: block pairs for block-sparse (as the study counts it), tokens
#: for the others.
JUDGED = (
    pl.when(pl.col("method").str.starts_with("block-sparse"))
    .then(pl.col("study_compression"))
    .otherwise(pl.col("achieved_compression"))
)


def test_table_follows_the_contract(local_out: Path) -> None:
    from scalelaw.data import load_table

    table = load_table(local_out, require=["params", "seq_len", "compression"])
    assert table.height == 20
    for column in (
        "params",
        "seq_len",
        "compression",
        "score",
        "samples",
        "score_var",
        "task",
        "method",
        "phase",
        "model",
        "family",
        "achieved_compression",
        *PROVENANCE,
    ):
        assert column in table.columns, column
    assert set(table["phase"]) == {"prefill", "decode"}
    assert set(table["seq_len"]) == {256.0, 384.0}
    sparse = table.filter(pl.col("compression") > 1)
    # each method reached roughly the ratio asked for (within 10%)
    ratio = sparse.select(JUDGED / pl.col("compression")).to_series()
    assert ratio.min() > 0.85 and ratio.max() < 1.15
    dense = table.filter(pl.col("compression") == 1)
    assert dense["achieved_compression"].to_list() == [1.0] * dense.height
    # C = 1 of every method is one shared dense measurement
    per_point = dense.group_by("task", "seq_len").agg(pl.col("compute_id").n_unique().alias("n"))
    assert per_point["n"].to_list() == [1] * per_point.height
    preds = pl.read_parquet(local_out.with_name("results.predictions.parquet"))
    assert preds.height == 2 * 12  # 12 units of 2 samples: shared C = 1 measured once


def test_rerun_repeats_nothing(grid: Path, local_out: Path) -> None:
    journal = local_out.with_name("results.store") / "journal.jsonl"
    before = journal.read_bytes()
    summary = run_sweep(grid, local_out, quiet=True)
    assert summary.already_done == 20 and summary.measured == 0
    assert journal.read_bytes() == before


def test_ray_executor_gives_the_same_numbers(grid: Path, local_out: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray.parquet"
    cmd = [
        sys.executable,
        "-m",
        "scalelaw.cli",
        "measure",
        str(grid),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--cpus",
        "2",
        "-q",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    keys = ["config_id"]
    local = pl.read_parquet(local_out).sort(keys).select(*keys, "score", "achieved_compression")
    remote = pl.read_parquet(out).sort(keys).select(*keys, "score", "achieved_compression")
    assert local.equals(remote)
    lp = pl.read_parquet(local_out.with_name("results.predictions.parquet"))
    rp = pl.read_parquet(tmp_path / "ray.predictions.parquet")
    cols = ["compute_id", "sample", "output"]
    assert lp.select(cols).sort(cols).equals(rp.select(cols).sort(cols))


def test_scalelaw_fit_reads_the_output(local_out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "scalelaw.cli",
        "fit",
        str(local_out),
        "--law",
        "sparse-frontier",
        "--where",
        "phase=prefill",
    ]
    # as is: the default Bayesian backend and binomial likelihood on the measured scores
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sparse-frontier (bayes, 12 rows)" in done.stdout
    assert "N (params) is" in done.stderr and "in every row" in done.stderr  # one model size
    lsq = subprocess.run([*cmd, "--backend", "lsq"], capture_output=True, text=True, timeout=300)
    assert lsq.returncode == 0, lsq.stdout + lsq.stderr
    assert "sparse-frontier (lsq, 12 rows)" in lsq.stdout


def test_grid_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID.replace("lengths = [256, 384]", "lengths = [256, -1]"))
    with pytest.raises(GridError, match=r"bad.toml: 'lengths' holds -1"):
        load_grid(bad)
    bad.write_text(GRID.replace("samples = 2", "samples = 2\ncolour = 1"))
    with pytest.raises(GridError, match=r"bad.toml: unknown key\(s\) colour"):
        load_grid(bad)
    bad.write_text("lengths = [")
    with pytest.raises(GridError, match="not valid TOML"):
        load_grid(bad)


def test_unknown_method_is_reported(tmp_path: Path) -> None:
    from scalelaw.measure.runner import MeasureError

    grid = tmp_path / "g.toml"
    grid.write_text(GRID.replace("quest = { page_size = 8 }", "quest = { page = 8 }"))
    with pytest.raises(MeasureError, match="quest: unknown knob 'page'"):
        run_sweep(grid, tmp_path / "o.parquet", quiet=True)


def test_cli_reports_a_bad_knob_in_one_line(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(GRID.replace("quest = { page_size = 8 }", "quest = { page = 8 }"))
    cmd = [
        sys.executable,
        "-m",
        "scalelaw.cli",
        "measure",
        str(grid),
        "--out",
        str(tmp_path / "o.parquet"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: tiny-llama niah-multikey L=256 quest C=1")
    )
    assert not (tmp_path / "o.parquet").exists()
