"""Writers of small result folders in the formats the importers read, and the sample trees."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

StudyWriter = Callable[..., Path]
KVWriter = Callable[..., Path]


@pytest.fixture
def study_result() -> StudyWriter:
    """Write one `evaluation_results_<samples>.json` of the study's layout; return its path."""

    def write(
        root: Path,
        *,
        task: str = "ruler_niah",
        task_args: str = "num_queries@4+max_input_tokens@16384",
        model: str = "qwen_7b",
        attention: str = "quest",
        attn_args: str = "token_budget@1632+page_size@16+share_pages@True",
        doc: dict[str, Any] | str | None = None,
        samples: int = 100,
        **fields: Any,
    ) -> Path:
        folder = root / "results" / task / task_args / model / attention / attn_args
        folder.mkdir(parents=True, exist_ok=True)
        if doc is None:
            doc = {
                "accuracy": 0.75,
                "accuracy_variance": 0.1875,
                "total_samples": samples,
                "average_attention_sparsity": 0.9,
                "average_output_tokens": 12.5,
                "max_output_tokens": 31,
            }
        if isinstance(doc, dict):
            doc = json.dumps({**doc, **fields}, indent=4)
        path = folder / f"evaluation_results_{samples}.json"
        path.write_text(doc)
        return path

    return write


def _kv_config(**changes: Any) -> dict[str, Any]:
    """A config.yaml as KVPress's save_config writes it (threshold and head ratio popped)."""
    config: dict[str, Any] = {
        "dataset": "ruler",
        "data_dir": "4096",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "device": None,
        "press_name": "snapkv",
        "compression_ratio": 0.75,
        "key_channel_compression_ratio": None,
        "fraction": 1.0,
        "max_new_tokens": None,
        "max_context_length": None,
        "query_aware": False,
        "needle_depth": None,
        "compression_interval": None,
        "target_size": None,
        "hidden_states_buffer_size": None,
        "output_dir": "./results",
        "log_level": "INFO",
        "model_kwargs": {"attn_implementation": None, "dtype": "auto"},
        "press_init_command": "SnapKVPress(compression_ratio=0.75, window_size=64, kernel_size=5)",
        "seed": 42,
        "fp8": False,
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not ...}


def _ruler_predictions(counts: dict[str, int], ratio: float | None = 0.75) -> list[dict[str, Any]]:
    """predictions.csv rows: `counts` samples per RULER subtask, answers with commas and newlines."""
    rows = []
    for task, n in counts.items():
        for i in range(n):
            row: dict[str, Any] = {
                "question": f"Q{i}, about {task}?",
                "predicted_answer": f'He said "yes",\nthen {i}',
                "answer": json.dumps([f"a{i}"]),
                "task": task,
                "max_new_tokens": 32,
            }
            if ratio is not None:
                row["compression_ratio"] = ratio
            rows.append(row)
    return rows


@pytest.fixture
def kv_config() -> Callable[..., dict[str, Any]]:
    """config.yaml contents with changes (a value of ... removes the field)."""
    return _kv_config


@pytest.fixture
def ruler_rows() -> Callable[..., list[dict[str, Any]]]:
    """predictions.csv rows per RULER subtask."""
    return _ruler_predictions


@pytest.fixture
def kvpress_run() -> KVWriter:
    """Write one KVPress run folder; `config` None leaves config.yaml out, a str is written as is."""

    def write(
        root: Path,
        name: str = "ruler__4096__Qwen--Qwen2.5-7B-Instruct__snapkv__0.75",
        *,
        metrics: Any = None,
        predictions: list[dict[str, Any]] | str | None = None,
        config: dict[str, Any] | str | None = None,
        with_config: bool = True,
    ) -> Path:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if metrics is None:
            metrics = {"niah_single_1": {"string_match": 95.0}, "vt": {"string_match": 62.5}}
        if metrics is not False:
            text = metrics if isinstance(metrics, str) else json.dumps(metrics, indent=4)
            (folder / "metrics.json").write_text(text)
        if predictions is None:
            predictions = _ruler_predictions({"niah_single_1": 20, "vt": 8})
        if isinstance(predictions, str):
            (folder / "predictions.csv").write_text(predictions)
        else:
            with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(predictions[0]))
                writer.writeheader()
                writer.writerows(predictions)
        if with_config:
            cfg = _kv_config() if config is None else config
            text = cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False)
            (folder / "config.yaml").write_text(text)
        return folder

    return write


@pytest.fixture(scope="session")
def sample_trees() -> ModuleType:
    """examples/importers/sample_trees.py, the script behind docs/import.md."""
    path = REPO / "examples" / "importers" / "sample_trees.py"
    spec = importlib.util.spec_from_file_location("sample_trees", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
