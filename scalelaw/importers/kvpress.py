"""Import KVPress evaluation folders (NVIDIA's KV-cache compression library, `evaluation/`).

Each run writes one folder, named from its settings::

    <dataset>__[<data_dir>__]<model, / written as -->__<press>__<ratio, 2 decimals>[__suffixes]

(a rerun of an existing name lands in a numbered subfolder, ``<name>/1/``), holding
``metrics.json`` (the dataset's scorer output), ``predictions.csv`` (one row per sample) and
``config.yaml`` (the settings). KVPress's ``compression_ratio`` is the fraction of the KV cache
removed, so C = 1 / (1 - ratio); ``no_press`` is dense, C = 1. One row per subtask.

The settings come from ``config.yaml`` when it is there (plain YAML data only: no tags,
aliases or anchors), else from the folder name (whose ratio is rounded to two decimals).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
import yaml
from pydantic import ValidationError

from scalelaw.data import first_nul_byte, nul_byte_message
from scalelaw.importers.common import (
    NESTING_LIMIT,
    PREDICTIONS_LIMIT,
    TABLE_COLUMNS,
    YAML_LIMIT,
    ImportResult,
    ResultFolderError,
    Skip,
    check_file,
    compression_from_removed,
    finish,
    load_json,
    number,
    read_text,
    shown,
    walk,
)
from scalelaw.importers.models import known_models, model_size
from scalelaw.importers.records import KvpressConfig
from scalelaw.schema import field_problem

#: Datasets whose metrics.json shapes this importer reads.
DATASETS = (
    "ruler",
    "longbench",
    "longbench-e",
    "longbench-v2",
    "needle_in_haystack",
    "aime25",
    "math500",
)

#: Needle-in-a-haystack scores: which ROUGE variant and which of its parts (`--needle-metric`).
NEEDLE_METRIC = "rouge-l:f"

DENSE_PRESS = "no_press"
PREFILL_PHASE = "kv-prefill"

COLUMNS = (
    *TABLE_COLUMNS,
    "dataset",
    "data_dir",
    "press",
    "press_ratio",
    "threshold",
    "head_compression_ratio",
    "key_channel_compression_ratio",
    "query_aware",
    "fraction",
    "max_context_length",
    "needle_depth",
    "length_bucket",
    "run",
    "source",
)

#: Columns in which two rows of one configuration may differ (reported, not an error).
VARIANTS = (
    "query_aware",
    "fraction",
    "max_context_length",
    "needle_depth",
    "key_channel_compression_ratio",
    "threshold",
    "head_compression_ratio",
    "data_dir",
)

# Presses whose folder-name number is not a compression ratio (used only without config.yaml).
_THRESHOLD_PRESSES = ("kvzap_linear", "kvzap_mlp")
_HEAD_RATIO_PRESSES = ("duo_attention", "duo_attention_on_the_fly")

_RATIO = re.compile(r"-?\d+\.\d\d")
_SUFFIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"fraction(\d+(?:\.\d+)?)"), "fraction"),
    (re.compile(r"max_context(\d+)"), "max_context_length"),
    (re.compile(r"(query_aware|compressed_questions)"), "query_aware"),
    (re.compile(r"key_channel_cr(\d+(?:\.\d+)?)"), "key_channel_compression_ratio"),
    (re.compile(r"needle_depth(.+)"), "needle_depth"),
)
# LongBench-E's length buckets, by the sample's `length` column
_BUCKETS = (("0-4k", 0, 4000), ("4-8k", 4000, 8000), ("8k+", 8000, float("inf")))
_FILES = ("metrics.json", "predictions.csv", "config.yaml")
# Checks of the numbers a folder name spells (config.yaml's are checked as they are read).
_NAME_NUMBERS: dict[str, dict[str, Any]] = {
    "fraction": {"low": 0, "high": 1},
    "max_context_length": {"low": 1, "integer": True},
    "key_channel_compression_ratio": {"low": 0, "high": 1},
    "head_compression_ratio": {"low": 0, "high": 1},
}
# predictions.csv columns read as numbers, with the values they may take: [low, high)
_COLUMN_RANGES = {"length": (0.0, math.inf), "compression_ratio": (0.0, 1.0)}


@dataclass(frozen=True)
class Settings:
    """What a KVPress run was asked to do."""

    dataset: str
    data_dir: str | None
    model: str
    press: str
    ratio: float | None = None
    threshold: float | None = None
    head_compression_ratio: float | None = None
    key_channel_compression_ratio: float | None = None
    fraction: float = 1.0
    max_context_length: int | None = None
    query_aware: bool = False
    needle_depth: str | None = None


@dataclass(frozen=True)
class Subtask:
    """One row's worth of a metrics.json: a score in [0, 1] and which samples it covers."""

    task: str
    score: float
    metric: str
    rows: Callable[[pl.DataFrame], pl.DataFrame]
    score_var: float | None = None
    samples: int | None = None
    length_bucket: str | None = None


