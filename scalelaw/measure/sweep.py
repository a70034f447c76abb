"""Run a grid into a store: plan the unfinished units, execute them locally or on Ray.

```python
from scalelaw.measure.sweep import run_sweep
summary = run_sweep("examples/grids/tiny.toml", "results.parquet", executor="local")
```
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scalelaw.measure.grid import Configuration, Grid, load_grid
from scalelaw.measure.store import Record, Store

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Plan:
    """What a sweep still has to do."""

    total: int  # configurations in the grid
    done: int  # already in the store
    compute: list[Any]  # units to run (runner.Unit)
    alias: list[tuple[Any, Record]]  # units answered by an existing record


@dataclass
class Summary:
    out: Path
    configurations: int
    already_done: int
    measured: int  # configurations written from runs of this invocation
    runs: int  # model runs (a run serves every configuration of its compute id)
    aliased: int  # configurations answered by a run of an earlier invocation
    seconds: float
    notes: list[str] = field(default_factory=list)


def plan(grid: Grid, store: Store) -> Plan:
    """Group unfinished configurations by compute id; reuse measured compute ids."""
    from scalelaw.measure.runner import Unit

    configs = grid.configurations()
    finished = store.finished()
    measured = store.by_compute()
    groups: dict[str, list[Configuration]] = {}
    for c in configs:
        if c.config_id not in finished:
            groups.setdefault(c.compute_id, []).append(c)
    compute, alias = [], []
    for cid, members in groups.items():
        unit = Unit(cid, tuple(members))
        if cid in measured:
            alias.append((unit, measured[cid]))
        else:
            compute.append(unit)
    return Plan(len(configs), len(configs) - sum(len(g) for g in groups.values()), compute, alias)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    console = Console(stderr=True, quiet=quiet)
    columns = (
        TextColumn("[bold]measure"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    plain = not console.is_terminal and not quiet
    with Progress(*columns, console=console, transient=False, disable=quiet or plain) as bar:
        job = bar.add_task("", total=total)

        start = time.perf_counter()

        def advance(n: int, description: str | None = None) -> None:
            bar.update(job, advance=n, description=description)
            if plain and description:
                # no live bar in a log file: one line per unit, with a linear ETA
                done = bar.tasks[0].completed
                spent = time.perf_counter() - start
                eta = spent / done * (total - done) if done else float("nan")
                console.print(
                    f"[{done:.0f}/{total} samples, {spent:.0f} s, ETA {eta:.0f} s] {description}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )

        yield advance


def _run_local(units: list[Any], store: Store, advance: Callable[..., None]) -> None:
    from scalelaw.measure.runner import run_unit

    for unit in units:
        advance(0, unit.head.label())
        store.append(run_unit(unit, progress=advance))


def _ray_unit(unit: Any) -> Record:
    import ray
    import torch

    from scalelaw.measure.runner import run_unit

    # several workers share a node: each uses only the CPUs Ray gave it
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return run_unit(unit)


def _run_ray(
    units: list[Any],
    store: Store,
    advance: Callable[..., None],
    address: str | None,
    cpus: int | None,
) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        elif cpus:
            kwargs["num_cpus"] = cpus
        ray.init(**kwargs)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        # one GPU per unit when the cluster has GPUs, so the grid spreads over all of them
        task = ray.remote(_ray_unit).options(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)
        pending = {task.remote(u): u for u in units}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(done[0])
            record = ray.get(done[0])
            store.append(record)
            advance(unit.head.samples, unit.head.label())
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    grid: str | Path | Grid,
    out: str | Path,
    *,
    executor: str = "local",
    address: str | None = None,
    cpus: int | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Measure every unfinished configuration of `grid` into the store beside `out`."""
    from scalelaw.measure.runner import alias_record, check_grid

    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    g = grid if isinstance(grid, Grid) else load_grid(grid)
    check_grid(g.configurations())
    store = Store(out).open()
    for note in store.notes:
        (log or print)(note)
    todo = plan(g, store)
    started = time.perf_counter()
    for unit, source in todo.alias:
        store.append(alias_record(unit, source), refresh=False)
    if todo.alias:
        store.write_views()
    samples = sum(u.head.samples for u in todo.compute)
    with _progress(samples, quiet) as advance:
        if executor == "local":
            _run_local(todo.compute, store, advance)
        else:
            _run_ray(todo.compute, store, advance, address, cpus)
    # configurations whose C = 1 twin was measured in this run get their rows now
    second = plan(g, store)
    for unit, source in second.alias:
        store.append(alias_record(unit, source), refresh=False)
    store.write_views()
    measured = sum(len(u.configs) for u in todo.compute)
    aliased = sum(len(u.configs) for u, _ in todo.alias) + sum(
        len(u.configs) for u, _ in second.alias
    )
    return Summary(
        Path(out),
        todo.total,
        todo.done,
        measured,
        len(todo.compute),
        aliased,
        time.perf_counter() - started,
        store.notes,
    )
