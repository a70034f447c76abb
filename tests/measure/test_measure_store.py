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
    # r.csv.parquet's files would be r.csv's (r.csv.store/, r.csv.predictions.parquet)
    _filled(tmp_path / "r.csv", 1)
    with pytest.raises(
        StoreError,
        match=r"r\.csv\.parquet: the store r\.csv\.store/ holds the sweep written to r\.csv;",
    ):
        Store(tmp_path / "r.csv.parquet").open()
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
    (tmp_path / "r.csv.predictions.parquet").unlink()
    with pytest.raises(StoreError, match=r"predictions file of the store r\.csv\.store/"):
        Store(tmp_path / "r.csv.predictions.parquet").open()


def _grid_rows(out: Path, n: int, first: int) -> None:
    store = Store(out).open()
    for i in range(first, first + n):
        store.append(_record(i))
    store.close()


def test_each_output_name_has_its_own_store_and_predictions(tmp_path: Path) -> None:
    # issue 20: --out r.parquet then --out r.csv shared r.store/ (18 rows = 12 + 6, or exit 2)
    _grid_rows(tmp_path / "r.parquet", 4, 0)
    _grid_rows(tmp_path / "r.csv", 2, 10)
    _grid_rows(tmp_path / "r.jsonl", 1, 20)
    assert pl.read_parquet(tmp_path / "r.parquet")["config_id"].to_list() == [
        "c0",
        "c1",
        "c2",
        "c3",
    ]
    assert pl.read_csv(tmp_path / "r.csv")["config_id"].to_list() == ["c10", "c11"]
    assert pl.read_ndjson(tmp_path / "r.jsonl")["config_id"].to_list() == ["c20"]
    assert pl.read_parquet(tmp_path / "r.predictions.parquet").height == 8
    assert pl.read_parquet(tmp_path / "r.csv.predictions.parquet").height == 4
    assert pl.read_parquet(tmp_path / "r.jsonl.predictions.parquet").height == 2
    for name, n in (("r.store", 4), ("r.csv.store", 2), ("r.jsonl.store", 1)):
        assert len((tmp_path / name / "journal.jsonl").read_text().splitlines()) == n
    # each resumes its own rows, and nothing else
    assert Store(tmp_path / "r.csv").open().finished() == {"c10", "c11"}


def _legacy(tmp_path: Path, name: str, *, manifest: bool = True) -> tuple[bytes, Path]:
    """A store of `name` (r.csv) as earlier versions left it: r.store/, r.predictions.parquet."""
    out = tmp_path / name
    _filled(out, 2)
    stem = out.stem
    os.rename(tmp_path / f"{name}.store", tmp_path / f"{stem}.store")
    os.rename(tmp_path / f"{name}.predictions.parquet", tmp_path / f"{stem}.predictions.parquet")
    if not manifest:
        (tmp_path / f"{stem}.store" / "manifest.json").unlink()
    return (tmp_path / f"{stem}.store" / "journal.jsonl").read_bytes(), out


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "manifest-lost"])
@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_a_store_under_the_earlier_name_is_resumed_and_moved(
    tmp_path: Path, name: str, manifest: bool
) -> None:
    journal, out = _legacy(tmp_path, name, manifest=manifest)
    if manifest:  # export reads it where it is, and moves nothing
        assert Store(out).open(write=False).finished() == {"c0", "c1"}
        assert (tmp_path / "r.store").is_dir()
    store = Store(out).open()
    assert store.finished() == {"c0", "c1"}  # nothing lost, nothing to measure again
    assert store.dir == tmp_path / f"{name}.store"
    assert any("moved to" in n for n in store.notes)
    assert not (tmp_path / "r.store").exists()
    assert not (tmp_path / "r.predictions.parquet").exists()
    assert pl.read_parquet(tmp_path / f"{name}.predictions.parquet").height == 4
    store.append(_record(2))
    store.close()
    assert (tmp_path / f"{name}.store" / "journal.jsonl").read_bytes().startswith(journal)
    assert len(Store(out).open(write=False).records) == 3
    # r.parquet now gets a store of its own beside it
    assert Store(tmp_path / "r.parquet").open().finished() == set()


def test_a_store_under_the_earlier_name_of_another_output_is_left_alone(tmp_path: Path) -> None:
    journal, _ = _legacy(tmp_path, "r.csv")
    # r.parquet's store is r.store/ (as before), which holds r.csv's sweep: refused, untouched
    with pytest.raises(
        StoreError, match=r"r\.parquet: the store r\.store/ holds the sweep written to r\.csv"
    ):
        Store(tmp_path / "r.parquet").open()
    # r.jsonl does not take r.csv's store either: it starts its own
    fresh = Store(tmp_path / "r.jsonl").open()
    assert fresh.finished() == set()
    fresh.close()
    (tmp_path / "r.jsonl.store" / "manifest.json").unlink()
    (tmp_path / "r.jsonl.store" / "journal.jsonl").unlink()
    (tmp_path / "r.jsonl.store" / "lock").unlink()
    (tmp_path / "r.jsonl.store").rmdir()
    assert (tmp_path / "r.store" / "journal.jsonl").read_bytes() == journal
    # a lost manifest with two tables of that stem is not guessed at: r.jsonl does not take it
    (tmp_path / "r.store" / "manifest.json").unlink()
    (tmp_path / "r.jsonl").write_text("")
    with pytest.raises(StoreError, match=r"r\.jsonl: exists but has no store"):
        Store(tmp_path / "r.jsonl").open()
    assert (tmp_path / "r.store" / "journal.jsonl").read_bytes() == journal


def test_a_store_under_the_earlier_name_is_not_moved_while_a_sweep_holds_it(
    tmp_path: Path,
) -> None:
    journal, out = _legacy(tmp_path, "r.csv")
    holder = Store(out).open(write=False)
    holder.dir = tmp_path / "r.store"
    holder._lock()  # an earlier version's sweep measuring into r.store/
    try:
        with pytest.raises(StoreError, match="another sweep is measuring into this store"):
            Store(out).open()
        assert (tmp_path / "r.store" / "journal.jsonl").read_bytes() == journal
        assert not (tmp_path / "r.csv.store").exists()
    finally:
        holder.close()
