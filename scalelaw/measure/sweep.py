"""Run a grid into a store: plan the unfinished units, execute them locally or on Ray.

A unit that fails (an exception in it, a Ray worker that died on every try, an achieved
compression more than the grid's `compression_tolerance` off its label C) is journalled as a
failure and reported; the other units go on, and the next sweep tries the failed ones again.
Ray retries a unit whose worker died twice.

```python
from scalelaw.measure.sweep import run_sweep
summary = run_sweep("examples/grids/tiny.toml", "results.parquet", executor="local")
```
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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

from scalelaw.errors import ScalelawError, user_errors
from scalelaw.measure.grid import Configuration, Grid, load_grid
from scalelaw.measure.store import Record, Store

EXECUTORS = ("local", "ray")
#: tries of a Ray task after its worker process died (Ray's `max_retries`)
RAY_RETRIES = 2
#: seconds a Ray cluster's address has to answer (connect and reply) before the sweep gives up
PROBE_TIMEOUT = 5.0
#: the HTTP/2 client preface and an empty SETTINGS frame: a Ray GCS (and a Ray Client server)
#: is a gRPC server, which answers with a SETTINGS frame of its own; a port that is not gRPC
#: does not, and `ray.init` would wait on it for minutes
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x4


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
    from scalelaw.measure.runner import Unit  # deferred: torch and transformers (about 5 s)

    configs = grid.configurations()
    finished = store.finished()
    measured = store.by_compute()
    groups: dict[str, list[Configuration]] = {}
    for c in configs:
        if c.config_id not in finished:
            groups.setdefault(c.compute_id, []).append(c)
    compute, alias = [], []
    for cid, members in groups.items():
        unit = Unit(cid, tuple(members), grid.compression_tolerance)
        if cid in measured:
            alias.append((unit, measured[cid]))
        else:
            compute.append(unit)
    return Plan(len(configs), len(configs) - sum(len(g) for g in groups.values()), compute, alias)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[..., None]]:
    """The API's own progress: a rich bar on a terminal, nothing elsewhere or when `quiet`.
    (The command line passes `scalelaw.commands.progress.sweep_progress`, its one progress
    style, which writes log lines off a terminal.)"""
    console = Console(stderr=True, quiet=quiet, emoji=False)
    columns = (
        TextColumn("[bold]measure"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        # the description is a run's label: model paths and task names are the user's, and
        # rich markup in them (`[/]`, `QA [v2]`) must not be interpreted
        TextColumn("{task.description}", markup=False),
    )
    shown = console.is_terminal and not quiet
    with Progress(*columns, console=console, transient=False, disable=not shown) as bar:
        job = bar.add_task("", total=total)

        def advance(n: int, description: str | None = None) -> None:
            bar.update(job, advance=n, description=description)

        yield advance


def failure(unit: Any, exc: BaseException) -> Record:
    """The journal record of a unit that raised `exc`: its message, no rows."""
    if isinstance(exc, user_errors()):
        message = str(exc)
    else:  # an unexpected error: keep where it happened
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        place = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
        message = f"{type(exc).__name__}{place}: {exc}"
    label = unit.head.label()
    # the runner's own errors already start with the configuration's label
    message = message.removeprefix(f"{label}: ")
    return Record(unit.compute_id, [], [], error=f"{label}: {message}")


def _run_local(units: list[Any], store: Store, advance: Callable[..., None]) -> None:
    from scalelaw.measure.runner import run_unit  # deferred: torch and transformers

    for unit in units:
        advance(0, unit.head.label())
        try:
            record = run_unit(unit, progress=advance)
        except Exception as exc:  # one unit's failure is journalled; the sweep goes on
            record = failure(unit, exc)
        store.append(record)


def _ray_unit(unit: Any) -> Record:
    # deferred: ray (an optional extra), torch and transformers, in the Ray worker
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


def check_address(address: str, source: str = "--address") -> None:
    """Fail within PROBE_TIMEOUT seconds unless a Ray cluster answers at `address`.

    Runs before Ray is imported (so a wrong address is one line, Ray installed or not): `auto`
    is resolved as Ray resolves it, then the address must answer the gRPC handshake. `source`
    names where the address came from in the error (the option, or the RAY_ADDRESS variable).
    """
    if address == "local":  # Ray starts a cluster of its own
        return
    target = _auto_address() if address == "auto" else address
    named = f"{source} {address}" if source == "--address" else f"{source}={address}"
    if target is None:
        raise SweepError(
            f"{named}: no Ray cluster found on this machine (RAY_ADDRESS is not set and "
            "no cluster was started with `ray start`); start one or give --address HOST:PORT"
        )
    where = named if target == address else f"{named} ({target})"
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"{where}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    reason = _probe(host.strip("[]"), int(port))
    if reason:
        raise SweepError(
            f"{where}: no Ray cluster answered within {PROBE_TIMEOUT:g} s ({reason})"
            + (
                "; unset it or give --address local to start a cluster here"
                if source != "--address"
                else ""
            )
        )


def _probe(host: str, port: int) -> str | None:
    """Why `host:port` is not a gRPC server (None when it answers the HTTP/2 handshake)."""
    deadline = time.monotonic() + PROBE_TIMEOUT
    reply, connected = b"", False
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as sock:
            connected = True
            sock.sendall(_H2_HELLO)
            while len(reply) < 9:  # a frame header
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(9 - len(reply))
                if not chunk:
                    return "it closed the connection"
                reply += chunk
    except TimeoutError:
        return "no reply" if connected else "connection timed out"
    except OSError as exc:
        return (exc.strerror or str(exc) or type(exc).__name__).lower()
    return None if reply[3] == _H2_SETTINGS else "it does not speak gRPC"


def _auto_address() -> str | None:
    """The cluster `ray.init(address="auto")` joins, found as Ray finds it, without Ray: the
    RAY_ADDRESS variable, the address file of the last `ray start`, a GCS running here."""
    env = os.environ.get("RAY_ADDRESS", "")
    if env and env != "auto":
        return env
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        current = (Path(tmp) / "ray" / "ray_current_cluster").read_text().strip()
    except OSError:
        current = ""
    if current:
        return current
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in args:
            if arg.startswith(b"--gcs-address="):
                return arg.removeprefix(b"--gcs-address=").decode(errors="replace")
    return None


def _run_ray(
    units: list[Any],
    store: Store,
    advance: Callable[..., None],
    address: str | None,
    cpus: int | None,
) -> None:
    import ray  # deferred: ray, an optional extra

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:  # probed by run_sweep before anything else
            kwargs["address"] = address
        elif cpus:
            kwargs["num_cpus"] = cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:  # its message, not the bare "ConnectionError"
            where = f"--address {address}: " if address else "ray: "
            raise SweepError(f"{where}{exc or type(exc).__name__}") from None
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
    progress: Callable[[int], AbstractContextManager[Callable[..., None]]] | None = None,
) -> Summary:
    """Measure every unfinished configuration of `grid` into the store beside `out`.

    `progress(samples)`, if given, is a context manager for the samples to run, yielding
    `advance(n, description=None)`: called with each sample finished (n = 1; a Ray unit: all
    its samples at once) and, with n = 0, each run's label as it starts. Without it a rich bar
    is drawn on standard error when that is a terminal (nothing when `quiet`)."""
    # deferred: torch and transformers (about 5 s), not loaded for a grid refused on sight
    from scalelaw.measure.runner import alias_record, check_grid

    if executor not in EXECUTORS:
        raise SweepError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        # first: ray.init waits minutes on an address where no cluster answers; without
        # --address it joins RAY_ADDRESS when that is set, so that is probed the same way
        env = os.environ.get("RAY_ADDRESS", "")
        if address:
            check_address(address)
        elif env and env != "local":
            check_address(env, source="RAY_ADDRESS")
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
        with (progress or (lambda n: _progress(n, quiet)))(samples) as advance:
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
