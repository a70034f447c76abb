"""What both importers share: the error type, the import report, checked field reads and output.

An importer reads result files that another tool wrote and turns them into the accuracy-point
table (see `scalelaw.data`). It reads data only: JSON with `json`, YAML with a safe loader, CSV
with a CSV parser; nothing in a result folder is imported or executed. Result folders may be
hostile, so `walk` follows only links that stay inside the folder, and `read_text` refuses
files that are not regular or are over a size limit before opening them.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

import polars as pl

from scalelaw.data import (
    CONFIG_COLUMNS,
    RUN_COLUMNS,
    DataError,
    as_float,
    parse_assignments,
    validate,
)
from scalelaw.errors import ScalelawError
from scalelaw.measure.store import atomic_write
from scalelaw.schema import shown

#: Output formats, by file extension.
OUTPUT_SUFFIXES = (".parquet", ".csv", ".jsonl")

#: Counts written as integers (the loader reads them as numbers either way).
#: The accuracy-table columns every importer writes first, in this order; each adds its own.
TABLE_COLUMNS = (
    "task",
    "seq_len",
    "model",
    "params",
    "family",
    "method",
    "phase",
    "compression",
    "requested_compression",
    "achieved_compression",
    "score",
    "score_var",
    "samples",
    "metric",
)
_INTEGER_COLUMNS = ("seq_len", "samples", "max_output_tokens", "max_context_length", "run")

#: Optional table columns that the loader requires to be complete when they are present.
_COMPLETE_OR_ABSENT = ("achieved_compression", "score_var", "samples", "seq_len", "family")

#: Size limits, in bytes, checked before a file is opened. Real files are far smaller (a
#: metrics.json of a few KiB, a config.yaml under 2 KiB); YAML's limit is the lowest because
#: PyYAML's safe loader reads well under 1 MiB a second.
PREDICTIONS_LIMIT = 512 * 2**20
JSON_LIMIT = 16 * 2**20
YAML_LIMIT = 1 * 2**20

#: The deepest nesting of lists and objects read from JSON or YAML (result files use up to 3).
NESTING_LIMIT = 64

#: The largest whole number (count, length) read: a float holds integers exactly up to 2**53.
WHOLE_LIMIT = 2**53

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_KINDS = {"d": "a folder", "p": "a FIFO", "c": "a character device", "b": "a block device"}


class ResultFolderError(ScalelawError):
    """A result file or folder that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class Skip:
    """A result file or folder left out of the table, and why."""

    path: str
    reason: str


@dataclass
class ImportResult:
    """The imported table with what was read, what was skipped and any notes for the user."""

    table: pl.DataFrame
    files_read: int
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: files read, rows, and the skipped ones counted by reason."""
        line = f"{self.files_read} result files read, {self.table.height} rows"
        if not self.skipped:
            return line + ", none skipped"
        counts = Counter(s.reason for s in self.skipped)
        reasons = "; ".join(f"{n} {reason}" for reason, n in counts.most_common())
        return f"{line}, {len(self.skipped)} skipped ({reasons})"


def walk(root: Path, wanted: Callable[[str], object]) -> tuple[list[Path], list[Skip]]:
    """The files under `root` with `wanted` names, in sorted order, and the links not followed.

    A link to a file inside `root` is read as that file. A link to a folder inside `root` is
    not walked: that folder is read once, under its own path. Links out of `root`, links that
    loop and dangling links are skipped with the reason (a link to a file only when its name is
    wanted). Nothing is opened here: a FIFO or device with a wanted name is listed, and
    `read_text` or `check_file` refuses it.
    """
    top = Path(os.path.realpath(root))
    found: list[Path] = []
    skipped: list[Skip] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        where = folder.relative_to(root).as_posix()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skip(where, f"cannot list ({exc.strerror or exc})"))
            continue
        subfolders: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            if not entry.is_symlink():
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(path)
                elif wanted(entry.name):
                    found.append(path)
                continue
            reason = _unfollowed(path, top, bool(wanted(entry.name)))
            if reason:
                skipped.append(Skip(path.relative_to(root).as_posix(), reason))
            elif wanted(entry.name) and not path.is_dir():
                found.append(path)
        stack.extend(reversed(subfolders))
    return found, skipped


def _unfollowed(link: Path, top: Path, wanted: bool) -> str | None:
    """Why `link` is not followed (None: it is), without opening its target."""
    try:
        is_folder = stat.S_ISDIR(os.stat(link).st_mode)
    except OSError as exc:
        return "symlink loop" if exc.errno == errno.ELOOP else "broken symlink"
    target = Path(os.path.realpath(link))
    if not target.is_relative_to(top):
        return "symlink to outside the folder" if is_folder or wanted else None
    if is_folder and Path(os.path.realpath(link.parent)).is_relative_to(target):
        return "symlink loop"
    return None


def check_file(path: Path, limit: int) -> None:
    """Refuse `path` unopened unless it is a regular file of at most `limit` bytes."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ResultFolderError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # opening a FIFO blocks until something writes to it; a device can be endless
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.filemode(info.st_mode)[0], "a socket or other special file")
        raise ResultFolderError(f"{path}: not a regular file ({kind}); not read")
    if info.st_size > limit:
        raise ResultFolderError(
            f"{path}: {info.st_size / 2**20:.1f} MiB, over the {limit >> 20} MiB limit for "
            "this file; not read"
        )


