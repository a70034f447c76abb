"""The accuracy-point table: read, validate and normalise (the contract between measure and fit).

One row per measured configuration, in long format. CSV, Parquet and JSON Lines load. Bad input
raises `DataError` with one line naming the file, the row (1-based, counting data rows) and the
column; nothing is silently dropped or coerced.

Repeated configurations (replicate runs: seeds, learning-rate sweeps) are an error unless they
are marked: a `run` (or `replicate`) column, `replicates=True` to keep them all, or
`aggregate="mean"` to pool them into one row each.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from scalelaw.datasets import dataset_path
from scalelaw.errors import DataError

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
    # combined runs (a prefill method and a decode method): each phase's ratio
    "prefill_compression",
    "decode_compression",
    "achieved_prefill_compression",
    "achieved_decode_compression",
)
LABEL_COLUMNS = ("task", "method", "phase", "model", "family")
#: Columns that identify a configuration (used to find conflicting duplicates).
CONFIG_COLUMNS = (
    "params",
    "seq_len",
    "compression",
    "prefill_compression",
    "decode_compression",
    *LABEL_COLUMNS,
)
SPARSE_COVARIATES = ("params", "seq_len", "compression")
RATIO_COLUMNS = ("prefill_compression", "decode_compression")
#: Columns that tell replicate runs of one configuration apart (part of the configuration key).
RUN_COLUMNS = ("run", "replicate")
#: How `aggregate` may pool repeated configurations.
AGGREGATES = ("mean",)


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


#: File types `read_frame` reads, by suffix.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson", ".json")


def read_frame(path: str | Path) -> pl.DataFrame:
    """Read a CSV, Parquet or JSON Lines file into a polars frame, without validation.

    The path is read as written: polars would expand ``x?.csv`` or ``data[2024].csv`` as a
    glob, so the file is opened here and polars reads the open file. Every CSV line is data
    (no comment prefix drops a row whose first field starts with ``#``). Columns of lists,
    structs or bytes are refused by name.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a CSV, Parquet or JSON Lines file")
    if not p.is_file():  # a FIFO or a device would block or never end
        raise DataError(f"{p}: not a regular file, expected a CSV, Parquet or JSON Lines file")
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{p}: unknown file type '{suffix}' (expected .csv, .parquet or .jsonl)")
    try:
        with open(p, "rb") as handle:
            if suffix != ".parquet" and (nul := first_nul_byte(handle)) is not None:
                raise DataError(f"{p}: {nul_byte_message(nul)}")
            if suffix == ".parquet":
                frame = pl.read_parquet(handle)
            elif suffix in (".jsonl", ".ndjson", ".json"):
                frame = pl.read_ndjson(handle)
            else:
                frame = pl.read_csv(
                    handle,
                    separator="\t" if suffix == ".tsv" else ",",
                    comment_prefix=None,
                    infer_schema_length=None,
                )
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: cannot parse as {suffix[1:]}: {first}") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if suffix in (".csv", ".tsv"):
        # polars renames a repeated header name to NAME_duplicated_K: reading one of the two
        # and ignoring the other would be a silent choice
        for column in frame.columns:
            base, sep, k = column.rpartition("_duplicated_")
            if sep and k.isdigit() and base in frame.columns:
                raise DataError(f"{p}: column '{base}' appears more than once in the header")
    check_flat(frame, str(p))
    return frame


def first_nul_byte(handle: BinaryIO) -> int | None:
    """The 1-based position of the first NUL byte of an open file, else None (rewound).

    No UTF-8 text table holds one: a binary file (or UTF-16 text) named .csv is refused before
    polars reads it. A few gigabytes of NUL bytes took polars minutes and more than 15 GB of
    memory to read as a CSV table of no rows.
    """
    offset = 0
    while chunk := handle.read(1 << 20):  # constant memory, whatever the file's size
        at = chunk.find(b"\x00")
        if at >= 0:
            return offset + at + 1
        offset += len(chunk)
    handle.seek(0)
    return None


def nul_byte_message(position: int) -> str:
    return (
        f"byte {position} is a NUL byte; a CSV or JSON Lines table is UTF-8 text (is it a "
        "binary file, or text saved as UTF-16?)"
    )


def check_flat(frame: pl.DataFrame, source: str) -> None:
    """Every column holds plain values (numbers, text, true/false), one per row."""
    for column, dtype in frame.schema.items():
        if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
            raise DataError(
                f"{source}, column '{column}': holds {dtype} values; a table takes numbers "
                "and text, one value per cell"
            )


def _rename(frame: pl.DataFrame, mapping: Mapping[str, str] | None, source: str) -> pl.DataFrame:
    """Apply the user's column map (covariate -> column) and the standard aliases.

    A table with both a name and its alias (`N` and `params`) is refused unless the column
    map says which one to use: reading one and ignoring the other would be a silent choice.
    """
    renames: dict[str, str] = {}
    for target, column in (mapping or {}).items():
        if column not in frame.columns:
            raise DataError(
                f"{source}: column '{column}' (mapped to '{target}') not found; "
                f"columns are {', '.join(frame.columns)}"
            )
        renames[column] = canonical(target)
    chosen = set(renames) | set(renames.values())
    for alias, name in ALIASES.items():
        if alias not in frame.columns or alias in renames:
            continue
        if name not in frame.columns:
            renames[alias] = name
        elif name not in chosen:
            raise DataError(
                f"{source}: columns '{alias}' and '{name}' both give {name} ('{alias}' is its "
                f"short name); keep one of them, or use '{name}' with --map {alias}={name}"
            )
    if not renames:
        return frame
    targets = list(renames.values())
    clash = [t for t in targets if t in frame.columns and t not in renames]
    if clash or len(set(targets)) != len(targets):
        raise DataError(f"{source}: column '{(clash or targets)[0]}' would be defined twice")
    return frame.rename(renames)


def _numeric(frame: pl.DataFrame, column: str, source: str) -> pl.DataFrame:
    """Cast a column to Float64, naming the first value that is not a number.

    Only numbers and text that reads as numbers pass: true/false would otherwise become 1/0
    and dates their epoch count.
    """
    series = frame[column]
    if series.dtype.is_numeric():
        return frame.with_columns(series.cast(pl.Float64))
    if series.dtype == pl.Boolean:
        raise DataError(f"{_where(source, None, column)}: holds true/false values, not numbers")
    if series.dtype not in (pl.String, pl.Null):
        raise DataError(f"{_where(source, None, column)}: holds {series.dtype} values, not numbers")
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
        "seq_len": (s < 1, "must be >= 1 (a length in tokens)"),
        "compression": (s < 1, "must be >= 1 (1 means dense)"),
        "achieved_compression": (s < 1, "must be >= 1"),
        "prefill_compression": (s < 1, "must be >= 1 (1 means dense)"),
        "decode_compression": (s < 1, "must be >= 1 (1 means dense)"),
        "achieved_prefill_compression": (s < 1, "must be >= 1"),
        "achieved_decode_compression": (s < 1, "must be >= 1"),
        "score": ((s < 0) | (s > 1), "must lie in [0, 1]"),
        "samples": ((s < 1) | (s != s.round()), "must be a positive whole number"),
        "correct": ((s < 0) | (s != s.round()), "must be a non-negative whole number"),
        "score_var": (s < 0, "must be >= 0"),
        "replicates": ((s < 1) | (s != s.round()), "must be a positive whole number"),
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
    replicates: bool = False,
    aggregate: str | None = None,
) -> pl.DataFrame:
    """Validate and normalise a table; return it with canonical names and Float64 numbers.

    `require` lists covariate columns the caller needs (canonical names or aliases);
    `response` is the observed quantity (`score` may be derived from `correct` / `samples`).

    A configuration is the covariates, the labels and, when present, a `run` or `replicate`
    column. A configuration repeated with a different measured value is an error unless
    `replicates` keeps every row as its own observation or `aggregate="mean"` pools them (see
    `pool_replicates`). Identical repeated rows are always kept as they are.
    """
    _check_replicate_options(replicates, aggregate)
    return _validate_table(
        frame,
        source=source,
        column_map=column_map,
        conditions=(),
        require=require,
        response=response,
        labels=labels,
        replicates=replicates,
        aggregate=aggregate,
    )


