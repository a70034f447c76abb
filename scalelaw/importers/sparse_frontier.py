"""Import the result tree of the reference study's pipeline ("The Sparse Frontier").

The pipeline writes one JSON file per configuration::

    results/<task>/<task args>+max_input_tokens@<L>/<model>/<attention>/<attention args>/
        evaluation_results_<samples>.json

where argument folders are ``name@value`` pairs joined by ``+`` (``default`` when there are
none), and each file holds the task's metric (``accuracy``, ``f1`` or ``iou``: the mean over
samples), its per-sample variance (``<metric>_variance``, ddof 1), ``total_samples`` and
``average_attention_sparsity``, the fraction of attention the method skipped. One row per file;
C = 1 / (1 - sparsity).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from scalelaw.errors import ScalelawError
from scalelaw.frontier.architectures import get_architecture
from scalelaw.importers.common import (
    TABLE_COLUMNS,
    ImportResult,
    ResultFolderError,
    Skip,
    compression_from_removed,
    finish,
    load_json,
    number,
    walk,
)
from scalelaw.importers.models import ModelSize, known_models, model_size
from scalelaw.importers.records import SparseFrontierMetrics
from scalelaw.schema import field_problem

#: The study's attention names -> (our method name, phase); dense serves both phases.
METHODS: dict[str, tuple[str, str | None]] = {
    "dense": ("dense", None),
    "vertical_and_slash": ("vertical-slash", "prefill"),
    "block_sparse": ("block-sparse", "prefill"),
    "flexprefill": ("flexprefill", "prefill"),
    "quest": ("quest", "decode"),
    "snapkv": ("snapkv", "decode"),
    "ada_snapkv": ("ada-snapkv", "decode"),
}

#: The study's task names -> the names its paper (and our published cards) use.
TASKS = {
    "qa_quality": "QuALITY",
    "qa_squad": "SQuAD",
    "qa_toefl": "TOEFL",
    "ruler_cwe": "CWE",
    "ruler_niah": "NIAH",
    "ruler_vt": "VT",
    "story_filtering": "StoryFiltering",
    "story_multihop": "StoryMultihop",
    "story_retrieval": "StoryRetrieval",
}

#: Which phases a dense result stands for (`--dense-phase`).
DENSE_PHASES: dict[str, tuple[str, ...]] = {
    "both": ("prefill", "decode"),
    "prefill": ("prefill",),
    "decode": ("decode",),
}

COLUMNS = (
    *TABLE_COLUMNS,
    "study_task",
    "attention",
    "method_params",
    "task_params",
    "mean_output_tokens",
    "max_output_tokens",
    "source",
)

_RESULTS_FILE = re.compile(r"evaluation_results_(\d+)\.json")
# The study's model configs are named <family>_<size>b (qwen_7b ... qwen_72b); its paper names
# the families: Qwen2.5, Llama 3.1 and Gemma 3 (Instruct).
_STUDY_MODEL = re.compile(r"(qwen|llama|gemma)_(\d+(?:\.\d+)?)b", re.IGNORECASE)
_STUDY_FAMILIES = {"qwen": "qwen2.5", "llama": "llama3.1", "gemma": "gemma3"}


def read_sparse_frontier(
    root: str | Path,
    *,
    params: Mapping[str, float] | None = None,
    dense_phase: str = "both",
) -> pl.DataFrame:
    """The accuracy-point table of a study result tree (see `import_sparse_frontier`)."""
    return import_sparse_frontier(root, params=params, dense_phase=dense_phase).table


def import_sparse_frontier(
    root: str | Path,
    *,
    params: Mapping[str, float] | None = None,
    dense_phase: str = "both",
) -> ImportResult:
    """Read every ``evaluation_results_<samples>.json`` under `root` into one table.

    `params` gives parameter counts for models outside the built-in table (keyed by the model
    folder's name). `dense_phase` says which phases a dense result is the C = 1 point of: the
    study compares both phases against one dense run, so ``both`` writes it once per phase.
    When a folder holds results for several sample counts, the largest is kept. Links that
    lead out of `root`, loop or dangle are skipped, with the reason in the result.
    """
    base = Path(root)
    if not base.is_dir():
        raise ResultFolderError(f"{base}: not a folder")
    if dense_phase not in DENSE_PHASES:
        raise ResultFolderError(
            f"unknown dense phase '{dense_phase}' (expected {', '.join(DENSE_PHASES)})"
        )
    files, skipped = walk(base, _RESULTS_FILE.fullmatch)
    if not files and not skipped:
        raise ResultFolderError(
            f"{base}: no evaluation_results_<samples>.json files (expected the study's results/ "
            "tree: <task>/<task args>/<model>/<attention>/<attention args>/)"
        )
    kept, superseded = _largest_per_folder(files, base)
    skipped.extend(superseded)
    overrides = dict(params or {})
    rows: list[dict[str, Any]] = []
    for path in kept:
        rows.extend(_rows(path, base, overrides, DENSE_PHASES[dense_phase]))
    table, notes = finish(
        rows, root=base, order=COLUMNS, variants=("task_params",), skipped=skipped
    )
    return ImportResult(table, files_read=len(kept), skipped=skipped, notes=notes)


def _largest_per_folder(files: Iterable[Path], root: Path) -> tuple[list[Path], list[Skip]]:
    """One file per configuration folder: the one evaluated on most samples."""
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
    kept: list[Path] = []
    skipped: list[Skip] = []
    for group in by_folder.values():
        group.sort(key=_sample_count)
        kept.append(group[-1])
        skipped.extend(
            Skip(_relative(p, root), "superseded by a larger sample count in the same folder")
            for p in group[:-1]
        )
    return kept, skipped


def _sample_count(path: Path) -> int:
    match = _RESULTS_FILE.fullmatch(path.name)
    return int(match.group(1)) if match else 0


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def parse_arguments(text: str, path: Path) -> dict[str, Any]:
    """A folder name of ``name@value`` pairs joined by ``+`` (``default``: none)."""
    if text == "default":
        return {}
    out: dict[str, Any] = {}
    for part in text.split("+"):
        name, sep, value = part.partition("@")
        if not sep or not name or not value:
            raise ResultFolderError(
                f"{path}: folder '{text}': '{part}' is not of the form NAME@VALUE"
            )
        if name in out:
            raise ResultFolderError(f"{path}: folder '{text}': '{name}' is given twice")
        out[name] = _value(value)
    return out


def _value(text: str) -> Any:
    """The value as the pipeline wrote it: Python's str() of a bool, int, float or string."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _rows(
    path: Path, root: Path, overrides: Mapping[str, float], dense_phases: tuple[str, ...]
) -> list[dict[str, Any]]:
    parts = path.parts
    if len(parts) < 6:
        raise ResultFolderError(
            f"{path}: expected <task>/<task args>/<model>/<attention>/<attention args>/ above it"
        )
    task, task_dir, model, attention, attn_dir = parts[-6:-1]
    task_args = parse_arguments(task_dir, path)
    if "max_input_tokens" not in task_args:
        raise ResultFolderError(
            f"{path}: field 'max_input_tokens' is missing from folder '{task_dir}'"
        )
    seq_len = number(
        task_args.pop("max_input_tokens"),
        f"{path}: folder '{task_dir}', field 'max_input_tokens'",
        low=1,
        integer=True,
    )
    if attention not in METHODS:
        raise ResultFolderError(
            f"{path}: attention '{attention}' is not one of the study's ({', '.join(METHODS)})"
        )
    method, phase = METHODS[attention]
    attn_args = parse_arguments(attn_dir, path)
    size = _study_model_size(model, overrides, path)

    try:
        metrics = SparseFrontierMetrics.model_validate(load_json(path))
    except ValidationError as exc:
        raise ResultFolderError(f"{path}: {field_problem(exc)}") from None
    sparsity = metrics.average_attention_sparsity
    compression = compression_from_removed(sparsity)
    row = {
        "task": TASKS.get(task, task),
        "seq_len": seq_len,
        "model": model,
        "params": size.params,
        "family": size.family,
        "method": method,
        "compression": compression,
        "requested_compression": requested_compression(attention, attn_args, seq_len, path),
        "achieved_compression": compression,
        "score": metrics.score,
        "score_var": metrics.score_var,
        "samples": metrics.total_samples,
        "metric": metrics.metric,
        "study_task": task,
        "attention": attention,
        "method_params": json.dumps(attn_args, sort_keys=True),
        "task_params": json.dumps(task_args, sort_keys=True),
        "mean_output_tokens": metrics.average_output_tokens,
        "max_output_tokens": metrics.max_output_tokens,
        "source": _relative(path, root),
    }
    phases = dense_phases if phase is None else (phase,)
    return [{**row, "phase": p} for p in phases]


