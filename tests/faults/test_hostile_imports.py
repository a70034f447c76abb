"""Hostile result folders: `scalelaw import` refuses them with one line, quickly, unread.

Links out of the folder or in loops, FIFOs and devices, oversized or deeply nested files, YAML
aliases and numbers out of range ("What the importers refuse" in docs/import.md).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.importers import ResultFolderError, import_kvpress, import_sparse_frontier
from scalelaw.importers.common import JSON_LIMIT, PREDICTIONS_LIMIT, YAML_LIMIT, load_json

# A read that blocks or never ends fails the test instead of stalling the run.
pytestmark = pytest.mark.timeout(30)

RUN = "ruler__4096__Qwen--Qwen2.5-7B-Instruct__snapkv__0.75"
CONFIG = {
    "dataset": "ruler",
    "data_dir": "4096",
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "press_name": "snapkv",
    "compression_ratio": 0.75,
}
METRICS = json.dumps({"niah_single_1": {"string_match": 95.0}, "vt": {"string_match": 62.5}})
PREDICTIONS = "task,compression_ratio\n" + "niah_single_1,0.75\n" * 4 + "vt,0.75\n" * 2

STUDY = "results/ruler_niah/num_queries@4+max_input_tokens@16384/qwen_7b/quest/token_budget@1632"
RESULT = {
    "accuracy": 0.75,
    "accuracy_variance": 0.1875,
    "total_samples": 100,
    "average_attention_sparsity": 0.9,
}

# Nine levels of nine aliases each: 9**9 (387 million) strings once expanded.
LAUGHS = "\n".join(
    [
        "dataset: ruler",
        "model: Qwen/Qwen2.5-7B-Instruct",
        "press_name: snapkv",
        "compression_ratio: 0.75",
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "needle_depth: *i",
    ]
)


def kv_run(root: Path, name: str = RUN, **files: str | None) -> Path:
    """A KVPress run folder; `config`, `metrics`, `predictions` replace a file's text (None: no file)."""
    folder = root / name
    folder.mkdir(parents=True)
    texts = {"config": yaml.safe_dump(CONFIG), "metrics": METRICS, "predictions": PREDICTIONS}
    suffix = {"config": "config.yaml", "metrics": "metrics.json", "predictions": "predictions.csv"}
    for key, text in {**texts, **files}.items():
        if text is not None:
            (folder / suffix[key]).write_text(text)
    return folder


def config(**changes: object) -> str:
    return yaml.safe_dump({**CONFIG, **changes})


def study_file(root: Path, text: str | None = None, folder: str = STUDY, **fields: object) -> Path:
    """One of the study's evaluation_results_100.json files; `text` replaces its content."""
    path = root / folder / "evaluation_results_100.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**RESULT, **fields}) if text is None else text)
    return path


def refused(read, root: Path, *naming: str) -> str:
    """`read(root)` raises the importers' error: one line, naming each of `naming`."""
    with pytest.raises(ResultFolderError) as info:
        read(root)
    text = str(info.value)
    assert "\n" not in text, text
    for name in naming:
        assert name in text, (name, text)
    return text


# ---- 1. links --------------------------------------------------------------------------------


def test_kvpress_links_inside_are_followed_and_the_others_skipped(tmp_path: Path) -> None:
    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    kv_run(root / "archive")
    # a link to a folder in the tree: that folder is read once, under its own path
    (root / "latest").symlink_to("archive")
    # a link to a file in the tree is read as the file
    other = "ruler__8192__Qwen--Qwen2.5-7B-Instruct__snapkv__0.50"
    linked = kv_run(root, other, config=None)
    (root / "configs").mkdir()
    (root / "configs" / "half.yaml").write_text(config(data_dir="8192", compression_ratio=0.5))
    (linked / "config.yaml").symlink_to("../configs/half.yaml")
    # links out of the tree, loops and dangling links are not read
    far = kv_run(outside, "ruler__16384__Qwen--Qwen2.5-7B-Instruct__snapkv__0.75")
    (root / far.name).symlink_to(far)
    half_out = kv_run(root, "ruler__16384__Qwen--Qwen2.5-7B-Instruct__knorm__0.25", metrics=None)
    (half_out / "metrics.json").symlink_to(far / "metrics.json")
    (root / "archive" / "again").symlink_to("..")
    (root / "x").symlink_to("y")
    (root / "y").symlink_to("x")
    (root / "gone").symlink_to("nowhere")

    result = import_kvpress(root)
    assert sorted(result.table["source"].unique()) == [f"archive/{RUN}", other]
    assert result.table.filter(result.table["source"] == other)["compression"].to_list() == [2, 2]
    assert result.files_read == 2
    assert sorted((s.path, s.reason) for s in result.skipped) == [
        ("archive/again", "symlink loop"),
        ("gone", "broken symlink"),
        (f"{half_out.name}/metrics.json", "symlink to outside the folder"),
        (far.name, "symlink to outside the folder"),
        ("x", "symlink loop"),
        ("y", "symlink loop"),
    ]
    assert result.summary().startswith("2 result files read, 4 rows, 6 skipped (")


