"""Every kind of bad input gets one clear line naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.data import DataError, load_table

GOOD = "params,seq_len,compression,task,correct,samples\n7e9,16384,1,QuALITY,80,100\n7e9,16384,2,QuALITY,70,100\n"
SPARSE = ("params", "seq_len", "compression")


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_table_gets_score_from_counts(tmp_path: Path) -> None:
    t = load_table(write(tmp_path, GOOD), require=SPARSE)
    assert t["score"].to_list() == [0.8, 0.7]
    assert t["params"].dtype == pl.Float64


def test_aliases_and_formats_agree(tmp_path: Path) -> None:
    frame = pl.DataFrame({"N": [1e9, 2e9], "L": [100, 200], "C": [1.0, 4.0], "score": [0.5, 0.4]})
    frame.write_parquet(tmp_path / "t.parquet")
    frame.write_ndjson(tmp_path / "t.jsonl")
    a = load_table(tmp_path / "t.parquet", require=SPARSE)
    b = load_table(tmp_path / "t.jsonl", require=SPARSE)
    assert a.columns == b.columns and "params" in a.columns
    assert a.equals(b)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot parse"),
        ("params,seq_len,compression,score\n", "no rows"),
        ("params,seq_len,score\n1e9,100,0.5\n", "required column 'compression' is missing"),
        (
            "params,seq_len,compression,score\n1e9,abc,1,0.5\n",
            "row 1, column 'seq_len': value 'abc' is not a number",
        ),
        (
            "params,seq_len,compression,score\n1e9,100,1,0.5\n1e9,100,2,NaN\n",
            "row 2, column 'score': value nan is not finite",
        ),
        (
            "params,seq_len,compression,score\n1e9,100,inf,0.5\n",
            "row 1, column 'compression': value inf is not finite",
        ),
        (
            "params,seq_len,compression,score\n0,100,1,0.5\n",
            "row 1, column 'params': value 0.0 must be > 0",
        ),
        (
            "params,seq_len,compression,score\n1e9,-5,1,0.5\n",
            "row 1, column 'seq_len': value -5.0 must be > 0",
        ),
        (
            "params,seq_len,compression,score\n1e9,100,0.5,0.5\n",
            "row 1, column 'compression': value 0.5 must be >= 1",
        ),
        (
            "params,seq_len,compression,score\n1e9,100,1,1.5\n",
            "row 1, column 'score': value 1.5 must lie in [0, 1]",
        ),
        (
            "params,seq_len,compression,correct,samples\n1e9,100,1,12,10\n",
            "row 1, column 'correct': 12 correct out of 10",
        ),
        (
            "params,seq_len,compression,score\n1e9,100,1,0.5\n1e9,100,1,0.6\n",
            "row 2, column 'score': configuration repeats row 1",
        ),
        ("params,seq_len,compression,score\n1e9,100,1,\n", "row 1, column 'score': missing value"),
    ],
)
def test_bad_input_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_table(path, require=SPARSE)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_agreeing_duplicates_are_kept(tmp_path: Path) -> None:
    t = load_table(
        write(tmp_path, "params,seq_len,compression,score\n1e9,100,1,0.5\n1e9,100,1,0.5\n"),
        require=SPARSE,
    )
    assert t.height == 2


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unknown file type"):
        load_table(write(tmp_path, "x", "t.xlsx"))


def test_filter_that_selects_nothing_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "params,seq_len,compression,score,phase\n1e9,100,1,0.5,prefill\n")
    with pytest.raises(DataError, match="no row has phase = 'decode'"):
        load_table(path, require=SPARSE, where={"phase": "decode"})


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "params,seq_len,compression,task,score\n1e9,100,0.5,a,0.5\n")
    result = CliRunner().invoke(app, ["fit", str(path), "--backend", "lsq"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "column 'compression'" in text and "must be >= 1" in text


def test_assignments_accept_double_equals_and_quotes() -> None:
    from scalelaw.data import parse_assignments

    got = parse_assignments(["phase==prefill", "task='niah', method=\"snapkv\""], "--where")
    assert got == {"phase": "prefill", "task": "niah", "method": "snapkv"}
    with pytest.raises(DataError, match="--where 'phase=' is not of the form"):
        parse_assignments(["phase="], "--where")
