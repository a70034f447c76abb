"""KVPress evaluation folders -> the accuracy-point table (Python API)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalelaw.data import load_table
from scalelaw.frontier import get_architecture
from scalelaw.importers import ResultFolderError, import_kvpress, read_kvpress
from scalelaw.importers.kvpress import parse_folder_name

QWEN_7B = get_architecture("qwen2.5", "7B").params()


def test_ruler_run_maps_subtasks(tmp_path: Path, kvpress_run) -> None:
    kvpress_run(tmp_path)
    table = read_kvpress(tmp_path).sort("task")
    assert table["task"].to_list() == ["niah_single_1", "vt"]
    row = table.row(0, named=True)
    assert row["compression"] == pytest.approx(4.0)  # ratio 0.75 removed
    assert row["requested_compression"] == pytest.approx(4.0)
    assert row["achieved_compression"] == pytest.approx(4.0)
    assert row["press_ratio"] == 0.75
    assert (row["method"], row["press"], row["phase"]) == ("snapkv", "snapkv", "kv-prefill")
    assert (row["model"], row["params"], row["family"]) == (
        "Qwen/Qwen2.5-7B-Instruct",
        QWEN_7B,
        "qwen2.5",
    )
    assert (row["seq_len"], row["dataset"], row["data_dir"]) == (4096, "ruler", "4096")
    assert table["score"].to_list() == [0.95, 0.625]  # string_match is a percentage
    assert table["samples"].to_list() == [20, 8]  # counted in predictions.csv
    assert row["metric"] == "string_match"
    assert (row["query_aware"], row["fraction"], row["run"]) == (False, 1.0, 0)
    assert "score_var" not in table.columns
    assert load_table(table, require=["N", "L", "C"]).height == 2


def test_dense_and_config_ratio(tmp_path: Path, kvpress_run, kv_config) -> None:
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__no_press__0.00",
                config=kv_config(press_name="no_press", compression_ratio=0.0))  # fmt: skip
    # the folder name rounds 0.875 to 0.88; config.yaml has the ratio the run used
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__knorm__0.88",
                config=kv_config(press_name="knorm", compression_ratio=0.875))  # fmt: skip
    table = read_kvpress(tmp_path).sort("compression")
    assert table["method"].unique(maintain_order=True).to_list() == ["dense", "knorm"]
    assert table["compression"].unique(maintain_order=True).to_list() == pytest.approx([1.0, 8.0])


def test_folder_name_alone(tmp_path: Path, kvpress_run) -> None:
    name = ("ruler__8192__meta-llama--Meta-Llama-3.1-8B-Instruct__expected_attention__0.50"
            "__fraction0.500__max_context4096__query_aware")  # fmt: skip
    kvpress_run(tmp_path, name, with_config=False)
    row = read_kvpress(tmp_path).row(0, named=True)
    assert row["model"] == "meta-llama/Meta-Llama-3.1-8B-Instruct"
    assert row["params"] == get_architecture("llama3.1", "8B").params()
    assert (row["method"], row["compression"]) == ("expected-attention", 2.0)
    assert (row["fraction"], row["max_context_length"], row["query_aware"]) == (0.5, 4096, True)
    assert row["seq_len"] == 4096  # the context was cut to max_context_length
    assert parse_folder_name("longbench__Qwen--Qwen3-8B__knorm__0.25") == {
        "dataset": "longbench", "data_dir": None, "model": "Qwen/Qwen3-8B", "press": "knorm",
        "ratio": 0.25,
    }  # fmt: skip
    assert parse_folder_name("not_a_run") is None


def test_rerun_in_numbered_subfolder(tmp_path: Path, kvpress_run) -> None:
    first = kvpress_run(tmp_path)
    kvpress_run(first, "1", metrics={"niah_single_1": {"string_match": 90.0},
                                     "vt": {"string_match": 60.0}})  # fmt: skip
    result = import_kvpress(tmp_path)
    assert result.files_read == 2
    table = result.table.sort("run", "task")
    assert table["run"].to_list() == [0, 0, 1, 1]
    assert table["score"].to_list() == [0.95, 0.625, 0.9, 0.6]
    assert result.notes == []  # told apart by `run`
    assert load_table(table).height == 4


def test_longbench_needle_and_others(tmp_path: Path, kvpress_run, kv_config) -> None:
    rows = [{"task": "hotpotqa", "length": n, "predicted_answer": "x"} for n in (1000, 2000, 5000)]
    kvpress_run(tmp_path, "longbench__hotpotqa__Qwen--Qwen2.5-7B-Instruct__snapkv__0.50",
                metrics=41.5, predictions=rows,
                config=kv_config(dataset="longbench", data_dir="hotpotqa", compression_ratio=0.5))  # fmt: skip
    kvpress_run(tmp_path, "longbench-e__hotpotqa__Qwen--Qwen2.5-7B-Instruct__snapkv__0.50",
                metrics='{"0-4k": 50.0, "4-8k": 25.0, "8k+": NaN}', predictions=rows,
                config=kv_config(dataset="longbench-e", data_dir="hotpotqa", compression_ratio=0.5))  # fmt: skip
    kvpress_run(tmp_path, "longbench-v2__Qwen--Qwen2.5-7B-Instruct__snapkv__0.50",
                metrics={"average": 0.3, "easy": 0.5, "hard": 0.1, "short": 0.4},
                predictions=rows,
                config=kv_config(dataset="longbench-v2", data_dir=None, compression_ratio=0.5))  # fmt: skip
    table = read_kvpress(tmp_path).sort("task")
    assert table["task"].to_list() == ["hotpotqa", "hotpotqa:0-4k", "hotpotqa:4-8k", "longbench-v2"]
    assert table["score"].to_list() == [0.415, 0.5, 0.25, 0.3]
    assert table["samples"].to_list() == [3, 2, 1, 3]
    assert table["length_bucket"].to_list() == [None, "0-4k", "4-8k", None]
    assert "seq_len" not in table.columns  # none of these datasets fixes a length

    needle = tmp_path / "needle"
    scores = [{"rouge-1": {"r": 1.0, "p": 1.0, "f": 1.0}, "rouge-l": {"r": 1.0, "p": 1.0, "f": f}}
              for f in (1.0, 0.5)]  # fmt: skip
    kvpress_run(needle, "needle_in_haystack__Qwen--Qwen2.5-7B-Instruct__snapkv__0.50__max_context8192__needle_depth50",
                metrics=scores, predictions=[{"needle": "n", "predicted_answer": "p"}] * 2,
                config=kv_config(dataset="needle_in_haystack", data_dir=None, compression_ratio=0.5,
                                 max_context_length=8192, needle_depth=50))  # fmt: skip
    row = read_kvpress(needle).row(0, named=True)
    assert (row["task"], row["seq_len"], row["needle_depth"]) == ("needle_in_haystack", 8192, "50")
    assert (row["score"], row["score_var"], row["samples"]) == (0.75, 0.125, 2)
    assert row["metric"] == "rouge-l f"
    assert read_kvpress(needle, needle_metric="rouge-1:f")["score"].to_list() == [1.0]
    with pytest.raises(ResultFolderError, match="--needle-metric 'bleu'"):
        read_kvpress(needle, needle_metric="bleu")


def test_threshold_press_uses_the_reached_ratio(
    tmp_path: Path, kvpress_run, kv_config, ruler_rows
) -> None:
    config = kv_config(press_name="kvzap_mlp", compression_ratio=..., threshold=-3.0)
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__kvzap_mlp__-3.00",
                config=config, predictions=ruler_rows({"niah_single_1": 20, "vt": 8}, ratio=0.8))  # fmt: skip
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__kvzap_mlp__-4.00",
                config={**config, "threshold": -4.0},
                predictions=ruler_rows({"niah_single_1": 20, "vt": 8}, ratio=None))  # fmt: skip
    result = import_kvpress(tmp_path)
    table = result.table
    assert table["compression"].to_list() == pytest.approx([5.0, 5.0])
    assert table["threshold"].to_list() == [-3.0, -3.0]
    assert "requested_compression" not in table.columns
    assert [s.reason for s in result.skipped] == [
        "ratio set by a threshold or head fraction, and predictions.csv records no compression_ratio"
    ]


def test_skipped_runs(tmp_path: Path, kvpress_run, kv_config) -> None:
    kvpress_run(tmp_path)
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__decoding_knorm__0.50",
                config=kv_config(press_name="decoding_knorm", compression_ratio=0.5, target_size=1024))  # fmt: skip
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__tova__0.50", metrics=False)
    kvpress_run(tmp_path, "loogle__shortdep_qa__Qwen--Qwen2.5-7B-Instruct__snapkv__0.75",
                config=kv_config(dataset="loogle", data_dir="shortdep_qa"))  # fmt: skip
    kvpress_run(tmp_path, "longbench__qasper__Qwen--Qwen2.5-7B-Instruct__snapkv__0.75",
                metrics=30.0, predictions=[{"task": "qasper", "predicted_answer": "x"}],
                config=kv_config(dataset="longbench", data_dir="qasper"))  # fmt: skip
    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen2.5-7B-Instruct__think__0.00__key_channel_cr0.50",
                config=kv_config(press_name="think", compression_ratio=0.0,
                                 key_channel_compression_ratio=0.5))  # fmt: skip
    result = import_kvpress(tmp_path)
    assert result.table.height == 2
    reasons = sorted(s.reason for s in result.skipped)
    assert reasons == sorted([
        "decoding press (its cache size is set by target_size; the ratio reached is not recorded)",
        "no metrics.json (unfinished run)",
        "no reader for dataset 'loogle'",
        "no sequence length (dataset 'longbench' records none; import it on its own with --dataset)",
        "compresses key channels, not tokens (no sequence compression ratio)",
    ])  # fmt: skip
    assert result.summary().startswith("2 result files read, 2 rows, 5 skipped (")
    alone = import_kvpress(tmp_path, datasets=["longbench"])
    assert alone.table["task"].to_list() == ["qasper"]


def test_unknown_model_needs_params(tmp_path: Path, kvpress_run, kv_config) -> None:
    model, folder_model = (
        "mistralai/Mistral-7B-Instruct-v0.3",
        "mistralai--Mistral-7B-Instruct-v0.3",
    )
    folder = kvpress_run(tmp_path, f"ruler__4096__{folder_model}__snapkv__0.75",
                         config=kv_config(model=model))  # fmt: skip
    with pytest.raises(ResultFolderError) as info:
        read_kvpress(tmp_path)
    assert str(info.value).startswith(f"{folder / 'config.yaml'}: field 'model': '{model}'")
    assert f"--params {model}=N" in str(info.value)
    for key in (model, folder_model):
        assert read_kvpress(tmp_path, params={key: 7.25e9})["params"].to_list() == [7.25e9] * 2


def test_a_model_of_the_architecture_table_needs_no_params(
    tmp_path: Path, kvpress_run, kv_config
) -> None:
    from scalelaw.frontier import get_architecture

    kvpress_run(tmp_path, "ruler__4096__Qwen--Qwen3-8B__snapkv__0.75",
                config=kv_config(model="Qwen/Qwen3-8B"))  # fmt: skip
    params = read_kvpress(tmp_path)["params"].to_list()
    assert params == [float(get_architecture("qwen3", "8B").params())] * 2


def test_python_yaml_tag_is_refused_and_not_run(tmp_path: Path, kvpress_run) -> None:
    marker = tmp_path / "ran"
    config = (
        "dataset: ruler\n"
        "data_dir: '4096'\n"
        "model: Qwen/Qwen2.5-7B-Instruct\n"
        "press_name: snapkv\n"
        "compression_ratio: 0.75\n"
        f"press_init_command: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    folder = kvpress_run(tmp_path / "runs", config=config)
    with pytest.raises(ResultFolderError) as info:
        read_kvpress(tmp_path / "runs")
    text = str(info.value)
    assert text.startswith(f"{folder / 'config.yaml'}: line 6, field 'press_init_command': ")
    assert "python/object/apply" in text and "\n" not in text
    assert not marker.exists()


BAD = [
    ("json", {"metrics": '{"vt": {"string_match": 5'}, "metrics.json", "not valid JSON"),
    ("field", {"metrics": {"vt": {"accuracy": 5}}}, "metrics.json", "field 'vt.string_match' is missing"),
    ("percent", {"metrics": {"vt": {"string_match": 150}}}, "metrics.json", "field 'vt.string_match': 150 is above 100"),
    ("subtask", {"metrics": {"cwe": {"string_match": 50}}}, "predictions.csv", "no rows for subtask 'cwe'"),
    ("ratio", {"config": {"dataset": "ruler", "data_dir": "4096", "model": "Qwen/Qwen2.5-7B-Instruct",
                          "press_name": "snapkv", "compression_ratio": 1.0}},
     "config.yaml", "field 'compression_ratio': 1.0 must be below 1"),
    ("type", {"config": {"dataset": "ruler", "model": "Qwen/Qwen2.5-7B-Instruct", "press_name": "snapkv",
                         "compression_ratio": 0.5, "query_aware": "yes please"}},
     "config.yaml", "field 'query_aware': 'yes please' is not true or false"),
    ("yaml", {"config": "dataset: ruler\nmodel: [unclosed\n"}, "config.yaml", "line "),
    ("csv", {"predictions": "task,compression_ratio\nvt,lots\n"}, "predictions.csv",
     "row 1, field 'compression_ratio': 'lots' is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "change", "file", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_folders_name_file_and_field(
    tmp_path: Path, kvpress_run, kind: str, change: dict, file: str, message: str
) -> None:
    folder = kvpress_run(tmp_path, **change)
    with pytest.raises(ResultFolderError) as info:
        read_kvpress(tmp_path)
    text = str(info.value)
    assert text.startswith(str(folder / file)), text
    assert message in text and "\n" not in text


def test_predictions_missing(tmp_path: Path, kvpress_run) -> None:
    folder = kvpress_run(tmp_path)
    (folder / "predictions.csv").unlink()
    with pytest.raises(ResultFolderError, match=r"predictions\.csv: file not found"):
        read_kvpress(tmp_path)


def test_ruler_metrics_shape_is_kvpress(tmp_path: Path, kvpress_run) -> None:
    # KVPress's RULER scorer: {subtask: {"string_match": percent rounded to 2 decimals}}
    metrics = {"niah_single_1": {"string_match": 33.33}, "vt": {"string_match": 87.5}}
    kvpress_run(tmp_path, metrics=json.dumps(metrics, indent=4))
    assert read_kvpress(tmp_path).sort("task")["score"].to_list() == pytest.approx([0.3333, 0.875])


def test_nothing_to_import_says_why(tmp_path: Path, kvpress_run) -> None:
    kvpress_run(tmp_path, metrics=False)
    with pytest.raises(ResultFolderError) as info:
        read_kvpress(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path}: nothing to import (1 skipped: 1 no metrics.json (unfinished run))"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultFolderError, match="no KVPress run folders"):
        read_kvpress(tmp_path / "empty")
