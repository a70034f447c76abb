"""Run a grid into a store: plan the unfinished units, execute them locally or on Ray.

A unit that fails (an exception in it, a Ray worker that died on every try, a ratio its
method could not reach) is journalled as a failure and reported; the other units go on, and
the next sweep tries the failed ones again. Ray retries a unit whose worker died twice.

```python
from scalelaw.measure.sweep import run_sweep
summary = run_sweep("examples/grids/tiny.toml", "results.parquet", executor="local")
```
"""

from __future__ import annotations

import socket
import time
import traceback
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

from scalelaw.errors import ScalelawError
from scalelaw.measure.grid import Configuration, Grid, load_grid
from scalelaw.measure.store import Record, Store

EXECUTORS = ("local", "ray")
#: tries of a Ray task after its worker process died (Ray's `max_retries`)
RAY_RETRIES = 2
#: seconds to wait for a Ray cluster's address to answer
CONNECT_TIMEOUT = 10.0


class SweepError(ScalelawError):
    """A sweep that cannot start (an executor or a cluster address that does not work)."""


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
    #: compute id -> error (naming the configuration) of every unit that failed in this
    #: invocation; the next sweep tries them again
    failed: dict[str, str] = field(default_factory=dict)


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
    console = Console(stderr=True, quiet=quiet, emoji=False)
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


def failure(unit: Any, exc: BaseException) -> Record:
    """The journal record of a unit that raised `exc`: its message, no rows."""
    from scalelaw.errors import user_errors

    if isinstance(exc, user_errors()):
        message = str(exc)
    else:  # an unexpected error: keep where it happened
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        place = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
        message = f"{type(exc).__name__}{place}: {exc}"
    return Record(unit.compute_id, [], [], error=f"{unit.head.label()}: {message}")


def _run_local(units: list[Any], store: Store, advance: Callable[..., None]) -> None:
    from scalelaw.measure.runner import run_unit

    for unit in units:
        advance(0, unit.head.label())
        try:
            record = run_unit(unit, progress=advance)
        except Exception as exc:  # one unit's failure is journalled; the sweep goes on
            record = failure(unit, exc)
        store.append(record)


def _ray_unit(unit: Any) -> Record:
    import ray
    import torch

    from scalelaw.measure.runner import run_unit

    # several workers share a node: each uses only the CPUs Ray gave it
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    try:
        return run_unit(unit)
    except Exception as exc:  # journalled by the driver, not retried: it would fail again
        return failure(unit, exc)


def check_address(address: str) -> None:
    """Fail within CONNECT_TIMEOUT seconds when a Ray address does not answer."""
    if address in {"auto", "local"}:
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise SweepError(f"--address {address}: no Ray cluster answers there ({exc})") from None


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
            check_address(address)
            kwargs["address"] = address
        elif cpus:
            kwargs["num_cpus"] = cpus
        ray.init(**kwargs)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        # one GPU per unit when the cluster has GPUs, so the grid spreads over all of them
        task = ray.remote(_ray_unit).options(
            num_gpus=1 if gpus else 0, num_cpus=1, max_retries=RAY_RETRIES
        )
        pending = {task.remote(u): u for u in units}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except Exception as exc:  # the worker died on every try: journal, go on
                record = failure(unit, exc)
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
        raise SweepError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    g = grid if isinstance(grid, Grid) else load_grid(grid)
    check_grid(g.configurations())
    with Store(out) as store:
        for note in (*g.notes, *store.notes):
            (log or print)(note)
        todo = plan(g, store)
        started = time.perf_counter()
        for unit, source in todo.alias:
            store.append(alias_record(unit, source), refresh=False)
        if todo.alias:
            store.write_views()
        before = len(store.records)
        samples = sum(u.head.samples for u in todo.compute)
        with _progress(samples, quiet) as advance:
            if executor == "local":
                _run_local(todo.compute, store, advance)
            else:
                _run_ray(todo.compute, store, advance, address, cpus)
        failed = {r.unit: r.error for r in store.records[before:] if r.error is not None}
        # configurations whose C = 1 twin was measured in this run get their rows now
        second = plan(g, store)
        for unit, source in second.alias:
            store.append(alias_record(unit, source), refresh=False)
        store.write_views()
    measured = sum(len(u.configs) for u in todo.compute if u.compute_id not in failed)
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
        {unit: str(error) for unit, error in failed.items()},
    )
