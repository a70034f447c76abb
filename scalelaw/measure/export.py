"""Package a finished (or partly finished) sweep as a named dataset, `measured:NAME`.

The folder `scalelaw/datasets/NAME/` receives the table (`NAME.parquet`), the per-sample
predictions (`NAME.predictions.parquet`), the grid (`NAME.grid.toml`) and `provenance.json`
(what was measured out of what the grid asks, model hash, versions, devices, time span).
Torch-free.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from scalelaw.measure.grid import load_grid
from scalelaw.measure.store import Store, atomic_write


def provenance(store: Store, grid_path: Path) -> dict[str, Any]:
    """A summary of where the rows of `store` come from."""
    grid = load_grid(grid_path)
    table = store.table()
    configs = grid.configurations()
    done = store.finished()
    missing = [c.label() for c in configs if c.config_id not in done]

    def distinct(column: str) -> list[Any]:
        return sorted(table[column].unique().to_list()) if column in table.columns else []

    return {
        "name": grid.name,
        "grid_sha256_16": grid.source_hash,
        "configurations_in_grid": len(configs),
        "configurations_measured": len(configs) - len(missing),
        "missing": missing,
        "rows": table.height,
        "samples_per_configuration": grid.samples,
        "seed": grid.seed,
        "models": distinct("model"),
        "model_hashes": distinct("model_hash"),
        "devices": distinct("device"),
        "versions": distinct("versions"),
        "first_timestamp": min(distinct("timestamp"), default=None),
        "last_timestamp": max(distinct("timestamp"), default=None),
        # rows sharing a dense run carry its time once
        "measure_seconds": float(table.unique("compute_id")["wall_s"].sum())
        if "wall_s" in table.columns
        else None,
    }


def export_dataset(out: str | Path, grid: str | Path, name: str, datasets_dir: str | Path) -> Path:
    """Copy the sweep behind `out` into `datasets_dir/name/`; return that folder."""
    store = Store(out).open(write=False)
    if not store.records:
        raise ValueError(f"{out}: the store holds no finished configuration yet")
    dest = Path(datasets_dir) / name
    dest.mkdir(parents=True, exist_ok=True)
    table = store.table().sort("seq_len", "task", "method", "compression")
    atomic_write(table, dest / f"{name}.parquet")
    preds = store.predictions()
    atomic_write(
        preds.sort("seq_len", "task", "compute_id", "sample"), dest / f"{name}.predictions.parquet"
    )
    shutil.copyfile(grid, dest / f"{name}.grid.toml")
    meta = provenance(store, Path(grid))
    (dest / "provenance.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dest


def summary_table(path: str | Path) -> pl.DataFrame:
    """Mean score per task, length, method and ratio of an exported or swept table."""
    frame = pl.read_parquet(path)
    return (
        frame.group_by("task", "seq_len", "method", "compression")
        .agg(pl.col("score").mean(), pl.col("achieved_compression").mean())
        .sort("task", "method", "seq_len", "compression")
    )