def _study_model_size(name: str, overrides: Mapping[str, float], path: Path) -> ModelSize:
    match = _STUDY_MODEL.fullmatch(name)
    arch = None
    if match:
        family = _STUDY_FAMILIES[match.group(1).lower()]
        try:
            arch = get_architecture(family, f"{match.group(2)}B")
        except ScalelawError:
            arch = None  # a size the table lacks: the user's --params or the error below
    size = model_size(name, overrides, arch)
    if size is None:
        raise ResultFolderError(
            f"{path}: model '{name}' is not in the built-in table ({known_models()}); give its "
            f"parameter count with --params {name}=N"
        )
    return size


def requested_compression(
    attention: str, args: Mapping[str, Any], seq_len: float, path: Path
) -> float | None:
    """The ratio the attention arguments ask for, where they define one (else None).

    Token budgets as in the study's code: Quest keeps `token_budget` of L tokens, SnapKV and
    Ada-SnapKV `token_capacity` per KV head, block-sparse `top_chunks` key blocks per query block
    of `chunk_size` tokens on the causal block triangle. Vertical-slash and FlexPrefill budgets
    do not fix a ratio: their kernels decide per head, so only the achieved ratio is known.
    """
    if attention == "dense":
        return 1.0
    where = f"{path}: attention argument"
    if attention == "quest" and "token_budget" in args:
        budget = number(args["token_budget"], f"{where} 'token_budget'", low=1)
        return max(1.0, seq_len / budget)
    if attention in ("snapkv", "ada_snapkv") and "token_capacity" in args:
        capacity = number(args["token_capacity"], f"{where} 'token_capacity'", low=1)
        return max(1.0, seq_len / capacity)
    if attention == "block_sparse" and {"chunk_size", "top_chunks"} <= args.keys():
        chunk = number(args["chunk_size"], f"{where} 'chunk_size'", low=1, integer=True)
        top = number(args["top_chunks"], f"{where} 'top_chunks'", low=1, integer=True)
        return block_sparse_compression(int(seq_len), int(chunk), int(top))
    return None


def block_sparse_compression(seq_len: int, chunk: int, top: int) -> float:
    """Causal blocks over selected blocks: query block i sees min(i + 1, top) key blocks."""
    blocks = math.ceil(seq_len / chunk)
    top = min(top, blocks)
    total = blocks * (blocks + 1) // 2
    selected = top * (top + 1) // 2 + (blocks - top) * top
    return total / selected
