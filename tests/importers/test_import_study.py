"""The reference study's result tree -> the accuracy-point table (Python API)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from scalelaw.data import load_table
from scalelaw.frontier import get_architecture
from scalelaw.importers import ResultFolderError, import_sparse_frontier, read_sparse_frontier
from scalelaw.importers.sparse_frontier import METHODS, requested_compression


def test_one_file_maps_to_one_row(tmp_path: Path, study_result) -> None:
    study_result(tmp_path)
    table = read_sparse_frontier(tmp_path)
    assert table.height == 1
    row = table.row(0, named=True)
    assert row["compression"] == pytest.approx(10.0)  # sparsity 0.9
    assert row["achieved_compression"] == pytest.approx(10.0)
    assert row["requested_compression"] == pytest.approx(16384 / 1632)
    assert row["seq_len"] == 16384
    assert row["params"] == get_architecture("qwen2.5", "7B").params()
    assert (row["model"], row["family"]) == ("qwen_7b", "qwen2.5")
    assert (row["method"], row["phase"], row["attention"]) == ("quest", "decode", "quest")
    assert (row["task"], row["study_task"], row["metric"]) == ("NIAH", "ruler_niah", "accuracy")
    assert (row["score"], row["score_var"], row["samples"]) == (0.75, 0.1875, 100)
    assert json.loads(row["method_params"]) == {
        "token_budget": 1632,
        "page_size": 16,
        "share_pages": True,
    }
    assert json.loads(row["task_params"]) == {"num_queries": 4}
    assert (row["mean_output_tokens"], row["max_output_tokens"]) == (12.5, 31)
    assert row["source"].startswith("results/ruler_niah/")
    # the table loads as the fits read it
    assert load_table(table, require=["N", "L", "C"]).height == 1


@pytest.mark.parametrize("attention", sorted(METHODS))
def test_attention_names_and_phases(tmp_path: Path, study_result, attention: str) -> None:
    sparsity = 0.0 if attention == "dense" else 0.8
    study_result(tmp_path, attention=attention, attn_args="default",
                 average_attention_sparsity=sparsity)  # fmt: skip
    table = read_sparse_frontier(tmp_path)
    method, phase = METHODS[attention]
    assert set(table["method"]) == {method}
    if attention == "dense":
        # the study's one dense run is the C = 1 point of both phases
        assert sorted(table["phase"]) == ["decode", "prefill"]
        assert table["compression"].to_list() == [1.0, 1.0]
        only = read_sparse_frontier(tmp_path, dense_phase="prefill")
        assert only["phase"].to_list() == ["prefill"]
    else:
        assert table["phase"].to_list() == [phase]
        assert table["compression"][0] == pytest.approx(5.0)


def test_metrics_f1_and_iou(tmp_path: Path, study_result) -> None:
    study_result(tmp_path, task="qa_squad", task_args="dataset_name@squad+max_input_tokens@32768",
                 doc={"f1": 0.5, "f1_variance": 0.1, "total_samples": 40,
                      "average_attention_sparsity": 0.5})  # fmt: skip
    study_result(tmp_path, task="ruler_vt", task_args="num_chains@8+num_hops@4+max_input_tokens@32768",
                 doc={"iou": 0.25, "iou_variance": 0.05, "total_samples": 40,
                      "average_attention_sparsity": 0.75})  # fmt: skip
    table = read_sparse_frontier(tmp_path).sort("task")
    assert table["task"].to_list() == ["SQuAD", "VT"]
    assert table["metric"].to_list() == ["f1", "iou"]
    assert table["compression"].to_list() == pytest.approx([2.0, 4.0])
    # no output lengths recorded: no such columns
    assert "mean_output_tokens" not in table.columns


def test_requested_ratio_matches_the_study_budgets(shared_data: Path) -> None:
    budgets = pl.read_csv(
        shared_data / "paper" / "budgets_to_compression.csv",
        comment_prefix="#",
        schema_overrides={"value": pl.String},
    )
    checked = 0
    for row in budgets.iter_rows(named=True):
        value = str(row["value"])
        if row["method"] == "Quest":
            args, attention = {"token_budget": int(value)}, "quest"
        elif row["method"] == "SnapKV/Ada-SnapKV":
            args, attention = {"token_capacity": int(value)}, "snapkv"
        elif row["method"] == "Block-Sparse":
            args, attention = {"chunk_size": 16, "top_chunks": int(value)}, "block_sparse"
        else:
            continue  # vertical-slash and FlexPrefill budgets fix no ratio
        got = requested_compression(attention, args, row["seq_len"], Path("x.json"))
        assert got == pytest.approx(row["implied_compression"], abs=6e-4), row
        checked += 1
    assert checked > 60
    assert (
        requested_compression("vertical_and_slash", {"vertical_size": 448}, 16384, Path("x"))
        is None
    )


def test_largest_sample_count_kept(tmp_path: Path, study_result) -> None:
    study_result(tmp_path, samples=50, accuracy=0.9)
    study_result(tmp_path, samples=100)
    result = import_sparse_frontier(tmp_path)
    assert result.table["samples"].to_list() == [100]
    assert result.files_read == 1
    assert [s.reason for s in result.skipped] == [
        "superseded by a larger sample count in the same folder"
    ]
    assert result.summary() == (
        "1 result files read, 1 rows, 1 skipped (1 superseded by a larger sample count in the same folder)"
    )


def test_model_sizes_and_overrides(tmp_path: Path, study_result) -> None:
    study_result(tmp_path, model="llama_8b")
    study_result(tmp_path, model="gemma_12b")
    table = read_sparse_frontier(tmp_path).sort("model")
    assert table["params"].to_list() == [
        get_architecture("gemma3", "12B").params(),
        get_architecture("llama3.1", "8B").params(),
    ]
    other = tmp_path / "other"
    study_result(other, model="mistral_7b")
    with pytest.raises(ResultFolderError, match=r"model 'mistral_7b'.*--params mistral_7b=N"):
        read_sparse_frontier(other)
    table = read_sparse_frontier(other, params={"mistral_7b": 7.2e9})
    assert table["params"].to_list() == [7.2e9]
    assert "family" not in table.columns  # no family is known for it


def test_two_task_variants_are_reported(tmp_path: Path, study_result) -> None:
    study_result(tmp_path, task_args="num_queries@4+max_input_tokens@16384")
    study_result(tmp_path, task_args="num_queries@2+max_input_tokens@16384", accuracy=0.5)
    result = import_sparse_frontier(tmp_path)
    assert result.table.height == 2
    assert result.notes == [
        "1 configurations appear more than once (they differ in task_params); fit one with "
        "--where task_params=..., or pool them with --aggregate mean"
    ]


BAD = [
    ("malformed", {"doc": '{"accuracy": 0.5,'}, "not valid JSON"),
    ("missing", {"doc": {"accuracy": 0.5, "accuracy_variance": 0.1, "average_attention_sparsity": 0.5}},
     "field 'total_samples' is missing"),
    ("variance", {"doc": {"accuracy": 0.5, "total_samples": 10, "average_attention_sparsity": 0.5}},
     "field 'accuracy_variance' is missing"),
    ("metric", {"doc": {"total_samples": 10, "average_attention_sparsity": 0.5}}, "no metric field"),
    ("range", {"accuracy": 1.5}, "field 'accuracy': 1.5 is above 1"),
    ("text", {"total_samples": "100"}, "field 'total_samples': '100' is not a number"),
    ("flag", {"total_samples": True}, "field 'total_samples': True is not a number"),
    ("nan", {"doc": '{"accuracy": NaN, "accuracy_variance": 0, "total_samples": 1, '
                    '"average_attention_sparsity": 0}'}, "field 'accuracy': nan is not finite"),
    ("dense-all", {"average_attention_sparsity": 1.0}, "field 'average_attention_sparsity': 1.0 must be below 1"),
    ("mixed", {"f1": 0.5, "f1_variance": 0.1}, "fields 'accuracy' and 'f1' are both present"),
    ("pairs", {"task_args": "num_queries4+max_input_tokens@16384"}, "'num_queries4' is not of the form NAME@VALUE"),
    ("length", {"task_args": "num_queries@4"}, "field 'max_input_tokens' is missing"),
    ("attention", {"attention": "magic"}, "attention 'magic' is not one of the study's"),
    ("budget", {"attn_args": "token_budget@lots"}, "attention argument 'token_budget': 'lots' is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "change", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_name_file_and_field(
    tmp_path: Path, study_result, kind: str, change: dict, message: str
) -> None:
    path = study_result(tmp_path, **change)
    with pytest.raises(ResultFolderError) as info:
        read_sparse_frontier(tmp_path)
    text = str(info.value)
    assert str(path) in text and message in text
    assert "\n" not in text


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ResultFolderError, match="no evaluation_results"):
        read_sparse_frontier(tmp_path)
    with pytest.raises(ResultFolderError, match="not a folder"):
        read_sparse_frontier(tmp_path / "nowhere")