def _validate_table(
    frame: pl.DataFrame,
    *,
    source: str,
    column_map: Mapping[str, str] | None,
    conditions: Sequence[Condition],
    require: Sequence[str],
    response: str,
    labels: Sequence[str],
    replicates: bool,
    aggregate: str | None,
) -> pl.DataFrame:
    """`validate`, with the rows filtered by `conditions` between renaming and checking."""
    check_flat(frame, source)
    # Rename first so that filters may name mapped and aliased columns (`N` in a file of `N`).
    frame = _rename(frame, column_map, source)
    frame = apply_where(frame, conditions, source)
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
    if aggregate is not None:
        return pool_replicates(frame, keys, response=response, source=source)
    if not replicates and keys:
        runs = [c for c in RUN_COLUMNS if c in frame.columns]
        _check_duplicates(frame, source, response, [*keys, *runs])
    return frame


def _check_replicate_options(replicates: bool, aggregate: str | None) -> None:
    if aggregate is not None and aggregate not in AGGREGATES:
        raise DataError(
            f"unknown aggregate {aggregate!r}; expected {' or '.join(map(repr, AGGREGATES))}"
        )
    if replicates and aggregate is not None:
        raise DataError(
            "--replicates keeps repeated configurations as separate rows and --aggregate pools "
            "them; give one of the two"
        )


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
                "with a different value (mark replicates with a 'run' column or --replicates, "
                "or pool them with --aggregate mean)"
            )


