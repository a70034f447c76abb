"""The append-only store: durable appends, torn tails, corruption, and a real kill -9 + resume."""

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

from scalelaw.measure.store import Record, Store, StoreError

GRID = """
name = "killme"
seed = 1
samples = 2
max_new_tokens = 2
lengths = [256, 288, 320, 352, 384, 416]
compression = [1, 2, 4]
models = ["tiny-llama"]
# 8-token blocks: 16-token blocks cannot reach C = 4 at 256 tokens
methods = {{ block-sparse = {{ block_size = 8 }} }}
tasks = {{ niah-multikey = {{ needles = 1, queries = 1 }} }}
"""


def _record(i: int) -> Record:
    row = {
        "config_id": f"c{i}",
        "compute_id": f"u{i}",
        "params": 10,
        "seq_len": 100 + i,
        "compression": 1.0,
        "score": 0.5,
        "samples": 2,
        "full_credit": 1,
    }
    preds = [
        {"compute_id": f"u{i}", "sample": 0, "score": 1.0},
        {"compute_id": f"u{i}", "sample": 1, "score": 0.0},
    ]
    return Record(f"u{i}", [row], preds)


def _filled(out: Path, n: int = 3) -> Store:
    """A closed store at `out` holding records 0..n-1."""
    store = Store(out).open()
    for i in range(n):
        store.append(_record(i))
    store.close()
    return store


def test_append_and_reopen(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    _filled(out)
    again = Store(out).open()
    assert again.finished() == {"c0", "c1", "c2"}
    table = pl.read_parquet(out)
    assert table["seq_len"].to_list() == [100, 101, 102]
    assert "correct" in table.columns  # every per-sample score is 0 or 1
    preds = pl.read_parquet(tmp_path / "r.predictions.parquet")
    assert preds.height == 6


def test_torn_last_line_is_reported_and_set_aside(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    store = Store(out).open()
    store.append(_record(0))
    store.close()
    with open(store.journal, "ab") as fh:
        fh.write(b'{"unit": "u1", "rows": [{"config')  # a write cut short by a crash
    again = Store(out).open()
    assert again.finished() == {"c0"}
    assert len(again.notes) == 1 and "incomplete record" in again.notes[0]
    assert (store.dir / "journal.jsonl.torn-1").read_bytes().startswith(b'{"unit": "u1"')
    again.append(_record(1))
    again.close()
    assert Store(out).open().finished() == {"c0", "c1"}


def test_corrupt_line_is_an_error_and_nothing_changes(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    store = _filled(out)
    lines = store.journal.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"score": 0.5', b'"score": 0.9')
    store.journal.write_bytes(b"\n".join(lines))
    before = store.journal.read_bytes()
    with pytest.raises(StoreError, match=r"journal.jsonl, line 2: checksum mismatch"):
        Store(out).open()
    lines[1] = b"garbage"
    store.journal.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match=r"line 2: not a valid record"):
        Store(out).open()
    assert store.journal.read_bytes() != before  # our edit, and only ours
    assert not list(store.dir.glob("*.torn-*"))


def test_refuses_to_overwrite_a_foreign_table(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(out)
    with pytest.raises(StoreError, match="exists but has no store"):
        Store(out).open()
    assert pl.read_parquet(out).columns == ["a"]
    with pytest.raises(StoreError, match=r"must end in \.parquet"):
        Store(tmp_path / "r.xlsx")


def _journal_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line] if path.exists() else []


def test_kill_minus_nine_then_resume(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.format())
    out = tmp_path / "res.parquet"
    journal = tmp_path / "res.store" / "journal.jsonl"
    cmd = [sys.executable, "-m", "scalelaw.cli", "measure", str(grid), "--out", str(out), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while len(_journal_lines(journal)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    before = _journal_lines(journal)
    assert 3 <= len(before) < 18  # 6 lengths x 3 ratios = 18 configurations
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = _journal_lines(journal)
    assert after[: len(before)] == before  # finished work kept byte for byte
    units = [json.loads(line)["unit"] for line in after]
    assert len(units) == len(set(units)) == 18  # nothing measured twice
    table = pl.read_parquet(out)
    assert table.height == 18
    assert table["config_id"].n_unique() == 18


def test_a_deleted_or_torn_manifest_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    store = _filled(out)
    journal = store.journal.read_bytes()
    for damage in (lambda p: p.unlink(), lambda p: p.write_text(""), lambda p: p.write_text("{")):
        damage(store.manifest)
        again = Store(out).open()
        assert again.finished() == {"c0", "c1", "c2"}  # nothing to measure again
        assert any("rebuilt" in n for n in again.notes)
        again.close()
        assert store.journal.read_bytes() == journal  # nothing appended, nothing lost
    # a crash during the very first open leaves an empty manifest and no journal
    fresh = tmp_path / "new.parquet"
    (tmp_path / "new.store").mkdir()
    (tmp_path / "new.store" / "manifest.json").write_text("")
    assert Store(fresh).open().finished() == set()


def test_outputs_that_would_share_or_overwrite_files_are_refused(tmp_path: Path) -> None:
    _filled(tmp_path / "r.parquet", 1)
    with pytest.raises(
        StoreError, match=r"r\.csv: the store r\.store/ holds the sweep written to r\.parquet"
    ):
        Store(tmp_path / "r.csv").open()
    _filled(tmp_path / "x.predictions.parquet", 1)
    table = pl.read_parquet(tmp_path / "x.predictions.parquet")
    with pytest.raises(StoreError, match="is the table of another measurement store"):
        Store(tmp_path / "x.parquet").open()
    assert pl.read_parquet(tmp_path / "x.predictions.parquet").equals(table)
    preds = pl.read_parquet(tmp_path / "r.predictions.parquet")
    with pytest.raises(StoreError, match=r"r\.predictions\.parquet: exists but has no store"):
        Store(tmp_path / "r.predictions.parquet").open()
    (tmp_path / "r.predictions.parquet").unlink()  # even before its first view is written
    with pytest.raises(StoreError, match=r"is the predictions file of the store r\.store/"):
        Store(tmp_path / "r.predictions.parquet").open()
    assert preds.height == 2