def read_kvpress(
    root: str | Path,
    *,
    params: Mapping[str, float] | None = None,
    datasets: Sequence[str] | None = None,
    needle_metric: str = NEEDLE_METRIC,
) -> pl.DataFrame:
    """The accuracy-point table of a KVPress results folder (see `import_kvpress`)."""
    return import_kvpress(root, params=params, datasets=datasets, needle_metric=needle_metric).table


def import_kvpress(
    root: str | Path,
    *,
    params: Mapping[str, float] | None = None,
    datasets: Sequence[str] | None = None,
    needle_metric: str = NEEDLE_METRIC,
) -> ImportResult:
    """Read every KVPress run folder under `root` into one table, one row per subtask.

    `params` gives parameter counts for models outside the built-in table (keyed by the model
    name, ``org/model`` or ``org--model``). `datasets` keeps only those datasets.
    `needle_metric` picks the needle-in-a-haystack score, ``ROUGE:PART`` (default rouge-l:f).

    Skipped, with the reason in the result: unfinished runs (no metrics.json), datasets without
    a reader here, decoding presses (their cache is set by a target size, and no folder records
    the ratio reached), key-channel-only compression (ThinK), and, when other rows have a
    sequence length, runs of datasets that define none; links that lead out of `root`, loop or
    dangle (a run folder with such a result file is not read at all).
    """
    base = Path(root)
    if not base.is_dir():
        raise ResultFolderError(f"{base}: not a folder")
    wanted = tuple(datasets or ())
    rouge = _needle_metric(needle_metric)
    overrides = dict(params or {})
    folders, skipped = _run_folders(base)
    if not folders and not skipped:
        raise ResultFolderError(
            f"{base}: no KVPress run folders (folders holding metrics.json, predictions.csv "
            "or config.yaml)"
        )
    per_folder: list[tuple[str, Settings, list[dict[str, Any]]]] = []
    files_read = 0
    for folder in folders:
        where = folder.relative_to(base).as_posix()
        if not (folder / "metrics.json").exists():
            skipped.append(Skip(where, "no metrics.json (unfinished run)"))
            continue
        named = parse_folder_name(_name_and_run(folder)[0])
        # a folder the name already rules out is not read (its config.yaml may be anything)
        if wanted and named and named["dataset"] not in wanted:
            skipped.append(Skip(where, "dataset not selected"))
            continue
        settings, run = _settings(folder)
        if wanted and settings.dataset not in wanted:
            skipped.append(Skip(where, "dataset not selected"))
            continue
        if settings.dataset not in DATASETS:
            skipped.append(Skip(where, f"no reader for dataset '{settings.dataset}'"))
            continue
        reason = _unusable_press(settings)
        if reason:
            skipped.append(Skip(where, reason))
            continue
        rows = _rows(folder, where, settings, run, overrides, rouge)
        files_read += 1
        if rows is None:
            skipped.append(
                Skip(where, "ratio set by a threshold or head fraction, and predictions.csv "
                     "records no compression_ratio")
            )  # fmt: skip
            continue
        per_folder.append((where, settings, rows))
    rows_out: list[dict[str, Any]] = []
    with_length = any(r["seq_len"] is not None for _, _, rows in per_folder for r in rows)
    for where, settings, rows in per_folder:
        if with_length and rows and rows[0]["seq_len"] is None:
            skipped.append(
                Skip(where, f"no sequence length (dataset '{settings.dataset}' records none; "
                     "import it on its own with --dataset)")
            )  # fmt: skip
            continue
        rows_out.extend(rows)
    table, notes = finish(rows_out, root=base, order=COLUMNS, variants=VARIANTS, skipped=skipped)
    return ImportResult(table, files_read=files_read, skipped=skipped, notes=notes)


