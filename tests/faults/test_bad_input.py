"""Bad input on the command line: exit status 2 and one plain line naming what is wrong.

Tables, prediction points and output paths; option values are in `test_bad_options.py`, fit
files in `test_bad_fit_files.py` and laws in `test_bad_laws.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
