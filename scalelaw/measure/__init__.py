"""Measurement: generated long-context tasks, models with sparse attention, resumable sweeps.

Importing this package is light; torch loads with `models`, `sparse`, `runner` and `sweep`
(the grid, store, export and tasks modules are torch-free).

```python
from scalelaw.measure.sweep import run_sweep
run_sweep("examples/grids/tiny.toml", "results.parquet")
```
"""
