"""Packaging a sweep as a named dataset, loadable as measured:NAME."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from scalelaw.measure.export import export_dataset
from scalelaw.measure.sweep import run_sweep

GRID = """
name = "mini"
seed = 0
samples = 2
max_new_tokens = 2
lengths = [256]
compression = [1, 2]
models = ["tiny-llama"]
# 8-token blocks: 16-token blocks cannot reach C = 4 at 256 tokens
methods = { block-sparse = { block_size = 8 } }
tasks = { niah-multikey = { needles = 1, queries = 1 } }
"""


def test_export_writes_table_grid_and_provenance(tmp_path: Path) -> None:
    grid = tmp_path / "mini.toml"
    grid.write_text(GRID)
    out = tmp_path / "r.parquet"
    run_sweep(grid, out, quiet=True)
    # the grid grows: the export says what is still missing
    grid.write_text(GRID.replace("compression = [1, 2]", "compression = [1, 2, 4]"))
    dest = export_dataset(out, grid, "mini", tmp_path / "datasets")
    assert sorted(p.name for p in dest.iterdir()) == [
        "mini.grid.toml",
        "mini.parquet",
        "mini.predictions.parquet",
        "provenance.json",
    ]
    meta = json.loads((dest / "provenance.json").read_text())
    assert meta["configurations_in_grid"] == 3 and meta["configurations_measured"] == 2
    assert meta["missing"] == ["tiny-llama niah-multikey L=256 block-sparse C=4"]
    assert len(meta["model_hashes"][0]) == 64
    assert pl.read_parquet(dest / "mini.parquet").height == 2


def test_shipped_smollm2_dataset_is_complete_and_consistent() -> None:
    from scalelaw.data import load_table
    from scalelaw.datasets import dataset_path
    from scalelaw.measure.grid import load_grid

    table = load_table("measured:smollm2", require=["params", "seq_len", "compression"])
    folder = dataset_path("smollm2").parent
    grid = load_grid(folder / "smollm2.grid.toml")
    assert set(table["config_id"]) == {c.config_id for c in grid.configurations()}
    assert set(table["model_hash"]) == set(
        json.loads((folder / "provenance.json").read_text())["model_hashes"]
    )
    # the dense point is one measurement shared by both methods
    dense = table.filter(pl.col("compression") == 1).group_by("task", "seq_len")
    assert all(g["score"].n_unique() == 1 for _, g in dense)
    # accuracy at C = 1 is informative: neither always right nor always wrong
    c1 = table.filter(pl.col("compression") == 1)["score"]
    assert 0.0 < c1.mean() < 0.6
    # measured with today's prompts: a template change bumps the version and needs a re-run
    from scalelaw.measure.tasks import get_task

    for task, version in table.select("task", "task_version").unique().iter_rows():
        assert version == get_task(task).version, task