def read_text(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes (see `check_file`)."""
    check_file(path, limit)
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check reads empty instead of blocking
        nonblocking = getattr(os, "O_NONBLOCK", 0)
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | nonblocking)) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ResultFolderError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ResultFolderError(f"{path}: grew past the {limit >> 20} MiB limit while read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultFolderError(f"{path}: not UTF-8 text") from None


def load_json(path: Path, limit: int = JSON_LIMIT) -> Any:
    """Parse a JSON file (NaN reads as a float; `number` refuses it with the field's name)."""
    text = read_text(path, limit)
    # json recurses once per level: deep nesting is refused before it is parsed
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    if max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0) > NESTING_LIMIT:
        raise ResultFolderError(f"{path}: nested deeper than {NESTING_LIMIT} levels; not read")
    try:
        return json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise ResultFolderError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None


def _json_int(text: str) -> int | float:
    # int() refuses over 4300 digits (a ValueError naming no field): such a number is read as
    # a float (inf), which `number` refuses naming the field
    return int(text) if len(text) <= 4300 else float(text)


def number(
    value: Any,
    where: str,
    *,
    low: float | None = None,
    high: float | None = None,
    below: float | None = None,
    integer: bool = False,
) -> float:
    """`value` as a float, checked; `where` names the file and field for the error.

    A whole number (`integer`) must also be at most `WHOLE_LIMIT`.
    """
    # JSON true/false arrive as bool, a subclass of int: a flag is not a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultFolderError(f"{where}: {shown(value)} is not a number")
    try:
        x = float(value)
    except OverflowError:  # an int beyond any float
        raise ResultFolderError(f"{where}: {shown(value)} is out of range") from None
    if not math.isfinite(x):
        raise ResultFolderError(f"{where}: {shown(value)} is not finite")
    if integer and not x.is_integer():
        raise ResultFolderError(f"{where}: {shown(value)} is not a whole number")
    if integer and abs(x) > WHOLE_LIMIT:
        raise ResultFolderError(
            f"{where}: {shown(value)} is out of range (whole numbers are read up to 2^53)"
        )
    if low is not None and x < low:
        raise ResultFolderError(f"{where}: {shown(value)} is below {low:g}")
    if high is not None and x > high:
        raise ResultFolderError(f"{where}: {shown(value)} is above {high:g}")
    if below is not None and x >= below:
        raise ResultFolderError(f"{where}: {shown(value)} must be below {below:g}")
    return x


def field_of(doc: Mapping[str, Any], name: str, path: Path) -> Any:
    """A required field of a parsed document."""
    if name not in doc:
        raise ResultFolderError(f"{path}: field '{name}' is missing")
    return doc[name]


def compression_from_removed(fraction: float) -> float:
    """C = 1 / (1 - fraction removed): sparsity 0.9 and a KV ratio of 0.9 both give C = 10."""
    return 1.0 / (1.0 - fraction)


def parse_params(items: Iterable[str]) -> dict[str, float]:
    """``MODEL=7.6e9`` assignments (repeatable, or comma-separated) into parameter counts."""
    out: dict[str, float] = {}
    for model, text in parse_assignments(items, "--params").items():
        value = as_float(text, f"--params {model}")
        if value <= 0:
            raise ResultFolderError(f"--params {model}: {text} must be > 0")
        out[model] = value
    return out


def finish(
    rows: list[dict[str, Any]],
    *,
    root: Path,
    order: Sequence[str],
    variants: Sequence[str] = (),
    skipped: Sequence[Skip] = (),
) -> tuple[pl.DataFrame, list[str]]:
    """Rows into a validated table in `order`, and notes for the user.

    A canonical optional column (`seq_len`, `score_var`, ...) that only some rows have is
    dropped, since the loader needs it complete; the note says so. Configurations that repeat
    because they differ only in a `variants` column (query-aware or not, a needle depth, ...)
    are reported, since a fit needs them told apart with `--where` or pooled.
    """
    if not rows:
        reasons = Counter(s.reason for s in skipped)
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        raise ResultFolderError(f"{root}: nothing to import ({len(skipped)} skipped: {why})")
    frame = pl.DataFrame(rows, infer_schema_length=None)
    notes: list[str] = []
    for column in _COMPLETE_OR_ABSENT:
        if column in frame.columns:
            have = frame.height - frame[column].null_count()
            if have == 0:
                frame = frame.drop(column)
            elif have < frame.height:
                frame = frame.drop(column)
                notes.append(
                    f"column '{column}' left out: only {have} of {frame.height} rows have it"
                )
    # a setting no row has (no needle depth in a RULER tree) is no column
    empty = [c for c in frame.columns if frame[c].null_count() == frame.height]
    frame = frame.select([c for c in order if c in frame.columns and c not in empty])
    try:
        frame = validate(frame, source=str(root), replicates=True)
    except DataError as exc:
        # Every value was checked against its file already; this names the table row instead.
        raise ResultFolderError(f"imported table: {exc}") from None
    frame = frame.with_columns(
        pl.col(c).cast(pl.Int64) for c in _INTEGER_COLUMNS if c in frame.columns
    )
    notes.extend(_repeats(frame, variants))
    return frame, notes


def _repeats(frame: pl.DataFrame, variants: Sequence[str]) -> list[str]:
    keys = [c for c in (*CONFIG_COLUMNS, *RUN_COLUMNS) if c in frame.columns]
    repeated = frame.group_by(keys).agg(pl.len()).filter(pl.col("len") > 1)
    if not repeated.height:
        return []
    differing = [
        v
        for v in variants
        if v in frame.columns
        and frame.group_by(keys).agg(pl.col(v).n_unique()).filter(pl.col(v) > 1).height
    ]
    why = f" (they differ in {', '.join(differing)})" if differing else ""
    pick = f"--where {differing[0]}=..." if differing else "--where"
    return [
        f"{repeated.height} configurations appear more than once{why}; fit one with "
        f"{pick}, or pool them with --aggregate mean"
    ]


def write_table(frame: pl.DataFrame, out: str | Path) -> Path:
    """Write `frame` by extension (.parquet, .csv, .jsonl), all at once or not at all."""
    path = Path(out)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(frame, path)
    return path


def check_output(path: str | Path) -> None:
    """Refuse an output name whose extension says no format we write (before any reading)."""
    suffix = Path(path).suffix
    if suffix not in OUTPUT_SUFFIXES:
        raise ResultFolderError(
            f"{path}: unknown output type '{suffix}' (expected {', '.join(OUTPUT_SUFFIXES)})"
        )
