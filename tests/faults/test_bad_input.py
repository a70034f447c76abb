"""Bad input on the command line: exit status 2 and one plain line naming what is wrong.

Tables, prediction points and output paths; option values are in `test_bad_options.py`, fit
files in `test_bad_fit_files.py` and laws in `test_bad_laws.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.data import load_table

runner = CliRunner()
HEADER = "params,seq_len,compression,task,correct,samples\n"
ROWS = "7e9,16384,1,QuALITY,80,100\n7e9,16384,2,QuALITY,70,100\n1.4e10,16384,2,QuALITY,75,100\n"
CARD = "sparse-frontier-v1:prefill"
POINT = "N=7e9,L=16384,C=2,task=QuALITY"


def refused(*args: str, naming: tuple[str, ...] = ()) -> str:
    """Run the command line; it must exit 2 with one `error:` line naming each of `naming`."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for name in naming:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def table(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- file names ---------------------------------------------------------------------------------
def test_a_file_name_is_not_a_glob_pattern(tmp_path: Path) -> None:
    literal = table(tmp_path, HEADER + ROWS, "x?.csv")
    table(tmp_path, HEADER + ROWS + ROWS.replace("7e9", "2e9"), "x1.csv")
    assert load_table(literal).height == 3  # not the 9 rows of both files
    brackets = table(tmp_path, HEADER + ROWS, "data[2024].csv")
    assert load_table(brackets).height == 3


@pytest.mark.parametrize("name", ["[/x].csv", "results[v2].csv", "[bold]t.csv"])
def test_file_names_are_printed_as_they_are(tmp_path: Path, name: str) -> None:
    path = table(tmp_path, HEADER + "7e9,16384,0.5,QuALITY,80,100\n", name)
    refused("fit", str(path), "--backend", "lsq", naming=(str(path), "column 'compression'"))
    refused("fit", str(tmp_path / ("missing-" + name)), naming=("missing-" + name,))


def test_errors_are_one_line_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    # rich wraps at 80 columns when stderr is not a terminal; an error must stay one line
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-a-long-table-name-too.csv"
    for args, naming in (
        (["fit", str(deep)], str(deep)),
        (["fit", str(deep), "--chains", "0"], "--chains"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "scalelaw.cli", *args], capture_output=True, text=True
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > 80, lines
        assert naming in lines[0]


# --- table contents -----------------------------------------------------------------------------
def test_a_row_starting_with_a_hash_is_data_not_a_comment(tmp_path: Path) -> None:
    path = table(tmp_path, HEADER + "#7e9,16384,1,QuALITY,80,100\n" + ROWS)
    refused(
        "fit", str(path), "--backend", "lsq", naming=(str(path), "row 1", "column 'params'", "#7e9")
    )


def test_a_true_false_column_is_not_numbers(tmp_path: Path) -> None:
    path = table(tmp_path, HEADER + ROWS.replace("7e9", "true").replace("1.4e10", "false"))
    refused("fit", str(path), "--backend", "lsq", naming=(str(path), "column 'params'", "true"))


def test_both_a_name_and_its_alias_is_refused(tmp_path: Path) -> None:
    text = "N," + HEADER + "".join("1," + row + "\n" for row in ROWS.splitlines())
    path = table(tmp_path, text)
    refused("fit", str(path), "--backend", "lsq", naming=(str(path), "'N'", "'params'"))
    # --map says which one to use
    assert load_table(path, column_map={"N": "params"})["params"][0] == 7e9


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("runs", pl.Series("runs", [[1, 2], [3], [4]], dtype=pl.List(pl.Int64))),
        ("info", pl.Series("info", [{"a": 1}, {"a": 2}, {"a": 3}])),
        ("blob", pl.Series("blob", [b"x", b"y", b"z"], dtype=pl.Binary)),
    ],
)
def test_parquet_columns_of_lists_structs_or_bytes_are_named(
    tmp_path: Path, column: str, values: pl.Series
) -> None:
    frame = pl.read_csv((HEADER + ROWS).encode()).with_columns(values)
    path = tmp_path / "t.parquet"
    frame.write_parquet(path)
    refused("fit", str(path), "--backend", "lsq", naming=(str(path), f"column '{column}'"))


# --- prediction points --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("N=-7e9", "params"),
        ("C=0.5", "compression"),
        ("N=1e400", "params"),
        ("N=abc", "params"),
        ("L=0.5", "seq_len"),
        ("L=0", "seq_len"),
    ],
)
def test_prediction_points_follow_the_rules_of_rows(value: str, column: str) -> None:
    key = value.split("=")[0]
    point = ",".join([*(p for p in POINT.split(",") if not p.startswith(f"{key}=")), value])
    refused("predict", CARD, "--at", point, naming=("--at", f"column '{column}'"))


@pytest.mark.parametrize(
    ("text", "naming"),
    [
        ("N,L,C,task\n7e9,16384,2,QuALITY\n7e9,16384,0.25,QuALITY\n", ("row 2", "'compression'")),
        ("N,params,L,C,task\n7e9,7e9,16384,2,QuALITY\n", ("'N'", "'params'")),
        ("N,L,C,task\n7e9,16384,2,\n", ("row 1", "'task'")),
    ],
)
def test_prediction_grid_is_checked_like_a_table(
    tmp_path: Path, text: str, naming: tuple[str, ...]
) -> None:
    grid = table(tmp_path, text, "g.csv")
    refused("predict", CARD, "--grid", str(grid), naming=(str(grid), *naming))


