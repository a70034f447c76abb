"""The accuracy-point table: read, validate and normalise (the contract between measure and fit).

One row per measured configuration, in long format. CSV, Parquet and JSON Lines load. Bad input
raises `DataError` with one line naming the file, the row (1-based, counting data rows) and the
column; nothing is silently dropped or coerced.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

#: Short names accepted for the canonical columns.
ALIASES: dict[str, str] = {"N": "params", "L": "seq_len", "C": "compression"}

#: Canonical numeric columns and the check each must pass.
NUMERIC_COLUMNS = (
    "params",
    "seq_len",
    "compression",
    "score",
    "correct",
    "samples",
    "score_var",
    "achieved_compression",
)
LABEL_COLUMNS = ("task", "method", "phase", "model", "family")
#: Columns that identify a configuration (used to find conflicting duplicates).
CONFIG_COLUMNS = ("params", "seq_len", "compression", *LABEL_COLUMNS)
SPARSE_COVARIATES = ("params", "seq_len", "compression")


class DataError(ValueError):
    """A table failed validation; the message names file, row and column."""


def canonical(name: str) -> str:
    """The canonical column name for `name` (`N` -> `params`, ...)."""
    return ALIASES.get(name, name)


def _where(source: str, row: int | None = None, column: str | None = None) -> str:
    parts = [source]
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)


def read_frame(path: str | Path) -> pl.DataFrame:
    """Read a CSV, Parquet or JSON Lines file into a polars frame, without validation."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a CSV, Parquet or JSON Lines file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(p)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pl.read_ndjson(p)
        if suffix in (".csv", ".tsv", ".txt"):
            return pl.read_csv(
                p,
                separator="\t" if suffix == ".tsv" else ",",
                comment_prefix="#",
                infer_schema_length=None,
            )
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: cannot parse as {suffix[1:]}: {first}") from None
    raise DataError(f"{p}: unknown file type '{suffix}' (expected .csv, .parquet or .jsonl)")


def _rename(frame: pl.DataFrame, mapping: Mapping[str, str] | None, source: str) -> pl.DataFrame:
    """Apply the user's column map (covariate -> column) and the standard aliases."""
    renames: dict[str, str] = {}
    for target, column in (mapping or {}).items():
        if column not in frame.columns:
            raise DataError(
                f"{source}: column '{column}' (mapped to '{target}') not found; "
                f"columns are {', '.join(frame.columns)}"
            )
        renames[column] = canonical(target)
    for alias, name in ALIASES.items():
        if alias in frame.columns and alias not in renames and name not in frame.columns:
            renames[alias] = name
    if not renames:
        return frame
    targets = list(renames.values())
    clash = [t for t in targets if t in frame.columns and t not in renames]
    if clash or len(set(targets)) != len(targets):
        raise DataError(f"{source}: column '{(clash or targets)[0]}' would be defined twice")
    return frame.rename(renames)


def _numeric(frame: pl.DataFrame, column: str, source: str) -> pl.DataFrame:
    """Cast a column to Float64, naming the first value that is not a number."""
    series = frame[column]
    if series.dtype.is_numeric():
        return frame.with_columns(series.cast(pl.Float64))
    cast = series.cast(pl.Float64, strict=False)
    bad = (cast.is_null() & series.is_not_null()).arg_true()
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{_where(source, i + 1, column)}: value {series[i]!r} is not a number")
    return frame.with_columns(cast)


def _first_bad(mask: pl.Series) -> int | None:
    hits = mask.fill_null(False).arg_true()
    return int(hits[0]) if len(hits) else None


def _check_numeric(frame: pl.DataFrame, column: str, source: str) -> None:
    s = frame[column]
    i = _first_bad(s.is_null())
    if i is not None:
        raise DataError(f"{_where(source, i + 1, column)}: missing value")
    i = _first_bad(~s.is_finite())
    if i is not None:
        raise DataError(f"{_where(source, i + 1, column)}: value {s[i]} is not finite")
    rules: dict[str, tuple[pl.Series, str]] = {
        "params": (s <= 0, "must be > 0"),
        "seq_len": (s <= 0, "must be > 0"),
        "compression": (s < 1, "must be >= 1 (1 means dense)"),
        "achieved_compression": (s < 1, "must be >= 1"),
        "score": ((s < 0) | (s > 1), "must lie in [0, 1]"),
        "samples": ((s < 1) | (s != s.round()), "must be a positive whole number"),
        "correct": ((s < 0) | (s != s.round()), "must be a non-negative whole number"),
        "score_var": (s < 0, "must be >= 0"),
    }
    if column in rules:
        mask, why = rules[column]
        i = _first_bad(mask)
        if i is not None:
            raise DataError(f"{_where(source, i + 1, column)}: value {s[i]} {why}")


