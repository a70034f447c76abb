"""The append-only results store of a sweep.

`results.parquet` is a view; the truth is the journal in `results.store/journal.jsonl`: one
line per finished unit of work (the rows it produced and its per-sample predictions), each line
carrying the sha256 of its own content, written with a single `write` and fsync'd.

- A sweep killed at any moment loses at most the unit in flight. Its partial last line (no
  newline) is reported, saved beside the journal as `journal.jsonl.torn-N`, and cut off.
- A complete line that does not parse or whose checksum is wrong means the store is corrupt:
  `StoreError` names the file and line, and nothing is written.
- The table and the per-sample predictions (`results.predictions.parquet`) are rebuilt from the
  journal after every unit and replaced atomically (write to a temporary file, fsync, rename).
- One sweep owns a store at a time: an advisory lock (`results.store/lock`, holding the owner's
  PID and host) is taken on open; a second sweep gets `StoreError` naming the holder. The lock
  dies with its process, so a killed sweep's lock is recovered by the next one.
- On open the table is cross-checked against the journal: a configuration in the table that
  the journal lacks (an emptied or cut journal) stops everything before anything is written,
  and two journal records of one configuration are refused.
- Every file derives from the whole output name: `r.parquet` has `r.store/` and
  `r.predictions.parquet`, `r.csv` has `r.csv.store/` and `r.csv.predictions.parquet`, so two
  outputs never share a store. A store made by an earlier version under the stem's name
  (`r.store/` for `r.csv`) is found and moved to its own name (one rename, under its lock).
- The manifest (`results.store/manifest.json`) is only a label: deleted, or left empty or cut by
  a crash during the first open, it is rewritten and the journal read as it is. It names the
  output it belongs to, so no other output resumes (and mixes rows into) a store; an output
  that is another store's predictions file, or whose predictions file is another store's table,
  is refused.
- A unit that failed (an exception, a ratio the method could not reach) is journalled as a
  failure with its message and no rows; the next sweep tries it again.

This module is torch-free.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from scalelaw.data import read_frame
from scalelaw.errors import ScalelawError

FORMAT = "scalelaw-measure-store"
VERSION = 1
BINARY = {0.0, 1.0}


class StoreError(ScalelawError, RuntimeError):
    """The store cannot be used as is; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Record:
    """One finished unit: the table rows it produced and its per-sample predictions."""

    unit: str
    rows: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    #: why the unit failed (no rows then); None for a measured unit
    error: str | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "rows": self.rows,
            "predictions": self.predictions,
        }
        if self.error is not None:  # absent otherwise, so earlier journals keep their checksums
            out["error"] = self.error
        return out


