"""Every kind of bad input gets one clear line naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

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
            "row 1, column 'seq_len': value -5.0 must be >= 1",
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
        (
            "params,seq_len,compression,score,compression\n1e9,100,1,0.5,8\n",
            "column 'compression' appears more than once in the header",
        ),
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


def test_assignments_accept_double_equals_and_quotes() -> None:
    from scalelaw.data import parse_assignments

    got = parse_assignments(["phase==prefill", "task='niah', method=\"snapkv\""], "--where")
    assert got == {"phase": "prefill", "task": "niah", "method": "snapkv"}
    with pytest.raises(DataError, match="--where 'phase=' is not of the form"):
        parse_assignments(["phase="], "--where")


def test_a_key_given_twice_is_refused_not_silently_overwritten() -> None:
    from scalelaw.data import parse_assignments

    with pytest.raises(DataError, match="--at: 'N' is given twice"):
        parse_assignments(["N=7e9,L=32K,N=8e9"], "--at")
    with pytest.raises(DataError, match="--prior: 'alpha' is given twice"):
        parse_assignments(["alpha=normal(0, 1)", "alpha=normal(0, 2)"], "--prior")


def test_prior_with_commas_is_one_assignment() -> None:
    from scalelaw.data import parse_assignments

    assert parse_assignments(["alpha=normal(0, 2)"], "--prior") == {"alpha": "normal(0, 2)"}
    got = parse_assignments(["alpha=normal(0, 2),beta=student_t(3, 0, 1)"], "--prior")
    assert got == {"alpha": "normal(0, 2)", "beta": "student_t(3, 0, 1)"}


def test_several_assignments_in_one_item_still_split() -> None:
    from scalelaw.data import parse_assignments

    got = parse_assignments(["N=7e9,L=131072,C=10,task=NIAH"], "--at")
    assert got == {"N": "7e9", "L": "131072", "C": "10", "task": "NIAH"}
    assert parse_assignments(["phase==prefill,", "x = 1"]) == {"phase": "prefill", "x": "1"}


def test_bounds_forms() -> None:
    from scalelaw.data import parse_bounds

    got = parse_bounds(["top=0:1,E=0:", "alpha=:2", "L0=-1:128K"])
    assert got == {
        "top": (0.0, 1.0),
        "E": (0.0, None),
        "alpha": (None, 2.0),
        "L0": (-1.0, 131072.0),
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("top=01", "--bounds 'top=01': expected LOW:HIGH with a colon"),
        ("top=a:1", "--bounds 'top=a:1': 'a' is not a number"),
        ("top=0:b", "--bounds 'top=0:b': 'b' is not a number"),
        ("top=:", "--bounds 'top=:': give a lower bound, an upper bound or both"),
        ("top=1:1", "--bounds 'top=1:1': lower bound 1 is not below upper bound 1"),
        ("top=2:1", "lower bound 2 is not below upper bound 1"),
        ("top", "--bounds 'top' is not of the form NAME=LOW:HIGH"),
        ("top=0:1,top=0:2", "bounds for 'top' are given twice"),
    ],
)
def test_bad_bounds_are_named(item: str, message: str) -> None:
    from scalelaw.data import parse_bounds

    with pytest.raises(DataError) as info:
        parse_bounds([item])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


FILTERED = pl.DataFrame(
    {
        "N": [1e9, 7e9, 7e10, 7e10],
        "L": [4096, 16384, 131072, 131072],
        "C": [1.0, 2.0, 4.0, 8.0],
        "task": ["NIAH", "QA", "QA", "NIAH"],
        "phase": ["prefill", "prefill", "decode", "prefill"],
        "score": [0.9, 0.8, 0.7, 0.6],
    }
)


def test_where_parses_comparisons_and_prints_them_back() -> None:
    from scalelaw.data import Condition, parse_where

    got = parse_where(["N<7e10", "task!=NIAH,phase==prefill", "L>=16K"])
    assert got == [
        Condition("params", "<", "7e10"),
        Condition("task", "!=", "NIAH"),
        Condition("phase", "=", "prefill"),
        Condition("seq_len", ">=", "16K"),
    ]
    assert [str(c) for c in got] == ["params<7e10", "task!=NIAH", "phase=prefill", "seq_len>=16K"]
    with pytest.raises(DataError, match="--where 'N<big': 'big' is not a number"):
        parse_where(["N<big"])
    with pytest.raises(DataError, match="--where 'phase' is not of the form COLUMN=VALUE"):
        parse_where(["phase"])


@pytest.mark.parametrize(
    ("where", "scores"),
    [
        (["N<7e10"], [0.9, 0.8]),
        (["N>=7e9"], [0.8, 0.7, 0.6]),
        (["C!=4"], [0.9, 0.8, 0.6]),
        (["task!=NIAH"], [0.8, 0.7]),
        (["L>=128K"], [0.7, 0.6]),
        (["L=16K"], [0.8]),
        (["N=7e10"], [0.7, 0.6]),
        (["phase=prefill", "N>1e9", "task=NIAH"], [0.6]),
        (["phase=prefill,N>1e9"], [0.8, 0.6]),
        ({"phase": "prefill"}, [0.9, 0.8, 0.6]),
    ],
)
def test_where_comparisons_combine(where: list[str] | dict[str, str], scores: list[float]) -> None:
    t = load_table(FILTERED, require=SPARSE, where=where)
    assert t["score"].to_list() == scores


def test_where_accepts_conditions() -> None:
    from scalelaw.data import Condition

    t = load_table(FILTERED, require=SPARSE, where=[Condition("N", "<=", "7e9"), "task=QA"])
    assert t["score"].to_list() == [0.8]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["N>1e11"], "no row has params > 1e11 (values: 1e+09, 7e+09, 7e+10)"),
        (
            ["phase=decode", "task=NIAH"],
            "no row has task = 'NIAH' (values where phase=decode: QA)",
        ),
        (["task!=NIAH", "task!=QA"], "no row has task != 'QA'"),
        (["task<3"], "cannot filter task<3: column 'task' is not numeric"),
        (["model=x"], "cannot filter on 'model': no such column; columns are"),
    ],
)
def test_where_errors_name_the_condition(where: list[str], message: str) -> None:
    with pytest.raises(DataError) as info:
        load_table(FILTERED, require=SPARSE, where=where)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


REPEATED = (
    "params,seq_len,compression,task,correct,samples,seed\n"
    "1e9,100,1,a,8,10,0\n"
    "1e9,100,1,a,6,10,1\n"
    "1e9,100,1,a,7,20,2\n"
    "2e9,100,1,a,5,10,0\n"
)


def test_conflicting_unmarked_duplicates_say_how_to_mark_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path, REPEATED), require=SPARSE)
    text = str(info.value)
    assert "row 2, column 'score': configuration repeats row 1 with a different value" in text
    assert "mark replicates with a 'run' column or --replicates" in text
    assert "pool them with --aggregate mean" in text


def test_run_column_marks_replicates(tmp_path: Path) -> None:
    marked = REPEATED.replace("seed", "run")
    t = load_table(write(tmp_path, marked), require=SPARSE)
    assert t.height == 4 and t["score"].to_list() == [0.8, 0.6, 0.35, 0.5]
    # The same run twice with different values is still a conflict.
    clash = marked.replace("1e9,100,1,a,6,10,1", "1e9,100,1,a,6,10,0")
    with pytest.raises(DataError, match="row 2, column 'score': configuration repeats row 1"):
        load_table(write(tmp_path, clash), require=SPARSE)


def test_replicates_keeps_every_row(tmp_path: Path) -> None:
    t = load_table(write(tmp_path, REPEATED), require=SPARSE, replicates=True)
    assert t["score"].to_list() == [0.8, 0.6, 0.35, 0.5]


def test_aggregate_mean_pools_counts(tmp_path: Path) -> None:
    t = load_table(write(tmp_path, REPEATED), require=SPARSE, aggregate="mean")
    assert t["params"].to_list() == [1e9, 2e9]
    assert t["correct"].to_list() == [21.0, 5.0]
    assert t["samples"].to_list() == [40.0, 10.0]
    assert t["score"].to_list() == pytest.approx([21 / 40, 0.5])
    assert t["replicates"].to_list() == [3, 1]
    assert "seed" not in t.columns  # varies within a group
    assert t["task"].to_list() == ["a", "a"]


def test_aggregate_mean_pools_scores_and_variances() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    draws = [rng.random(n) for n in (10, 10, 20)]
    frame = pl.DataFrame(
        {
            "params": [1e9, 1e9, 1e9, 2e9],
            "seq_len": [100] * 4,
            "compression": [1.0] * 4,
            "score": [float(d.mean()) for d in draws] + [0.5],
            "samples": [10, 10, 20, 5],
            "score_var": [float(d.var(ddof=1)) for d in draws] + [0.25],
            "lr": [1e-3, 1e-3, 1e-3, 1e-3],
        }
    )
    t = load_table(frame, require=SPARSE, aggregate="mean")
    pooled = np.concatenate(draws)
    assert t["score"].to_list() == pytest.approx([pooled.mean(), 0.5])
    assert t["score_var"].to_list() == pytest.approx([pooled.var(ddof=1), 0.25])
    assert t["samples"].to_list() == [40.0, 5.0]
    assert t["lr"].to_list() == [1e-3, 1e-3]  # constant within every group, so kept
    # Without sample sizes the score is the plain mean and a variance cannot be combined.
    plain = load_table(frame.drop("samples"), require=SPARSE, aggregate="mean")
    assert plain["score"].to_list() == pytest.approx([np.mean([d.mean() for d in draws]), 0.5])
    assert "score_var" not in plain.columns


def test_pooling_a_pooled_table_weights_by_its_counts() -> None:
    pooled = pl.DataFrame(
        {
            "params": [1e9, 1e9],
            "seq_len": [100, 100],
            "compression": [1.0, 1.0],
            "score": [0.6, 0.3],
            "replicates": [3, 1],
        }
    )
    t = load_table(pooled, require=SPARSE, aggregate="mean")
    assert t["score"].to_list() == pytest.approx([(3 * 0.6 + 0.3) / 4])
    assert t["replicates"].to_list() == [4]


def test_aggregate_options_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, REPEATED)
    with pytest.raises(DataError, match="unknown aggregate 'median'"):
        load_table(path, require=SPARSE, aggregate="median")
    with pytest.raises(DataError, match="give one of the two"):
        load_table(path, require=SPARSE, aggregate="mean", replicates=True)
