"""Option values out of range, unknown choices and usage errors: one line naming the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalelaw.cli import app

runner = CliRunner()
CARD = "sparse-frontier-v1:prefill"


def refused(*args: str, naming: tuple[str, ...] = ()) -> str:
    """Run the command line; it must exit 2 with one `error:` line naming each of `naming`."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    for name in naming:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("options") / "t.csv"
    path.write_text("params,seq_len,compression,task,score\n7e9,16384,1,QuALITY,0.8\n")
    return str(path)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--chains", "0"),
        ("--draws", "0"),
        ("--tune", "-1"),
        ("--bootstrap", "-1"),
        ("--target-accept", "2"),
        ("--target-accept", "nan"),
        ("--huber-delta", "-1"),
        ("--prob", "1.5"),
        ("--seed", "-3"),
        ("--format", "xml"),
        ("--backend", "foo"),
        ("--link", "probit"),
        ("--likelihood", "poisson"),
        ("--pooling", "none"),
        ("--transform", "sqrt"),
        ("--aggregate", "median"),
        ("--max-memory", "0"),
        ("--max-memory", "lots"),
        ("--max-memory", "2XB"),
    ],
)
def test_fit_options(table: str, option: str, value: str) -> None:
    refused("fit", table, option, value, naming=(option,))


@pytest.mark.parametrize(
    "args",
    [
        ["predict", CARD, "--at", "N=7e9", "--prob", "0"],
        ["predict", CARD, "--at", "N=7e9", "--samples", "0"],
        ["predict", CARD, "--at", "N=7e9", "--format", "xml"],
        ["simulate", "--samples", "0"],
        ["compare", "t.csv", "--law", "sparse-frontier", "--draws", "0"],
        ["plot", "fit.nc", "--kind", "violin"],
    ],
)
def test_other_fitting_options(args: list[str]) -> None:
    option = next(a for a in reversed(args) if a.startswith("--"))
    refused(*args, naming=(option,))


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["cost", "--bytes", "-2"], "--bytes"),
        (["cost", "--method", "foo"], "--method"),
        (["cost", "--phase", "decode", "--method", "flexprefill"], "--method"),
        (["cost", "--compression", "0.5"], "--compression"),
        (["cost", "--batch", "0"], "--batch"),
        (["cost", "--phase", "middle"], "--phase"),
        (["cost", "--seq-len", "-4K"], "--seq-len"),
        (["frontier", CARD, "--lengths", "-4K"], "--lengths"),
        (["frontier", CARD, "--compressions", "1,0.5"], "--compressions"),
        (["frontier", CARD, "--budgets", "0"], "--budgets"),
        (["frontier", CARD, "--max-draws", "0"], "--max-draws"),
        (["frontier", CARD, "--cost", "dollars"], "--cost"),
        (["frontier", CARD, "--show", "everything"], "--show"),
        (["frontier", CARD, "--throughput", "-1"], "--throughput"),
        (["tolerance", "t.csv", "--alpha", "1"], "--alpha"),
        (["tolerance", "t.csv", "--margin", "-0.1"], "--margin"),
        (["measure", "grid.toml", "--cpus", "0"], "--cpus"),
        (["measure", "grid.toml", "--threads", "-1"], "--threads"),
        (["measure", "grid.toml", "--executor", "slurm"], "--executor"),
        (["plan", CARD, "-c", "g.toml", "-t", "L=128K,budget=mean", "--gpu-hours", "0"],
         "--gpu-hours"),
        (["plan", CARD, "-c", "g.toml", "-t", "L=128K,budget=mean", "--gpu-hours", "1",
          "--sims", "0"], "--sims"),
    ],
)  # fmt: skip
def test_deciding_and_measuring_options(args: list[str], option: str) -> None:
    refused(*args, naming=(option,))


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"num_hidden_layers": 1.5}, "num_hidden_layers"),
        ({"vocab_size": "many"}, "vocab_size"),
        ({"num_key_value_heads": True}, "num_key_value_heads"),
    ],
)
@pytest.mark.parametrize("command", [["architectures"], ["cost"]])
def test_config_json_counts_are_whole_and_positive(
    tmp_path: Path, config: dict[str, object], field: str, command: list[str]
) -> None:
    base = {"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9,
            "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152}  # fmt: skip
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, **config}))
    refused(*command, "--config", str(path), naming=(str(path), field))


@pytest.mark.parametrize(
    ("args", "naming"),
    [
        (["fit"], "Missing argument"),
        (["fit", "t.csv", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
        (["predict", CARD], "--at or --grid"),
    ],
)
def test_usage_errors_are_one_plain_line(args: list[str], naming: str) -> None:
    refused(*args, naming=(naming,))