def test_study_links_inside_are_followed_and_the_others_skipped(tmp_path: Path) -> None:
    root, outside = tmp_path / "study", tmp_path / "elsewhere"
    real = study_file(root)
    # the same result filed under a second budget folder: a link inside the tree, read there
    shared = study_file(root, folder=STUDY.replace("1632", "3264"), text="{}")
    shared.unlink()
    shared.symlink_to(real)
    far = study_file(outside, folder=STUDY.replace("1632", "816"))
    near = root / STUDY.replace("1632", "816") / far.name
    near.parent.mkdir(parents=True)
    near.symlink_to(far)
    (root / "results" / "qa_quality").symlink_to(outside / "results" / "ruler_niah")
    (root / "results" / "loop").symlink_to(".")

    result = import_sparse_frontier(root)
    assert sorted(result.table["source"].unique()) == [
        str(real.relative_to(root)),
        str(shared.relative_to(root)),
    ]
    assert sorted((s.path, s.reason) for s in result.skipped) == [
        ("results/loop", "symlink loop"),
        ("results/qa_quality", "symlink to outside the folder"),
        (str(near.relative_to(root)), "symlink to outside the folder"),
    ]


# ---- 2. special files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [("metrics", "metrics.json"), ("predictions", "predictions.csv"), ("config", "config.yaml")],
)
def test_kvpress_fifo_is_refused_unopened(tmp_path: Path, key: str, name: str) -> None:
    folder = kv_run(tmp_path, **{key: None})
    os.mkfifo(folder / name)  # no writer: opening it for reading would block for ever
    refused(import_kvpress, tmp_path, f"{folder / name}: not a regular file (a FIFO)")


def test_study_fifo_is_refused_unopened(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    path.unlink()
    os.mkfifo(path)
    refused(import_sparse_frontier, tmp_path, f"{path}: not a regular file (a FIFO)")


def test_devices_are_refused_unread(tmp_path: Path) -> None:
    refused(load_json, Path("/dev/null"), "/dev/null: not a regular file (a character device)")
    # a link to /dev/zero leads out of the folder: skipped, never read
    path = study_file(tmp_path / "study")
    link = path.with_name("evaluation_results_200.json")
    link.symlink_to("/dev/zero")
    result = import_sparse_frontier(tmp_path / "study")
    assert [(s.path, s.reason) for s in result.skipped] == [
        (str(link.relative_to(tmp_path / "study")), "symlink to outside the folder")
    ]
    folder = kv_run(tmp_path / "kv", metrics=None)
    (folder / "metrics.json").symlink_to("/dev/zero")
    refused(import_kvpress, tmp_path / "kv", "nothing to import", "1 symlink to outside the folder")
    # a device node inside the folder (where the test may make one)
    device = kv_run(tmp_path / "device", metrics=None) / "metrics.json"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("cannot make a device node here")
    refused(
        import_kvpress, tmp_path / "device", f"{device}: not a regular file (a character device)"
    )


# ---- 3. size and depth -------------------------------------------------------------------------


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)  # a sparse file: the size without the disk space


@pytest.mark.parametrize(
    ("key", "name", "limit"),
    [
        ("metrics", "metrics.json", JSON_LIMIT),
        ("predictions", "predictions.csv", PREDICTIONS_LIMIT),
        ("config", "config.yaml", YAML_LIMIT),
    ],
)
def test_oversized_kvpress_files_are_refused_by_size(
    tmp_path: Path, key: str, name: str, limit: int
) -> None:
    folder = kv_run(tmp_path, **{key: None})
    _sparse(folder / name, limit + 1)
    refused(import_kvpress, tmp_path, str(folder / name), f"over the {limit >> 20} MiB limit")