def _run_folders(root: Path) -> tuple[list[Path], list[Skip]]:
    files, skipped = walk(root, _FILES.__contains__)
    # without one of its files (metrics, sample counts or exact settings) a run would be
    # misread, so a folder with a result file that was not followed is left out whole
    left_out = {(root / s.path).parent for s in skipped if PurePosixPath(s.path).name in _FILES}
    folders = dict.fromkeys(f.parent for f in files if f.parent not in left_out)
    return list(folders), skipped


def _needle_metric(spec: str) -> tuple[str, str]:
    variant, sep, part = spec.partition(":")
    if not sep or not variant.startswith("rouge-") or part not in ("f", "p", "r"):
        raise ResultFolderError(
            f"--needle-metric '{spec}' is not of the form rouge-N:PART (PART f, p or r), "
            "e.g. rouge-l:f"
        )
    return variant, part


def _unusable_press(settings: Settings) -> str | None:
    if settings.press.startswith("decoding_"):
        return "decoding press (its cache size is set by target_size; the ratio reached is not recorded)"
    if settings.press == "think":
        return "compresses key channels, not tokens (no sequence compression ratio)"
    return None


# ---- settings: config.yaml, else the folder name ----------------------------------------------


def parse_folder_name(name: str) -> dict[str, Any] | None:
    """The settings a KVPress folder name spells, or None when it is not such a name."""
    parts = name.split("__")
    settings: dict[str, Any] = {}
    while parts:
        found = _suffix(parts[-1])
        if found is None:
            break
        settings.update(found)
        parts.pop()
    if len(parts) not in (4, 5) or not _RATIO.fullmatch(parts[-1]) or not all(parts):
        return None
    value = float(parts[-1])
    press = parts[-2]
    if press in _THRESHOLD_PRESSES:
        settings["threshold"] = value
    elif press in _HEAD_RATIO_PRESSES:
        settings["head_compression_ratio"] = value
    else:
        settings["ratio"] = value
    model = parts[-3]
    return {
        **settings,
        "dataset": parts[0],
        "data_dir": parts[1] if len(parts) == 5 else None,
        "model": model.replace("--", "/", 1),
        "press": press,
    }


def _suffix(part: str) -> dict[str, Any] | None:
    for pattern, key in _SUFFIXES:
        match = pattern.fullmatch(part)
        if match:
            if key == "query_aware":
                return {key: True}
            if key == "needle_depth":
                return {key: match.group(1)}
            if key == "max_context_length":
                return {key: int(match.group(1))}
            return {key: float(match.group(1))}
    return None


def _name_and_run(folder: Path) -> tuple[str, int]:
    """A rerun lands in `<name>/1/`, `<name>/2/`, ...: the name is its parent's."""
    if folder.name.isdigit() and "__" in folder.parent.name:
        return folder.parent.name, int(folder.name)
    return folder.name, 0


def _settings(folder: Path) -> tuple[Settings, int]:
    """The run's settings and its rerun number (0 for the first run of a name)."""
    name, run = _name_and_run(folder)
    from_name = parse_folder_name(name) or {}
    config_path = folder / "config.yaml"
    from_config = _read_config(config_path) if config_path.exists() else {}
    for key, checks in _NAME_NUMBERS.items():
        if key in from_name and key not in from_config:
            number(from_name[key], f"{folder}: folder name, field '{key}'", **checks)
    merged = {**from_name, **from_config}
    if not from_config and not from_name:
        raise ResultFolderError(
            f"{folder}: folder name is not <dataset>__[<data_dir>__]<model>__<press>__<ratio>"
            "[__suffixes], and there is no config.yaml"
        )
    where = config_path if from_config else folder
    for key in ("dataset", "model", "press"):
        if not merged.get(key):
            field = "press_name" if key == "press" else key
            raise ResultFolderError(f"{where}: field '{field}' is missing")
    if merged["press"] == DENSE_PRESS:
        merged["ratio"] = 0.0  # KVPress itself overrides a dense run's ratio to 0
    return Settings(**merged), run