def pool_replicates(
    frame: pl.DataFrame,
    keys: Sequence[str],
    *,
    response: str = "score",
    source: str = "<table>",
) -> pl.DataFrame:
    """Pool the rows that share the `keys` columns into one row each, in first-seen order.

    The pooled row is the mean over every underlying measurement:

    - with `samples`: `samples` (and `correct`) are summed and `score` is the mean over all
      samples, so a count table gets ``correct / samples``; `score_var` (a per-sample variance)
      becomes the variance of the combined sample, spread between replicates included;
    - without `samples`: `score` is the plain mean and `score_var` is dropped, since without
      sample sizes it cannot be combined;
    - the response (when not `score`) and `achieved_compression` are plain means;
    - every other column (`run`, `seed`, `lr`, ...) is kept when it is constant within every
      group and dropped otherwise;
    - a `replicates` column counts the rows pooled. A table that already has one (it was
      pooled before) is pooled again with those counts as weights, and they add up.

    `frame` must already be validated (canonical names, Float64 numbers).
    """
    keys = list(keys)
    columns = frame.columns
    if not keys:
        # Nothing identifies a configuration, so no two rows are known to repeat one.
        return (
            frame
            if "replicates" in columns
            else frame.with_columns(replicates=pl.lit(1, dtype=pl.Int64))
        )
    if "replicates" in columns:
        frame = _numeric(frame, "replicates", source)
        _check_numeric(frame, "replicates", source)
        weight = pl.col("replicates")
    else:
        # A literal weight would not broadcast inside a group aggregation; a column does.
        frame = frame.with_columns(pl.lit(1.0).alias("__weight"))
        weight = pl.col("__weight")

    def mean(column: str) -> pl.Expr:
        return (pl.col(column) * weight).sum() / weight.sum()

    pooled: dict[str, pl.Expr] = {}
    if "samples" in columns:
        n = pl.col("samples")
        pooled["samples"] = n.sum()
        if "correct" in columns:
            pooled["correct"] = pl.col("correct").sum()
            score = pl.col("correct").sum() / n.sum()
        else:
            score = (pl.col("score") * n).sum() / n.sum()
        if "score" in columns:
            pooled["score"] = score
        if "score_var" in columns and "score" in columns:
            spread = (n - 1) * pl.col("score_var") + n * (pl.col("score") - score) ** 2
            pooled["score_var"] = (
                pl.when(pl.len() == 1)
                .then(pl.col("score_var").first())
                .otherwise(spread.sum() / (n.sum() - 1))
            )
    elif "score" in columns:
        pooled["score"] = mean("score")
    for column in (response, "achieved_compression"):
        if column in columns and column not in pooled:
            pooled[column] = mean(column)
    dropped = set() if "score_var" in pooled else {"score_var"}
    others = [c for c in columns if c not in {*keys, *pooled, *dropped, "replicates"}]
    constant: list[str] = []
    if others:
        spread_of = frame.group_by(keys).agg(pl.col(others).n_unique()).select(pl.col(others).max())
        constant = [c for c in others if spread_of[c][0] <= 1]
    out = frame.group_by(keys, maintain_order=True).agg(
        *(expr.alias(c) for c, expr in pooled.items()),
        *(pl.col(c).first() for c in constant),
        weight.sum().cast(pl.Int64).alias("replicates"),
    )
    order = [c for c in columns if c in out.columns]
    return out.select(*order, *([] if "replicates" in order else ["replicates"]))