# --- output paths -------------------------------------------------------------------------------
def test_fit_out_is_checked_before_fitting(tmp_path: Path) -> None:
    data = table(tmp_path, HEADER + ROWS)
    folder = tmp_path / "fits"
    folder.mkdir()
    refused("fit", str(data), "--backend", "lsq", "--out", str(folder), naming=(str(folder),))
    refused("fit", str(data), "--backend", "lsq", "--out", str(data / "f.nc"), naming=("folder",))
    missing = tmp_path / "nowhere" / "f.nc"
    refused("fit", str(data), "--backend", "lsq", "--out", str(missing), naming=("nowhere",))
    refused(
        "fit", str(data), "--backend", "lsq", "--out", str(tmp_path / "f.png"), naming=(".png",)
    )
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    from scalelaw.fits import FitFileError, get_card

    folder = tmp_path / "f.nc"
    folder.mkdir()
    with pytest.raises(FitFileError, match="is a directory"):
        get_card(CARD).save(folder)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("out", ["nowhere/frontier.png", "frontier.xyz"])
def test_frontier_figure_path_is_checked_first(tmp_path: Path, out: str) -> None:
    path = tmp_path / out
    refused("frontier", CARD, "--sizes", "7B,14B", "--out", str(path), naming=("--out", str(path)))


def test_fit_json_keeps_standard_output_for_the_json(tmp_path: Path) -> None:
    data = table(tmp_path, HEADER + ROWS + "1.4e10,32768,4,QuALITY,60,100\n")
    law = "e + a * log(N) + c * log(C)"
    out = tmp_path / "f.nc"
    args = ["fit", str(data), "--law", law, "--link", "logit", "--likelihood", "binomial",
            "--backend", "lsq", "--bootstrap", "5", "--format", "json", "--out", str(out),
            "--show-priors"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {r["param"] for r in report["parameters"]} == {"e", "a", "c"}
    assert "saved fit to" in result.stderr and out.exists()


def test_a_journal_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from scalelaw.measure.store import Store

    out = tmp_path / "results.parquet"
    store = Store(out).open()
    store.journal.unlink()
    store.journal.mkdir()
    grid = Path(__file__).resolve().parents[2] / "examples" / "grids" / "tiny.toml"
    refused("measure", str(grid), "--out", str(out), naming=("journal",))


# --- what is not a table, a grid or a config ----------------------------------------------------
def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)  # NUL bytes without the disk space
    return path


@pytest.mark.parametrize(
    ("name", "head", "at"),
    [("t.csv", b"", 1), ("t.jsonl", b"", 1), ("t.csv", HEADER.encode(), len(HEADER) + 1)],
)
def test_nul_bytes_are_not_a_text_table(tmp_path: Path, name: str, head: bytes, at: int) -> None:
    # 3 GB of NUL bytes read as a CSV table took polars 95 s and 16 GB of memory (1 GB as JSON
    # Lines: 12 s, 4.4 GB); 256 MiB keeps the test's own cost low should the check go
    path = _sparse(tmp_path / name, 256 * 2**20, head)
    start = time.monotonic()
    refused("fit", str(path), "--backend", "lsq", naming=(str(path), f"byte {at} is a NUL byte"))
    assert time.monotonic() - start < 10


def test_a_timings_file_is_checked_like_a_table(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # read as the timings, it blocked for ever
    nul = _sparse(tmp_path / "nul.csv", 2**20)
    for path, why in ((fifo, "not a regular file"), (nul, "byte 1 is a NUL byte")):
        refused("frontier", CARD, "--cost", "latency", "--timings", str(path), "--method", "quest",
                naming=(str(path), why))  # fmt: skip


@pytest.mark.parametrize(
    ("args", "name", "deep"),
    [
        (["measure", "{}", "--out", "r.parquet"], "g.toml", "a = " + "[" * 100_000 + "]" * 100_000),
        (["plan", CARD, "-c", "{}", "-t", "L=128K,budget=1e16", "--gpu-hours", "1"], "g.toml",
         "a = " + "[" * 100_000 + "]" * 100_000),
        (["architectures", "--config", "{}"], "config.json", "[" * 100_000 + "]" * 100_000),
        (["cost", "--config", "{}"], "config.json", "[" * 100_000 + "]" * 100_000),
    ],
    ids=["measure-grid", "plan-candidates", "architectures-config", "cost-config"],
)  # fmt: skip
def test_grids_and_configs_that_are_fifos_or_nested_too_deeply(
    tmp_path: Path, args: list[str], name: str, deep: str
) -> None:
    import os

    # a FIFO blocked for ever; 100,000 levels of nesting raised RecursionError (a traceback)
    fifo = tmp_path / "fifo" / name
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    refused(*[a.format(fifo) for a in args], naming=(str(fifo), "not a regular file"))
    nested = table(tmp_path, deep, name)
    refused(*[a.format(nested) for a in args], naming=(str(nested), "nested too deeply"))


# --- the Python API -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"seq_len": True}, "seq_len holds True, which is not a number"),
        ({"lengths": "4096"}, "lengths='4096'; give a list of numbers"),
        ({"budgets": "1e16"}, "budgets='1e16'; give a list of numbers"),
        ({"lengths": [4096, "8192"]}, "lengths holds '8192', which is not a number"),
        ({"prob": "0.9"}, "prob='0.9'"),
        ({"tasks": "QuALITY"}, "tasks='QuALITY'; give a list of task names"),
    ],
)
def test_decide_refuses_what_the_cli_could_not_pass(kwargs: dict, what: str) -> None:
    # True was a length of one token; a string was read letter by letter ("holds 'a'") or, for
    # tasks, as the tasks 'Q', 'u', ...; prob='0.9' raised a bare TypeError
    import re

    from scalelaw.frontier import decide, get_architecture

    qwen = [get_architecture("qwen2.5", s) for s in ("7B", "14B")]
    with pytest.raises(ValueError, match=f"decide: {re.escape(what)}"):
        decide(CARD, qwen, **{"seq_len": 131072.0, **kwargs})