class _PlainLoader(yaml.SafeLoader):
    """A safe loader that also refuses aliases, anchors and deep nesting, node by node.

    A few lines of aliases expand to billions of values once anything walks the result, and
    the composer and constructor recurse once per level; both are refused before a value is
    built. A value the constructors refuse (a date 2024-13-45, an int of over 4300 digits) is
    a YAML error at its line.
    """

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        problem = None
        if event.anchor is not None:
            problem = "aliases and anchors are not accepted"
        elif self.depth >= NESTING_LIMIT:
            problem = f"nested deeper than {NESTING_LIMIT} levels"
        if problem:
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            why = str(exc).split(";")[0]  # not Python's advice on raising its limits
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value ({why})", node.start_mark
            ) from None


def _read_config(path: Path) -> dict[str, Any]:
    """config.yaml's settings, type-checked; only plain YAML data is read."""
    raw = read_text(path, YAML_LIMIT)
    loader = _PlainLoader(raw)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ResultFolderError(_yaml_problem(path, raw, exc)) from None
    finally:
        loader.dispose()
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ResultFolderError(f"{path}: expected a mapping of settings")
    try:
        return KvpressConfig.model_validate(doc).settings()
    except ValidationError as exc:
        raise ResultFolderError(f"{path}: {field_problem(exc)}") from None


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """One line naming the file, the field (from the offending line) and the problem."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"{path}: not valid YAML ({problem})"
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    key = re.match(r"\s*(?:-\s*)?([\w.-]+)\s*:", line)
    field = f", field '{key.group(1)}'" if key else ""
    note = " (only plain YAML data is read)" if "constructor" in problem else ""
    return f"{path}: line {mark.line + 1}{field}: {problem}{note}"


# ---- rows ----------------------------------------------------------------------------------


def _rows(
    folder: Path,
    where: str,
    settings: Settings,
    run: int,
    overrides: Mapping[str, float],
    rouge: tuple[str, str],
) -> list[dict[str, Any]] | None:
    """The rows of one run folder; None when its compression ratio cannot be known."""
    metrics_path = folder / "metrics.json"
    predictions = _predictions(folder / "predictions.csv")
    subtasks = _subtasks(settings, load_json(metrics_path), metrics_path, rouge)
    requested, ratio = _requested(settings, folder)
    source = folder / "config.yaml" if (folder / "config.yaml").exists() else folder
    seq_len = _seq_len(settings, source)
    size = model_size(settings.model, overrides)
    if size is None:
        raise ResultFolderError(
            f"{source}: field 'model': '{settings.model}' is not in the built-in table "
            f"({known_models()}); give its parameter count with --params {settings.model}=N"
        )
    rows: list[dict[str, Any]] = []
    for sub in subtasks:
        selected = sub.rows(predictions)
        samples = sub.samples if sub.samples is not None else selected.height
        if samples < 1:
            raise ResultFolderError(
                f"{folder / 'predictions.csv'}: no rows for subtask '{sub.task}' of "
                f"{metrics_path.name} (field 'task')"
            )
        if sub.samples is not None and sub.samples != selected.height:
            raise ResultFolderError(
                f"{metrics_path}: {sub.samples} scored samples but predictions.csv has "
                f"{selected.height} rows"
            )
        achieved = _achieved(selected, folder / "predictions.csv")
        compression = requested if requested is not None else achieved
        if compression is None:
            return None
        rows.append(
            {
                "task": sub.task,
                "seq_len": seq_len,
                "model": settings.model,
                "params": size.params,
                "family": size.family,
                "method": method_name(settings.press),
                # decoding presses are skipped before rows are made: every row compresses
                # the prompt's cache
                "phase": PREFILL_PHASE,
                "compression": compression,
                "requested_compression": requested,
                "achieved_compression": achieved,
                "score": sub.score,
                "score_var": sub.score_var,
                "samples": float(samples),
                "metric": sub.metric,
                "dataset": settings.dataset,
                "data_dir": settings.data_dir,
                "press": settings.press,
                "press_ratio": ratio,
                "threshold": settings.threshold,
                "head_compression_ratio": settings.head_compression_ratio,
                "key_channel_compression_ratio": settings.key_channel_compression_ratio,
                "query_aware": settings.query_aware,
                "fraction": settings.fraction,
                "max_context_length": settings.max_context_length,
                "needle_depth": settings.needle_depth,
                "length_bucket": sub.length_bucket,
                "run": run,
                "source": where,
            }
        )
    return rows


def method_name(press: str) -> str:
    """Our `method` label for a press: `no_press` is dense, the rest keep KVPress's name."""
    return "dense" if press == DENSE_PRESS else press.replace("_", "-")