def load_table(
    data: str | Path | pl.DataFrame,
    *,
    require: Sequence[str] = (),
    response: str = "score",
    column_map: Mapping[str, str] | None = None,
    where: Where = None,
    labels: Sequence[str] = (),
    replicates: bool = False,
    aggregate: str | None = None,
) -> pl.DataFrame:
    """Load and validate an accuracy-point table from a file, a dataset name or a frame.

    `where` keeps the rows that meet every condition: a mapping means equality
    (``{"phase": "prefill"}``), or give strings such as ``"N<7e10"`` or `Condition`s. A condition
    that selects nothing is an error rather than an empty fit. `replicates` and `aggregate` are
    as in `validate`.
    """
    _check_replicate_options(replicates, aggregate)
    conditions = to_conditions(where)
    if isinstance(data, pl.DataFrame):
        frame, source = data, "<table>"
    else:
        path = resolve_path(data)
        frame, source = read_frame(path), str(data)
    return _validate_table(
        frame,
        source=source,
        column_map=column_map,
        conditions=conditions,
        require=require,
        response=response,
        labels=labels,
        replicates=replicates,
        aggregate=aggregate,
    )


def validate_points(
    frame: pl.DataFrame,
    covariates: Iterable[str] = (),
    labels: Iterable[str] = (),
    *,
    source: str = "points",
) -> pl.DataFrame:
    """Check points to predict at by the rules of a table's rows, with canonical names.

    `covariates` (canonical column names) and the sparse-law columns present must be finite
    numbers within their ranges (params > 0, seq_len >= 1, compression >= 1); `labels` must be
    given on every row. Returns the frame with those covariates as Float64.
    """
    check_flat(frame, source)
    if frame.height == 0:
        raise DataError(f"{source}: no points to predict at")
    wanted = [canonical(c) for c in covariates]
    for column in dict.fromkeys([*wanted, *SPARSE_COVARIATES, *RATIO_COLUMNS]):
        if column in frame.columns:
            frame = _numeric(frame, column, source)
            _check_numeric(frame, column, source)
    for column in labels:
        if column in frame.columns:
            i = _first_bad(frame[column].is_null())
            if i is not None:
                raise DataError(f"{_where(source, i + 1, column)}: missing label")
    return frame


#: Comparison operators a row filter may use; ``==`` is read as ``=``.
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_ORDERING = ("<", "<=", ">", ">=")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Condition:
    """A row filter ``COLUMN OP VALUE``; `column` is canonical, `op` one of `OPERATORS`."""

    column: str
    op: str
    value: str

    def __post_init__(self) -> None:
        op = "=" if self.op == "==" else self.op
        if op not in OPERATORS:
            raise DataError(
                f"unknown comparison '{self.op}' (expected one of {', '.join(OPERATORS)})"
            )
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "column", canonical(str(self.column).strip()))
        object.__setattr__(self, "value", str(self.value))

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