def test_oversized_study_file_is_refused_by_size(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    _sparse(path, JSON_LIMIT + 1)
    refused(import_sparse_frontier, tmp_path, str(path), f"over the {JSON_LIMIT >> 20} MiB limit")


def test_deep_json_is_refused(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    path = study_file(tmp_path / "study", text=deep)
    refused(import_sparse_frontier, tmp_path / "study", str(path), "nested deeper than 64 levels")
    folder = kv_run(tmp_path / "kv", metrics=deep)
    refused(import_kvpress, tmp_path / "kv", str(folder / "metrics.json"), "deeper than 64")
    # brackets inside strings are text, not nesting
    path = study_file(tmp_path / "text", note="[" * 1000)
    assert import_sparse_frontier(tmp_path / "text").files_read == 1


@pytest.mark.parametrize(
    "text",
    ["[" * 10_000 + "]" * 10_000, "- " * 10_000 + "x\n"],
    ids=["flow", "block"],
)
def test_deep_yaml_is_refused(tmp_path: Path, text: str) -> None:
    folder = kv_run(tmp_path, config=text)
    refused(import_kvpress, tmp_path, str(folder / "config.yaml"), "nested deeper than 64 levels")


# ---- 4. YAML aliases ---------------------------------------------------------------------------


def test_billion_laughs_config_is_refused_fast(tmp_path: Path) -> None:
    folder = kv_run(tmp_path, config=LAUGHS)
    start = time.monotonic()
    refused(import_kvpress, tmp_path, str(folder / "config.yaml"), "aliases")
    assert time.monotonic() - start < 10


def test_any_yaml_alias_is_refused(tmp_path: Path) -> None:
    folder = kv_run(tmp_path, config="model: &m Qwen/Qwen2.5-7B-Instruct\nalso: *m\n" + config())
    text = refused(import_kvpress, tmp_path, f"{folder / 'config.yaml'}: line 1, field 'model'")
    assert "aliases and anchors are not accepted" in text


def test_cli_billion_laughs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = kv_run(tmp_path / "runs", config=LAUGHS)
    start = time.monotonic()
    result = CliRunner().invoke(
        app, ["import", "kvpress", str(tmp_path / "runs"), "--out", str(tmp_path / "t.parquet")]
    )
    assert time.monotonic() - start < 10
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {folder / 'config.yaml'}: line ")
    assert "aliases and anchors are not accepted" in lines[0]
    assert not (tmp_path / "t.parquet").exists()


# ---- 5. numbers out of range ------------------------------------------------------------------

BIG = 10**29  # 30 digits


def _doc(**changes: object) -> str:
    return json.dumps({**RESULT, **changes})


STUDY_NUMBERS = [
    ("samples-30-digits", _doc(total_samples=BIG), STUDY, "field 'total_samples'"),
    ("samples-1e300", _doc(total_samples=1e300), STUDY, "field 'total_samples'"),
    ("samples-400-digits", _doc(total_samples=10**400), STUDY, "field 'total_samples'"),
    ("samples-5000-digits", _doc(total_samples="N").replace('"N"', "1" + "0" * 5000), STUDY,
     "field 'total_samples'"),
    ("variance-1e300", _doc(accuracy_variance=1e300), STUDY, "field 'accuracy_variance'"),
    ("output-tokens-1e300", _doc(max_output_tokens=1e300), STUDY, "field 'max_output_tokens'"),
    ("length-30-digits", _doc(), STUDY.replace("16384", str(BIG)), "field 'max_input_tokens'"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "text", "folder", "field"), STUDY_NUMBERS,
                         ids=[c[0] for c in STUDY_NUMBERS])  # fmt: skip
def test_study_numbers_out_of_range_are_refused(
    tmp_path: Path, kind: str, text: str, folder: str, field: str
) -> None:
    path = study_file(tmp_path, text=text, folder=folder)
    refused(import_sparse_frontier, tmp_path, str(path), field)


KV_NUMBERS = [
    ("ratio-400-digits", {"config": config(compression_ratio=10**400)}, "config.yaml", "field 'compression_ratio'"),
    ("context-30-digits", {"config": config(max_context_length=BIG)}, "config.yaml", "field 'max_context_length'"),
    ("data-dir-30-digits", {"config": config(data_dir=str(BIG))}, "config.yaml", "field 'data_dir'"),
    ("name-context-30-digits", {"name": RUN + f"__max_context{BIG}", "config": None}, "", "field 'max_context_length'"),
    ("name-fraction-7", {"name": RUN + "__fraction7", "config": None}, "", "field 'fraction'"),
    ("row-ratio-negative", {"predictions": "task,compression_ratio\nniah_single_1,-0.5\n" + PREDICTIONS.split("\n", 2)[2]},
     "predictions.csv", "row 1, field 'compression_ratio': '-0.5'"),
    ("row-length-inf", {"predictions": "task,length\n" + "niah_single_1,inf\n" * 4 + "vt,5\n" * 2},
     "predictions.csv", "row 1, field 'length': 'inf'"),
    ("yaml-5000-digits", {"config": config() + f"max_new_tokens: 1{'0' * 5000}\n"}, "config.yaml", "field 'max_new_tokens'"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "change", "file", "field"), KV_NUMBERS,
                         ids=[c[0] for c in KV_NUMBERS])  # fmt: skip
def test_kvpress_numbers_out_of_range_are_refused(
    tmp_path: Path, kind: str, change: dict, file: str, field: str
) -> None:
    folder = kv_run(tmp_path, **change)
    refused(import_kvpress, tmp_path, str(folder / file), field)


def test_kvpress_predictions_of_nul_bytes_are_refused_unparsed(tmp_path: Path) -> None:
    # under the size limit, 500 MiB of NUL bytes took polars 6 GB of memory to read
    folder = kv_run(tmp_path, predictions=None)
    _sparse(folder / "predictions.csv", 64 * 2**20)
    refused(import_kvpress, tmp_path, f"{folder / 'predictions.csv'}: byte 1 is a NUL byte")
