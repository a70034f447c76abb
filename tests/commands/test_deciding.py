"""The `cost`, `architectures`, `frontier` and `tolerance` commands end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.frontier import get_architecture, prefill_flops

runner = CliRunner()


def _run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.output


def test_cost_json_matches_api() -> None:
    out = _run("cost", "--family", "qwen2.5", "--size", "7B", "--seq-len", "128K", "--compression", "10",
               "--phase", "prefill", "--format", "json")  # fmt: skip
    doc = json.loads(out)
    b = prefill_flops(get_architecture("qwen2.5", "7B"), 131072, 10.0)
    assert doc["summary"]["speedup_bound"] == pytest.approx(b.speedup_bound)
    total = next(p for p in doc["parts"] if p["part"] == "total")
    assert total["sparse"] == pytest.approx(b.total)


def test_cost_table_and_errors() -> None:
    out = _run("cost", "--family", "gemma3", "--size", "12B", "--seq-len", "64K", "--phase", "decode",
               "--batch", "8", "--compression", "5", "--method", "quest")  # fmt: skip
    assert "kv_cache" in out and "indexing included" in out
    err = _run("cost", "--family", "qwen2.5", "--size", "9B", code=2)
    assert "no size '9B'" in err
    err = _run("cost", "--seq-len", "12x", code=2)
    assert "--seq-len: '12x' is not a number" in err


def test_architectures_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9,
                               "num_key_value_heads": 3, "intermediate_size": 1536,
                               "vocab_size": 49152, "tie_word_embeddings": True}))  # fmt: skip
    doc = json.loads(_run("architectures", "--config", str(cfg), "--format", "json"))
    assert doc[0]["params"] == get_architecture("smollm2", "135M").params()


@pytest.mark.parametrize(("phase", "batch"), [("prefill", "1"), ("decode", "8")])
def test_frontier_prints_critical_length(tmp_path: Path, phase: str, batch: str) -> None:
    png = tmp_path / "frontier.png"
    args = ("frontier", f"sparse-frontier-v1:{phase}", "--sizes", "7B,14B,32B,72B", "--phase", phase,
            "--batch", batch, "--seq-len", "128K")  # fmt: skip
    doc = json.loads(_run(*args, "--format", "json"))
    crit = doc["critical_length"]
    adv = np.array([r["advantage_mean"] for r in crit["by_length"]])
    lengths = np.array([r["seq_len"] for r in crit["by_length"]])
    # the printed length sits where the advantage of large-sparse turns positive
    assert adv[lengths < crit["median"]].max() <= 0 < adv[lengths > crit["median"]].min()
    table = _run(*args, "--out", str(png))
    assert "critical length" in table and png.stat().st_size > 20_000
    rows = pl.DataFrame(doc["budgets"])
    assert rows["p_sparse_better"].drop_nulls().is_in([0.0, 1.0]).all()  # a card: one draw
    configs = pl.read_csv(io.StringIO(_run(*args, "--format", "csv", "--show", "configs")))
    assert configs.height == 4 * 11
    dense = configs.filter(~pl.col("sparse")).sort("cost")
    # dense frontier: bigger dense models cost more and score more under this card
    assert dense["size"].to_list() == ["7B", "14B", "32B", "72B"]
    assert dense["dense_frontier"].all() and dense["mean"].is_sorted()


def test_frontier_errors() -> None:
    assert "no-such-law" in _run("frontier", "no-such-law", code=2)
    err = _run("frontier", "sparse-frontier-v1:prefill", "--task", "Poetry", code=2)
    assert "task 'Poetry' is not a task" in err
    err = _run("frontier", "sparse-frontier-v1:prefill", "--cost", "latency", code=2)
    assert "needs --timings" in err


def test_frontier_latency(tmp_path: Path) -> None:
    # columns as benchmarks/attention.py writes them; a kernel 3x faster than dense at C=10
    rows = []
    shape = {"batch": 1, "heads": 28, "kv_heads": 4, "head_dim": 128, "device": "H100"}
    for length in (16384, 32768, 65536, 131072):
        dense = 2.0 * (length / 16384) ** 2
        rows += [
            {"method": "dense", "phase": "prefill", "seq_len": length, "compression": 1, "ms": dense, **shape},
            {"method": "block-sparse", "phase": "prefill", "seq_len": length, "compression": 2, "ms": dense / 1.8, **shape},
            {"method": "block-sparse", "phase": "prefill", "seq_len": length, "compression": 10, "ms": dense / 3, **shape},
            {"method": "quest", "phase": "decode", "seq_len": length, "compression": 10, "ms": 0.1, **shape},
        ]  # fmt: skip
    # a run that ran out of memory has no time and is skipped
    rows.append({"method": "block-sparse", "phase": "prefill", "seq_len": 262144, "compression": 20, "ms": None, **shape})  # fmt: skip
    csv = tmp_path / "timings.csv"
    pl.DataFrame(rows).write_csv(csv)
    args = ("frontier", "sparse-frontier-v1:prefill", "--sizes", "7B,72B", "--cost", "latency",
            "--timings", str(csv), "--method", "block-sparse", "--compressions", "1,2,10",
            "--seq-len", "64K", "--format", "json")  # fmt: skip
    doc = json.loads(_run(*args))
    cfg = pl.DataFrame(doc["configs"])
    seven = cfg.filter(pl.col("size") == "7B").sort("compression")["cost"].to_numpy()
    # 28 layers x (dense 32 ms, sparse 32 / 3 ms) plus the same non-attention time
    assert seven[0] - seven[2] == pytest.approx(28 * 32 * (1 - 1 / 3), rel=1e-6)
    # the 72B model has 64 heads: its attention time scales by 64 / 28
    big = cfg.filter(pl.col("size") == "72B").sort("compression")["cost"].to_numpy()
    assert big[0] - big[2] == pytest.approx(80 * 32 * (64 / 28) * (1 - 1 / 3), rel=1e-6)
    lengths = [r["seq_len"] for r in doc["critical_length"]["by_length"]]
    assert lengths == [16384, 32768, 65536, 131072]
    err = _run(*args[:-2], "--seq-len", "256K", code=2)
    assert "outside the measured range" in err
    err = _run(*args[:-2], "--method", "snapkv", code=2)
    assert "no timings for method 'snapkv' (prefill)" in err


def _tolerance_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for model, params in (("Qwen2.5-7B", 7.6e9), ("Qwen2.5-72B", 72.7e9)):
        for phase, method in (("prefill", "vertical-slash"), ("decode", "quest")):
            for task in ("niah", "vt", "qa"):
                for c in (1.0, 2.0, 5.0, 10.0, 20.0):
                    p = 0.9 - (0.4 if (model.endswith("7B") and c >= 5) else 0.0)
                    rows.append({"model": model, "params": params, "seq_len": 16384, "compression": c,
                                 "task": task, "phase": phase, "method": "dense" if c == 1 else method,
                                 "correct": int(rng.binomial(3000, p)), "samples": 3000})  # fmt: skip
    out = path / "acc.csv"
    pl.DataFrame(rows).write_csv(out)
    return out


def test_tolerance_command(tmp_path: Path) -> None:
    csv = _tolerance_csv(tmp_path)
    png = tmp_path / "tolerance.png"
    doc = json.loads(_run("tolerance", str(csv), "--format", "json", "--out", str(png)))
    got = {(r["phase"], r["model"]): (r["min"], r["max"]) for r in doc}
    assert got[("prefill", "Qwen2.5-7B")] == (2.0, 2.0)
    assert got[("decode", "Qwen2.5-72B")] == (20.0, 20.0)
    assert png.stat().st_size > 20_000
    detail = json.loads(
        _run("tolerance", str(csv), "--detail", "--format", "json", "--where", "phase=decode")
    )
    assert len(detail) == 6 and {r["method"] for r in detail} == {"quest"}
    err = _run("tolerance", str(tmp_path / "missing.csv"), code=2)
    assert "file not found" in err


def test_frontier_prints_what_decide_returns() -> None:
    from scalelaw.fits import get_card
    from scalelaw.frontier import FlopsCost, decide

    decision = decide(
        get_card("sparse-frontier-v1:prefill"),
        [get_architecture("qwen2.5", s) for s in ("7B", "14B", "32B", "72B")],
        FlopsCost(),
        seq_len=131072,
    )
    out = runner.invoke(
        app,
        ["frontier", "sparse-frontier-v1:prefill", "--sizes", "7B,14B,32B,72B", "--seq-len",
         "128K", "--format", "json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)  # the warnings (128K was held out of the card) on stderr
    assert printed["budgets"] == decision.to_dict()["budgets"]
    assert printed["warnings"] == decision.warnings
    assert printed["warnings"][0].startswith("L=128K is outside the lengths the fit saw")
    assert printed["fitted_spans"]["L"] == [16384.0, 65536.0]
    assert decision.critical is not None
    assert printed["critical_length"]["median"] == pytest.approx(decision.critical.median)
    # the published card's critical length (docs/frontier.md)
    assert 35_000 < decision.critical.median < 45_000


def test_frontier_marks_sizes_and_lengths_outside_the_fitted_ones() -> None:
    result = runner.invoke(
        app, ["frontier", "sparse-frontier-v1:prefill", "--sizes", "0.5B,7B,72B", "--budgets", "4",
              "--seq-len", "64K", "--lengths", "32K,128K"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "model size outside those the fit saw (7.62B to 72.7B): 0.5B;" in result.stderr
    assert "0.5B* C=1" in result.stdout and "7B* " not in result.stdout
    assert "* a model size outside those the fit saw: extrapolated" in result.stdout
    # the card was fitted on 16K-64K: the advantage at 128K is extrapolated, at 32K not
    assert "128K*" in result.stdout and "32K*" not in result.stdout
    assert "* a length outside those the fit saw: extrapolated" in result.stdout
    inside = _run("frontier", "sparse-frontier-v1:prefill", "--sizes", "7B,72B", "--budgets", "4",
                  "--seq-len", "64K", "--lengths", "32K,64K")  # fmt: skip
    assert "*" not in inside