#: What `load_table` accepts as `where`.
Where = Mapping[str, str] | Sequence[str | Condition] | str | Condition | None

_NAME = r"[^\s=,()<>!'\"]+"
# A comma separates items only where a new `NAME=` (or `NAME<op>`) follows it, so values such as
# `normal(0, 2)` keep their commas.
_NEXT_ASSIGNMENT = re.compile(rf"\s*{_NAME}\s*=")
_NEXT_CONDITION = re.compile(rf"\s*{_NAME}\s*(?:[=<>]|!=)")
_CONDITION = re.compile(r"^\s*([^=<>!]+?)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")


def _split_items(item: str, follows: re.Pattern[str]) -> list[str]:
    """Split `item` on the commas outside brackets that `follows` matches right after."""
    parts: list[str] = []
    depth = start = 0
    for i, char in enumerate(item):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            rest = item[i + 1 :]
            # Empty pieces (`a=1,` or `a=1,,b=2`) separate too, and are skipped, as before.
            if not rest.strip() or rest.lstrip().startswith(",") or follows.match(rest):
                parts.append(item[start:i])
                start = i + 1
    parts.append(item[start:])
    return [p.strip() for p in parts if p.strip()]


def _unquote(value: str) -> str:
    return value.strip().strip("'\"")


def parse_where(items: Iterable[str], what: str = "--where") -> list[Condition]:
    """Parse row filters such as ``phase=prefill``, ``N<7e10``, ``task!=NIAH``, ``L>=16K``.

    Several may share one item, separated by commas. Ordering comparisons need a number
    (as in `as_float`, so ``128K`` works).
    """
    out: list[Condition] = []
    for item in items:
        for part in _split_items(item, _NEXT_CONDITION):
            m = _CONDITION.match(part)
            value = _unquote(m.group(3)) if m else ""
            if not m or not value:
                raise DataError(
                    f"{what} '{part}' is not of the form COLUMN=VALUE (or ==, !=, <, <=, >, >=)"
                )
            cond = Condition(m.group(1), m.group(2), value)
            if cond.op in _ORDERING:
                as_float(value, f"{what} '{part}'")
            out.append(cond)
    return out


def to_conditions(where: Where) -> list[Condition]:
    """The conditions `where` stands for (see `load_table`)."""
    if where is None:
        return []
    if isinstance(where, Mapping):
        return [Condition(k, "=", str(v)) for k, v in where.items()]
    items: Sequence[str | Condition] = [where] if isinstance(where, str | Condition) else where
    out: list[Condition] = []
    for item in items:
        out.extend([item] if isinstance(item, Condition) else parse_where([item]))
    return out


def _numbers(series: pl.Series) -> pl.Series | None:
    """The column as Float64 when every value is a number, else None."""
    if series.dtype.is_numeric():
        return series.cast(pl.Float64)
    if series.dtype != pl.String:
        return None
    cast = series.cast(pl.Float64, strict=False)
    return None if (cast.is_null() & series.is_not_null()).any() else cast


def _number_or_none(text: str) -> float | None:
    try:
        return as_float(text, "")
    except DataError:
        return None