def _requested(settings: Settings, folder: Path) -> tuple[float | None, float | None]:
    """(C the press was asked for, KVPress's ratio); C is None when a threshold sets it."""
    if settings.threshold is not None or settings.head_compression_ratio is not None:
        return None, None
    if settings.ratio is None:
        raise ResultFolderError(f"{folder / 'config.yaml'}: field 'compression_ratio' is missing")
    source = folder / "config.yaml" if (folder / "config.yaml").exists() else folder
    ratio = number(settings.ratio, f"{source}: field 'compression_ratio'", low=0, below=1)
    return compression_from_removed(ratio), ratio


def _seq_len(settings: Settings, source: Path) -> float | None:
    """Input length where the dataset fixes one: RULER's data_dir, the needle's context."""
    if settings.dataset == "ruler" and settings.data_dir and settings.data_dir.isdecimal():
        # float(): a string of thousands of digits is too long for int()
        where = f"{source}: field 'data_dir'"
        length = number(float(settings.data_dir), where, low=1, integer=True)
        if settings.max_context_length is not None:
            length = min(length, settings.max_context_length)
        return float(length)
    if settings.dataset == "needle_in_haystack" and settings.max_context_length is not None:
        return float(settings.max_context_length)
    return None


def _predictions(path: Path) -> pl.DataFrame:
    """The columns of predictions.csv this importer uses, as text (answers are not read)."""
    if not path.exists():
        raise ResultFolderError(f"{path}: file not found (it gives the sample counts)")
    check_file(path, PREDICTIONS_LIMIT)
    try:
        # 500 MiB of NUL bytes, under the size limit, took polars 6 GB of memory to read
        with open(path, "rb") as fh:
            nul = first_nul_byte(fh)
        if nul is not None:
            raise ResultFolderError(f"{path}: {nul_byte_message(nul)}")
        header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
        # without a column this importer uses, any one column still counts the samples
        used = [c for c in ("task", "length", "compression_ratio") if c in header] or header[:1]
        frame = pl.read_csv(path, infer_schema=False, columns=used)
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResultFolderError(f"{path}: cannot parse as CSV ({first})") from None
    for column, (low, high) in _COLUMN_RANGES.items():
        if column in frame.columns:
            text = frame[column]
            cast = text.cast(pl.Float64, strict=False)
            unread = cast.is_null() & text.is_not_null() & (text != "")
            # NaN is a sample without the value, as pandas writes it
            outside = (cast.is_not_nan() & ((cast < low) | (cast >= high))).fill_null(False)
            bad = (unread | outside).arg_true()
            if len(bad):
                i = int(bad[0])
                what = "a number" if unread[i] else f"in [{low:g}, {high:g})"
                raise ResultFolderError(
                    f"{path}: row {i + 1}, field '{column}': {shown(text[i])} is not {what}"
                )
            frame = frame.with_columns(cast.alias(column))
    return frame


def _achieved(rows: pl.DataFrame, path: Path) -> float | None:
    """C the press reached, from the per-sample compression_ratio column, when recorded."""
    if "compression_ratio" not in rows.columns:
        return None
    values = rows["compression_ratio"].drop_nulls().drop_nans()
    if not len(values):
        return None
    mean = float(values.mean())  # type: ignore[arg-type]
    return compression_from_removed(
        number(mean, f"{path}: field 'compression_ratio' (mean)", low=0, below=1)
    )


# ---- metrics.json shapes, per dataset's scorer --------------------------------------------------


def _all(frame: pl.DataFrame) -> pl.DataFrame:
    return frame