def _checksum(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to `path` (Parquet, CSV or JSON Lines by suffix) all at once or not at all.

    A write that fails (a full disk) leaves `path` as it was and no temporary file behind, and
    raises StoreError naming `path` and the reason.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # the bytes are made in memory and written here: polars' Parquet writer reports a full
        # disk as "Invalid thrift: transport error" (a traceback), without the reason
        if path.suffix == ".csv":
            data = frame.write_csv().encode()
        elif path.suffix in {".jsonl", ".ndjson"}:
            data = frame.write_ndjson().encode()
        else:
            buffer = io.BytesIO()
            frame.write_parquet(buffer)
            data = buffer.getvalue()
        _write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        reason = _io_reason(exc)
        if reason is None:
            raise
        raise StoreError(f"{path}: cannot write it: {reason}") from None
    _fsync_dir(path.parent)


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it; a full disk raises OSError (errno ENOSPC)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _io_reason(exc: BaseException) -> str | None:
    """The reason of a failed write ("no space left on device"); None for what is not I/O.

    polars reports I/O failures of its Parquet writer as ComputeError and of its CSV and JSON
    writers as OSError without an errno, both with "(os error N)" in the message.
    """
    number = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if number is None and isinstance(exc, OSError | pl.exceptions.ComputeError):
        found = re.search(r"\(os error (\d+)\)", str(exc))
        number = int(found.group(1)) if found else None
    if number is not None:
        return os.strerror(number).lower()
    return (str(exc) or type(exc).__name__) if isinstance(exc, OSError) else None


class Store:
    """The journal, table and predictions of one sweep output."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.suffix not in {".parquet", ".csv", ".jsonl"}:
            raise StoreError(f"{self.out}: output must end in .parquet, .csv or .jsonl")
        # the name every file of this output derives from: a Parquet table keeps its stem
        # (results.parquet -> results.store/), any other keeps its suffix (results.csv ->
        # results.csv.store/), so that no two outputs share a store or a predictions file
        key = self.out.stem if self.out.suffix == ".parquet" else self.out.name
        self.dir = self.out.with_name(key + ".store")
        self.predictions_path = self.out.with_name(key + ".predictions.parquet")
        self.records: list[Record] = []
        self.notes: list[str] = []
        self._lock_fd: int | None = None

    @property
    def journal(self) -> Path:
        return self.dir / "journal.jsonl"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def lock_path(self) -> Path:
        return self.dir / "lock"

    # ---- opening -------------------------------------------------------------------------
    def open(self, *, write: bool = True) -> Store:
        """Lock the store, then create it or read it (repairing only a torn last line).

        `write=False` reads a store that a sweep may be writing: no lock, nothing created or
        repaired, and a torn last line (perhaps a write in progress) is left alone.
        """
        legacy = self._legacy_dir()
        if not write:
            if legacy is not None:  # read where it is; the next sweep moves it
                self.dir = legacy
            if not self.manifest.exists():
                raise StoreError(f"{self.out}: no measurement store ({self.dir.name}/ missing)")
            self._check_manifest()
            self.records = self._read(repair=False)
            return self
        if legacy is None and not self.dir.exists() and self.out.exists():
            raise StoreError(
                f"{self.out}: exists but has no store ({self.dir.name}/ missing); "
                "refusing to overwrite it: choose another --out or move it away"
            )
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"{self.dir}: not a folder; cannot hold a measurement store")
        self._check_neighbours()
        if legacy is not None:
            self._adopt(legacy)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock()
        try:
            if self._manifest_lost():
                # the manifest is only a label: a crash during the first open (empty or torn)
                # or a deleted one is rewritten, and the journal, the truth, is read as it is
                if self.manifest.exists() or self.journal.exists():
                    self.notes.append(f"{self.manifest}: missing or unreadable; rebuilt")
                tmp = self.manifest.with_name(".manifest.json.tmp")
                content = (json.dumps(self._manifest_content()) + "\n").encode()
                try:
                    _write_file(tmp, content)
                    os.replace(tmp, self.manifest)
                    self.journal.touch()
                except OSError as exc:  # a full disk: nothing measured yet, nothing left over
                    tmp.unlink(missing_ok=True)
                    raise StoreError(
                        f"{self.manifest}: cannot write it: {(exc.strerror or str(exc)).lower()}"
                    ) from None
                _fsync_dir(self.dir)
            self._check_manifest()
            if not self.journal.is_file():
                what = "a folder" if self.journal.is_dir() else "missing"
                raise StoreError(f"{self.journal}: {what}; the store is incomplete")
            self.records = self._read()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (the store stays as it is)."""
        if self._lock_fd is None:
            return
        try:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.lock_path}: cannot create the store lock ({exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise StoreError(
                f"{self.out}: another sweep is measuring into this store ({holder}); wait for "
                "it to finish or stop it, or choose another --out"
            ) from None
        previous = os.pread(fd, 4096, 0)
        if previous.strip():
            self.notes.append(
                f"{self.lock_path}: recovered the lock of a sweep that ended without releasing "
                f"it ({_holder(previous)})"
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._lock_fd = fd

    def _legacy_dir(self) -> Path | None:
        """The store of this output under the earlier naming, if it is there and not moved yet.

        Earlier versions named every output's store `<stem>.store/`, so `r.csv` and
        `r.parquet` shared `r.store/`. A `.parquet` output still uses that name; for `r.csv` (or `.jsonl`),
        `r.store/` is its store when its manifest names `r.csv`, or when the manifest was lost
        and `r.csv` is the only table of that stem (its journal is then checked against it).
        """
        if self.out.suffix == ".parquet" or os.path.lexists(self.dir):
            return None
        legacy = self.out.with_name(self.out.stem + ".store")
        if legacy.is_symlink() or not legacy.is_dir():
            return None
        try:
            meta = json.loads((legacy / "manifest.json").read_text())
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict):
            return legacy if meta.get("out") == self.out.name else None
        if not (legacy / "journal.jsonl").exists():
            return None
        tables = [
            self.out.with_suffix(suffix).name
            for suffix in (".parquet", ".csv", ".jsonl")
            if self.out.with_suffix(suffix).exists()
        ]
        return legacy if tables == [self.out.name] else None

    def _adopt(self, legacy: Path) -> None:
        """Lock the store found under its earlier name and move it (one rename) to its own."""
        target = self.dir
        self.dir = legacy
        self._lock()
        try:
            os.rename(legacy, target)
        except OSError as exc:  # it stays, and is used, where it is
            self.notes.append(f"{legacy}: kept where it is; cannot rename it to {target} ({exc})")
            return
        self.dir = target
        _fsync_dir(target.parent)
        old = self.out.with_name(self.out.stem + ".predictions.parquet")
        moved = ""
        if old.is_file() and not os.path.lexists(self.predictions_path):
            try:  # its rows are this store's (and rebuilt from the journal anyway)
                os.replace(old, self.predictions_path)
                moved = f", and {old.name} to {self.predictions_path.name}"
            except OSError:
                pass
        self.notes.append(
            f"{legacy}: the store of {self.out.name} moved to {target.name}/{moved} (stores "
            "are named after the whole output name, so r.csv and r.parquet no longer share one)"
        )

    def _manifest_content(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "out": self.out.name}

    def _manifest_lost(self) -> bool:
        """No manifest, or one that a crash left empty or cut (not valid JSON)."""
        try:
            json.loads(self.manifest.read_text())
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return not self.manifest.is_dir()
        return False

    def _check_neighbours(self) -> None:
        """Two outputs whose files would land on each other's are refused before anything."""
        # r.csv.parquet and r.csv would share r.csv.store; the manifest says whose it is (below)
        # x.parquet's predictions file is the table of a store written to x.predictions.parquet
        other = self.predictions_path.with_name(self.predictions_path.stem + ".store")
        if other.exists():
            raise StoreError(
                f"{self.out}: its predictions file {self.predictions_path.name} is the table of "
                f"another measurement store ({other.name}/); choose another --out"
            )
        if self.out.name.endswith(".predictions.parquet"):
            owner = self.out.with_name(self.out.name.removesuffix(".predictions.parquet"))
            if owner.with_name(owner.name + ".store").exists():
                raise StoreError(
                    f"{self.out}: is the predictions file of the store {owner.name}.store/; "
                    "choose another --out"
                )

    def _check_manifest(self) -> None:
        try:
            meta = json.loads(self.manifest.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.manifest}: unreadable store manifest ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{self.manifest}: not a scalelaw measurement store")
        if meta.get("version") != VERSION:
            raise StoreError(f"{self.manifest}: store version {meta.get('version')} unsupported")
        owner = meta.get("out")
        if owner is not None and owner != self.out.name:
            raise StoreError(
                f"{self.out}: the store {self.dir.name}/ holds the sweep written to {owner}; "
                f"resume with --out {owner} or choose another name"
            )

    def _read(self, repair: bool = True) -> list[Record]:
        try:
            data = self.journal.read_bytes()
        except OSError as exc:
            raise StoreError(f"{self.journal}: cannot be read ({exc})") from None
        lines = data.split(b"\n")
        torn = lines.pop()  # bytes after the last newline: empty unless a write was cut short
        records: list[Record] = []
        seen: dict[str, int] = {}
        for number, line in enumerate(lines, start=1):
            record = self._parse(line, number)
            for row in record.rows:
                first = seen.setdefault(str(row.get("config_id")), number)
                if first != number:
                    raise StoreError(
                        f"{self.journal}, line {number}: configuration {_label(row)} repeats "
                        f"line {first}; the store is corrupt (nothing was changed)"
                    )
            records.append(record)
        self._check_table(set(seen))
        if torn and repair:
            self._set_aside(data, len(data) - len(torn), len(lines) + 1)
        return records

    def _check_table(self, journalled: set[str]) -> None:
        """The table is a view of the journal: rows the journal lacks mean a lost journal."""
        if not self.out.exists():
            return
        try:
            table = read_frame(self.out)
        except Exception as exc:  # a view cut by a crash is rebuilt from the journal
            self.notes.append(f"{self.out}: unreadable ({exc}); rebuilt from the journal")
            return
        if "config_id" not in table.columns:
            raise StoreError(
                f"{self.out}: has no config_id column, so it is not this store's table; "
                "nothing was changed: choose another --out or move it away"
            )
        missing = set(table["config_id"].cast(pl.Utf8).to_list()) - journalled
        if missing:
            raise StoreError(
                f"{self.out}: holds {len(missing)} configurations that the journal "
                f"{self.journal} does not (the journal was emptied or cut short); nothing was "
                "changed: restore the journal, or move the table and the store away to start over"
            )

    def _parse(self, line: bytes, number: int) -> Record:
        where = f"{self.journal}, line {number}"
        try:
            obj = json.loads(line)
            payload = {k: obj[k] for k in ("unit", "rows", "predictions")}
            if "error" in obj:
                payload["error"] = str(obj["error"])
            checksum = obj["sha256"]
        except (ValueError, KeyError, TypeError):
            raise StoreError(
                f"{where}: not a valid record; the store is corrupt (nothing was changed; "
                "move the store away to start over)"
            ) from None
        if _checksum(payload) != checksum:
            raise StoreError(
                f"{where}: checksum mismatch; the store is corrupt (nothing was changed; "
                "move the store away to start over)"
            )
        return Record(
            payload["unit"], payload["rows"], payload["predictions"], payload.get("error")
        )

    def _set_aside(self, data: bytes, good: int, number: int) -> None:
        n = 1
        while (aside := self.journal.with_name(f"journal.jsonl.torn-{n}")).exists():
            n += 1
        aside.write_bytes(data[good:])
        with open(self.journal, "r+b") as fh:
            fh.truncate(good)
            os.fsync(fh.fileno())
        self.notes.append(
            f"{self.journal}, line {number}: incomplete record of an interrupted run "
            f"({len(data) - good} bytes) saved to {aside.name} and removed; it will be measured again"
        )

    # ---- state ---------------------------------------------------------------------------
    def finished(self) -> set[str]:
        """config_id of every configuration with a row."""
        return {row["config_id"] for rec in self.records for row in rec.rows}

    def failures(self) -> dict[str, str]:
        """unit -> error of units whose last record is a failure."""
        out: dict[str, str] = {}
        for rec in self.records:
            if rec.error is not None:
                out[rec.unit] = rec.error
            else:
                out.pop(rec.unit, None)
        return out

    def by_compute(self) -> dict[str, Record]:
        """The first record of each compute id (rows carry `compute_id`)."""
        out: dict[str, Record] = {}
        for rec in self.records:
            for row in rec.rows:
                out.setdefault(row["compute_id"], rec)
        return out

    # ---- writing -------------------------------------------------------------------------
    def append(self, record: Record, *, refresh: bool = True) -> None:
        """Journal `record` durably, then refresh the table and predictions views."""
        payload = record.payload()
        line = json.dumps({**payload, "sha256": _checksum(payload)}, sort_keys=True) + "\n"
        data = line.encode()
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                written = 0
                while written < len(data):  # a nearly full disk takes part of a line
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            except OSError as exc:
                # cut the part written, so that the journal ends on a whole line, as before
                os.ftruncate(fd, start)
                raise StoreError(
                    f"{self.journal}: cannot append the unit just measured: "
                    f"{(exc.strerror or str(exc)).lower()}; everything journalled before it "
                    "is kept: free some space and run the same command again"
                ) from None
        finally:
            os.close(fd)
        self.records.append(record)
        if refresh:
            self.write_views()

    def rows(self) -> list[dict[str, Any]]:
        return [row for rec in self.records for row in rec.rows]

    def table(self) -> pl.DataFrame:
        """Every row so far; `correct` is added when every per-sample score is 0 or 1."""
        rows = self.rows()
        if not rows:
            return pl.DataFrame()
        frame = pl.DataFrame(rows, infer_schema_length=None)
        scores = [p["score"] for rec in self.records for p in rec.predictions]
        if scores and set(scores) <= BINARY and "full_credit" in frame.columns:
            frame = frame.with_columns(pl.col("full_credit").alias("correct"))
        return frame

    def predictions(self) -> pl.DataFrame:
        preds = [p for rec in self.records for p in rec.predictions]
        return pl.DataFrame(preds, infer_schema_length=None) if preds else pl.DataFrame()

    def write_views(self) -> None:
        table = self.table()
        if not table.height:
            return
        try:
            atomic_write(table, self.out)
            atomic_write(self.predictions(), self.predictions_path)
        except StoreError as exc:
            # the views are rebuilt from the journal, which already holds every finished unit
            raise StoreError(
                f"{exc}; everything measured is kept in {self.journal}: free some space (or fix "
                "the folder) and run the same command again to rebuild the tables"
            ) from None


def _holder(text: bytes) -> str:
    try:
        info = json.loads(text)
        return f"PID {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def _label(row: dict[str, Any]) -> str:
    keys = ("model", "task", "seq_len", "method", "compression")
    return " ".join(f"{k}={row[k]}" for k in keys if k in row) or str(row.get("config_id"))


def iter_units(records: Iterable[Record]) -> Iterable[str]:
    return (rec.unit for rec in records)