def _show_values(series: pl.Series, numbers: pl.Series | None, limit: int = 20) -> str:
    if numbers is not None:
        shown = [f"{v:g}" for v in sorted(numbers.drop_nulls().unique().to_list())]
    else:
        shown = sorted(map(str, series.drop_nulls().unique().to_list()))
    more = f", ... ({len(shown)} in all)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def apply_where(
    frame: pl.DataFrame, conditions: Iterable[Condition], source: str = "<table>"
) -> pl.DataFrame:
    """Keep the rows that meet every condition.

    Equality compares numbers when the column and the value are both numeric (so ``N=7e9``
    matches 7000000000), else text. Ordering comparisons need a numeric column and value.
    A condition that leaves no row is an error naming it and the values the column has.
    """
    applied: list[Condition] = []
    for cond in conditions:
        column, op, value = cond.column, cond.op, cond.value
        if column not in frame.columns:
            raise DataError(
                f"{source}: cannot filter on '{column}': no such column; columns are "
                f"{', '.join(frame.columns)}"
            )
        series = frame[column]
        numbers = _numbers(series)
        target = _number_or_none(value) if numbers is not None else None
        if op in _ORDERING:
            if numbers is None:
                raise DataError(f"{source}: cannot filter {cond}: column '{column}' is not numeric")
            if target is None:
                raise DataError(f"{source}: cannot filter {cond}: '{value}' is not a number")
        if target is None or numbers is None:
            mask = _COMPARE[op](series.cast(pl.String), value)
        else:
            mask = _COMPARE[op](numbers, target)
        kept = frame.filter(mask)
        if kept.height == 0:
            shown = value if target is not None else repr(value)
            scope = f" where {' and '.join(map(str, applied))}" if applied else ""
            raise DataError(
                f"{source}: no row has {column} {op} {shown} "
                f"(values{scope}: {_show_values(series, numbers)})"
            )
        frame = kept
        applied.append(cond)
    return frame


def resolve_path(name: str | Path) -> Path:
    """A file path, or a packaged dataset given as ``measured:NAME``."""
    text = str(name)
    if text.startswith("measured:"):
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
    """Parse ``KEY=VALUE`` strings into a dict, with clear errors.

    One item may hold several, comma-separated; a comma splits only where a new ``KEY=``
    follows it outside brackets, so ``alpha=normal(0, 2)`` is one assignment.
    """
    out: dict[str, str] = {}
    for item in items:
        for part in _split_items(item, _NEXT_ASSIGNMENT):
            key, sep, value = part.partition("=")
            # `phase==prefill` and `phase='prefill'` mean what they say: one value, no quotes
            value = value.removeprefix("=").strip().strip("'\"")
            if not sep or not key.strip() or not value:
                raise DataError(f"{what} '{part}' is not of the form KEY=VALUE")
            name = key.strip()
            if name in out:
                raise DataError(
                    f"{what}: '{name}' is given twice ({name}={out[name]} and "
                    f"{part.strip()}); give each once"
                )
            out[name] = value
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


def parse_bounds(
    items: Iterable[str], what: str = "--bounds"
) -> dict[str, tuple[float | None, float | None]]:
    """Parse parameter bounds ``NAME=LOW:HIGH``; either end may be empty (``E=0:``, ``alpha=:2``).

    Several may share one item, separated by commas (``top=0:1,E=0:``). Numbers are read as in
    `as_float`.
    """
    out: dict[str, tuple[float | None, float | None]] = {}
    for item in items:
        for part in _split_items(item, _NEXT_ASSIGNMENT):
            name, sep, spec = part.partition("=")
            name, spec = name.strip(), _unquote(spec)
            if not sep or not name or not spec:
                raise DataError(f"{what} '{part}' is not of the form NAME=LOW:HIGH")
            low_text, colon, high_text = spec.partition(":")
            if not colon:
                raise DataError(
                    f"{what} '{part}': expected LOW:HIGH with a colon (e.g. 0:1, 0: or :2)"
                )
            low = as_float(low_text, f"{what} '{part}'") if low_text.strip() else None
            high = as_float(high_text, f"{what} '{part}'") if high_text.strip() else None
            if low is None and high is None:
                raise DataError(f"{what} '{part}': give a lower bound, an upper bound or both")
            if low is not None and high is not None and low >= high:
                raise DataError(
                    f"{what} '{part}': lower bound {low:g} is not below upper bound {high:g}"
                )
            if name in out:
                raise DataError(f"{what} '{part}': bounds for '{name}' are given twice")
            out[name] = (low, high)
    return out