def validate(
    frame: pl.DataFrame,
    *,
    source: str = "<table>",
    require: Sequence[str] = (),
    response: str = "score",
    column_map: Mapping[str, str] | None = None,
    labels: Sequence[str] = (),
) -> pl.DataFrame:
    """Validate and normalise a table; return it with canonical names and Float64 numbers.

    `require` lists covariate columns the caller needs (canonical names or aliases);
    `response` is the observed quantity (`score` may be derived from `correct` / `samples`).
    """
    frame = _rename(frame, column_map, source)
    if frame.height == 0:
        raise DataError(f"{source}: the table has no rows")
    response = canonical(response)
    needed = [canonical(c) for c in require]
    for column in [*needed, *labels]:
        if column not in frame.columns:
            raise DataError(
                f"{source}: required column '{column}' is missing; columns are "
                f"{', '.join(frame.columns)}"
            )
    has_counts = "correct" in frame.columns and "samples" in frame.columns
    if response not in frame.columns and not (response == "score" and has_counts):
        raise DataError(
            f"{source}: required column '{response}' is missing"
            + (" (or 'correct' and 'samples')" if response == "score" else "")
            + f"; columns are {', '.join(frame.columns)}"
        )
    numeric = [c for c in (*NUMERIC_COLUMNS, *needed, response) if c in frame.columns]
    for column in dict.fromkeys(numeric):
        frame = _numeric(frame, column, source)
        _check_numeric(frame, column, source)
    if has_counts:
        i = _first_bad(frame["correct"] > frame["samples"])
        if i is not None:
            raise DataError(
                f"{_where(source, i + 1, 'correct')}: {frame['correct'][i]:g} correct "
                f"out of {frame['samples'][i]:g} samples"
            )
        derived = frame["correct"] / frame["samples"]
        if "score" not in frame.columns:
            frame = frame.with_columns(derived.alias("score"))
        else:
            i = _first_bad((frame["score"] - derived).abs() > 1e-6)
            if i is not None:
                raise DataError(
                    f"{_where(source, i + 1, 'score')}: score {frame['score'][i]} disagrees "
                    f"with correct/samples = {derived[i]:.6g}"
                )
    for column in dict.fromkeys([*LABEL_COLUMNS, *labels]):
        if column in frame.columns:
            i = _first_bad(frame[column].is_null())
            if i is not None:
                raise DataError(f"{_where(source, i + 1, column)}: missing label")
            frame = frame.with_columns(pl.col(column).cast(pl.String))
    keys = [c for c in dict.fromkeys([*needed, *CONFIG_COLUMNS, *labels]) if c in frame.columns]
    _check_duplicates(frame, source, response, keys)
    return frame


def _check_duplicates(frame: pl.DataFrame, source: str, response: str, keys: list[str]) -> None:
    """Repeated configurations are allowed only when they agree on every measured value."""
    if not keys:
        return
    values = [c for c in (response, "correct", "samples") if c in frame.columns]
    indexed = frame.with_row_index("__row")
    groups = indexed.group_by(keys, maintain_order=True).agg(
        pl.col("__row"), *[pl.col(v).n_unique().alias(f"__n_{v}") for v in values]
    )
    for v in values:
        bad = groups.filter(pl.col(f"__n_{v}") > 1)
        if bad.height:
            rows = bad["__row"][0].to_list()
            raise DataError(
                f"{_where(source, rows[1] + 1, v)}: configuration repeats row {rows[0] + 1} "
                f"with a different value"
            )


def load_table(
    data: str | Path | pl.DataFrame,
    *,
    require: Sequence[str] = (),
    response: str = "score",
    column_map: Mapping[str, str] | None = None,
    where: Mapping[str, str] | None = None,
    labels: Sequence[str] = (),
) -> pl.DataFrame:
    """Load and validate an accuracy-point table from a file, a dataset name or a frame.

    `where` keeps rows whose label columns equal the given values (e.g. ``{"phase": "prefill"}``);
    a value that selects nothing is an error rather than an empty fit.
    """
    if isinstance(data, pl.DataFrame):
        frame, source = data, "<table>"
    else:
        path = resolve_path(data)
        frame, source = read_frame(path), str(data)
    for column, value in (where or {}).items():
        column = canonical(column)
        if column not in frame.columns:
            raise DataError(f"{source}: cannot filter on '{column}': no such column")
        kept = frame.filter(pl.col(column).cast(pl.String) == value)
        if kept.height == 0:
            levels = ", ".join(sorted(map(str, frame[column].unique().to_list())))
            raise DataError(f"{source}: no row has {column} = {value!r} (values: {levels})")
        frame = kept
    return validate(
        frame,
        source=source,
        require=require,
        response=response,
        column_map=column_map,
        labels=labels,
    )


def resolve_path(name: str | Path) -> Path:
    """A file path, or a packaged dataset given as ``measured:NAME``."""
    text = str(name)
    if text.startswith("measured:"):
        from scalelaw.datasets import dataset_path

        return dataset_path(text.split(":", 1)[1])
    return Path(text)


def table_hash(frame: pl.DataFrame) -> str:
    """A stable content hash of a table (column order and row order included)."""
    h = hashlib.sha256()
    h.update(",".join(frame.columns).encode())
    for column in frame.columns:
        h.update(frame[column].cast(pl.String).fill_null("\0").str.join("\x1f").item().encode())
    return h.hexdigest()[:16]


def levels(frame: pl.DataFrame, column: str) -> list[str]:
    """Sorted distinct labels of a column."""
    return sorted(frame[column].cast(pl.String).unique().to_list())


def parse_assignments(items: Iterable[str], what: str = "assignment") -> dict[str, str]:
    """Parse ``KEY=VALUE`` strings (also comma-separated) into a dict, with clear errors."""
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            # `phase==prefill` and `phase='prefill'` mean what they say: one value, no quotes
            value = value.removeprefix("=").strip().strip("'\"")
            if not sep or not key.strip() or not value:
                raise DataError(f"{what} '{part}' is not of the form KEY=VALUE")
            out[key.strip()] = value
    return out


def as_float(text: str, where: str) -> float:
    """Parse a number such as ``7e9`` or ``128K`` (K means 1024, as in sequence lengths)."""
    t = text.strip()
    scale = 1024.0 if t[-1:] in ("k", "K") else 1.0
    body = t[:-1] if scale != 1.0 else t
    try:
        value = float(body) * scale
    except ValueError:
        raise DataError(f"{where}: '{text}' is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: '{text}' is not finite")
    return value
