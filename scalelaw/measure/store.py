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

This module is torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

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


def _checksum(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to `path` (Parquet, CSV or JSON Lines by suffix) all at once or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".csv":
        frame.write_csv(tmp)
    elif path.suffix in {".jsonl", ".ndjson"}:
        frame.write_ndjson(tmp)
    else:
        frame.write_parquet(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Store:
    """The journal, table and predictions of one sweep output."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.suffix not in {".parquet", ".csv", ".jsonl"}:
            raise StoreError(f"{self.out}: output must end in .parquet, .csv or .jsonl")
        self.dir = self.out.with_name(self.out.stem + ".store")
        self.journal = self.dir / "journal.jsonl"
        self.manifest = self.dir / "manifest.json"
        self.predictions_path = self.out.with_name(self.out.stem + ".predictions.parquet")
        self.records: list[Record] = []
        self.notes: list[str] = []

    # ---- opening -------------------------------------------------------------------------
    def open(self) -> Store:
        """Create the store, or read an existing one (repairing only a torn last line)."""
        if not self.dir.exists():
            if self.out.exists():
                raise StoreError(
                    f"{self.out}: exists but has no store ({self.dir.name}/ missing); "
                    "refusing to overwrite it: choose another --out or move it away"
                )
            self.dir.mkdir(parents=True)
            self.manifest.write_text(json.dumps({"format": FORMAT, "version": VERSION}) + "\n")
            self.journal.touch()
            _fsync_dir(self.dir)
            return self
        self._check_manifest()
        if not self.journal.exists():
            raise StoreError(f"{self.journal}: missing; the store is incomplete")
        self.records = self._read()
        return self

    def _check_manifest(self) -> None:
        try:
            meta = json.loads(self.manifest.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.manifest}: unreadable store manifest ({exc})") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.manifest}: not a scalelaw measurement store")
        if meta.get("version") != VERSION:
            raise StoreError(f"{self.manifest}: store version {meta.get('version')} unsupported")

    def _read(self) -> list[Record]:
        data = self.journal.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # bytes after the last newline: empty unless a write was cut short
        records: list[Record] = []
        for number, line in enumerate(lines, start=1):
            records.append(self._parse(line, number))
        if torn:
            self._set_aside(data, len(data) - len(torn), len(lines) + 1)
        return records

    def _parse(self, line: bytes, number: int) -> Record:
        where = f"{self.journal}, line {number}"
        try:
            obj = json.loads(line)
            payload = {k: obj[k] for k in ("unit", "rows", "predictions")}
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
        return Record(payload["unit"], payload["rows"], payload["predictions"])

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
        payload = {"unit": record.unit, "rows": record.rows, "predictions": record.predictions}
        line = json.dumps({**payload, "sha256": _checksum(payload)}, sort_keys=True) + "\n"
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
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
        if table.height:
            atomic_write(table, self.out)
            atomic_write(self.predictions(), self.predictions_path)


def iter_units(records: Iterable[Record]) -> Iterable[str]:
    return (rec.unit for rec in records)