def _task_rows(task: str, path: Path) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def select(frame: pl.DataFrame) -> pl.DataFrame:
        if "task" not in frame.columns:
            raise ResultFolderError(f"{path.with_name('predictions.csv')}: field 'task' is missing")
        return frame.filter(pl.col("task") == task)

    return select


def _bucket_rows(low: float, high: float, path: Path) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def select(frame: pl.DataFrame) -> pl.DataFrame:
        if "length" not in frame.columns:
            raise ResultFolderError(
                f"{path.with_name('predictions.csv')}: field 'length' is missing"
            )
        return frame.filter((pl.col("length") >= low) & (pl.col("length") < high))

    return select


def _percent(value: Any, where: str) -> float:
    # RULER and LongBench scorers report percentages
    return number(value, where, low=0, high=100) / 100.0


def _subtasks(settings: Settings, doc: Any, path: Path, rouge: tuple[str, str]) -> list[Subtask]:
    dataset = settings.dataset
    label = settings.data_dir or dataset
    if dataset == "ruler":
        if not isinstance(doc, dict) or not doc:
            raise ResultFolderError(
                f'{path}: expected an object of subtasks, e.g. {{"niah_single_1": {{"string_match": 95.0}}}}'
            )
        out = []
        for task, scores in doc.items():
            if not isinstance(scores, dict) or "string_match" not in scores:
                raise ResultFolderError(f"{path}: field '{task}.string_match' is missing")
            score = _percent(scores["string_match"], f"{path}: field '{task}.string_match'")
            out.append(Subtask(task, score, "string_match", _task_rows(task, path)))
        return out
    if dataset == "longbench":
        score = _percent(doc, f"{path}: the score")
        return [Subtask(label, score, "longbench", _all)]
    if dataset == "longbench-e":
        if not isinstance(doc, dict):
            raise ResultFolderError(
                f"{path}: expected an object of length buckets (0-4k, 4-8k, 8k+)"
            )
        out = []
        for bucket, low, high in _BUCKETS:
            if bucket not in doc:
                raise ResultFolderError(f"{path}: field '{bucket}' is missing")
            value = doc[bucket]
            if isinstance(value, float) and value != value:
                continue  # the scorer writes NaN for a bucket without samples
            score = _percent(value, f"{path}: field '{bucket}'")
            out.append(
                Subtask(f"{label}:{bucket}", score, "longbench", _bucket_rows(low, high, path),
                        length_bucket=bucket)
            )  # fmt: skip
        return out
    if dataset == "needle_in_haystack":
        return [_needle(doc, path, rouge)]
    if dataset == "longbench-v2":
        if not isinstance(doc, dict) or "average" not in doc:
            raise ResultFolderError(f"{path}: field 'average' is missing")
        score = number(doc["average"], f"{path}: field 'average'", low=0, high=1)
        return [Subtask(dataset, score, "accuracy", _all)]
    # aime25 and math500
    if not isinstance(doc, dict) or "accuracy" not in doc:
        raise ResultFolderError(f"{path}: field 'accuracy' is missing")
    score = number(doc["accuracy"], f"{path}: field 'accuracy'", low=0, high=1)
    return [Subtask(dataset, score, "accuracy", _all)]


def _needle(doc: Any, path: Path, rouge: tuple[str, str]) -> Subtask:
    """The needle scorer lists one ROUGE result per sample: mean and variance of one part."""
    variant, part = rouge
    if not isinstance(doc, list) or not doc:
        raise ResultFolderError(f"{path}: expected a list of per-sample ROUGE scores")
    values = []
    for i, sample in enumerate(doc):
        where = f"{path}: sample {i + 1}, field '{variant}.{part}'"
        if not isinstance(sample, dict) or not isinstance(sample.get(variant), dict):
            raise ResultFolderError(f"{path}: sample {i + 1}, field '{variant}' is missing")
        if part not in sample[variant]:
            raise ResultFolderError(f"{where} is missing")
        values.append(number(sample[variant][part], where, low=0, high=1))
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Subtask("needle_in_haystack", mean, f"{variant} {part}", _all, score_var=var, samples=n)


__all__ = [
    "DATASETS",
    "Settings",
    "import_kvpress",
    "parse_folder_name",
    "read_kvpress",
]
