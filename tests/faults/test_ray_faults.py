"""A Ray worker killed mid-sweep: the sweep finishes, every configuration exactly once; an
address where no Ray cluster answers ends the sweep at once, before Ray is even imported."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("torch")

GRID = """
name = "ray-faults"
seed = 0
samples = 12
max_new_tokens = 2
lengths = [256]
compression = [1, 4]
models = ["tiny-llama"]
# quest at C = 4 reads its 4 pages plus the newest page of a 253-256 token prompt: 3.33 to 3.47,
# 13 to 17% off the label, which the default tolerance (10%) makes failed runs
compression_tolerance = 0.25

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
    pytest.importorskip("ray")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A plain TCP server: it takes connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])


@pytest.mark.parametrize("where", ["silent-server", "nothing-listens", "auto"])
def test_an_address_without_a_ray_cluster_is_one_line_and_exit_2(
    tmp_path: Path, silent_server: int, where: str
) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    address = {
        "silent-server": f"127.0.0.1:{silent_server}",
        "nothing-listens": f"127.0.0.1:{_free_port()}",
        "auto": "auto",
    }[where]
    # `auto` finds no cluster: no RAY_ADDRESS, and an empty Ray temp folder
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
        "RAY_TMPDIR": str(tmp_path)
    }
    cmd = [sys.executable, "-m", "scalelaw.cli", "measure", str(grid), "--out",
           str(tmp_path / "r.parquet"), "--executor", "ray", "--address", address]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: --address {address}: "), lines
    assert "no Ray cluster" in lines[0]
    if where != "auto":
        assert "answered within 5 s" in lines[0]
    assert seconds < 60  # the probe gives up after 5 s; the rest is starting Python
    assert not (tmp_path / "r.store").exists()  # nothing was opened


def test_the_probe_gives_up_on_a_silent_server_within_its_timeout(silent_server: int) -> None:
    from scalelaw.measure.sweep import PROBE_TIMEOUT, SweepError, check_address

    start = time.perf_counter()
    with pytest.raises(SweepError, match=r"no Ray cluster answered within 5 s \(no reply\)"):
        check_address(f"127.0.0.1:{silent_server}")
    assert time.perf_counter() - start < PROBE_TIMEOUT + 3


def test_the_probe_accepts_a_server_that_speaks_grpc() -> None:
    """A Ray GCS is a gRPC server: it answers the HTTP/2 preface with a SETTINGS frame."""
    import threading

    from scalelaw.measure.sweep import check_address

    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
                conn.recv(1024)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
        thread.join(timeout=10)


def test_a_dead_ray_address_variable_is_one_line_and_exit_2(
    tmp_path: Path, silent_server: int
) -> None:
    """Without --address, Ray joins RAY_ADDRESS: a variable left pointing at a dead cluster is
    probed like the option, instead of ray.init waiting on it for minutes."""
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{silent_server}"}
    cmd = [sys.executable, "-m", "scalelaw.cli", "measure", str(grid), "--out",
           str(tmp_path / "r.parquet"), "--executor", "ray"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: RAY_ADDRESS=127.0.0.1:{silent_server}: no Ray cluster")
    assert "unset it or give --address local" in lines[0]
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "r.store").exists()
