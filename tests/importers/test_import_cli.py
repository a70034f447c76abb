"""`scalelaw import sparse-frontier` and `scalelaw import kvpress` end to end, then `scalelaw fit`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.data import load_table

runner = CliRunner()


def _run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _one_line_error(*args: str) -> str:
    out = _run(*args, code=2).strip()
    assert len(out.splitlines()) == 1, out
    assert out.startswith("error: ")
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory, sample_trees) -> Path:
    root = tmp_path_factory.mktemp("samples")
    sample_trees.write_study(root / "study" / "results")
    sample_trees.write_kvpress(root / "kvpress")
    return root


@pytest.fixture(scope="module")
def study_table(trees: Path) -> Path:
    out = trees / "study.parquet"
    text = _run("import", "sparse-frontier", str(trees / "study"), "--out", str(out))
    assert text.strip() == (
        f"{out}: 189 result files read, 216 rows, 1 skipped "
        "(1 superseded by a larger sample count in the same folder)"
    )
    return out


def test_study_import_writes_a_fit_ready_table(study_table: Path) -> None:
    table = load_table(study_table, require=["N", "L", "C"])
    assert table.height == 216
    assert sorted(table["method"].unique()) == ["dense", "quest", "vertical-slash"]
    assert sorted(table["task"].unique()) == ["NIAH", "QuALITY", "VT"]
    assert sorted(table["seq_len"].unique()) == [16384, 32768, 65536]
    quest = table.filter(pl.col("method") == "quest")
    assert (quest["compression"] - quest["requested_compression"]).abs().max() < 1e-9


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_fit_on_the_imported_study_table(study_table: Path, phase: str) -> None:
    out = _run("fit", str(study_table), "--law", "sparse-frontier", "--backend", "lsq",
               "--bootstrap", "0", "--where", f"phase={phase}", "--format", "json")  # fmt: skip
    doc = json.loads(out[out.index("{") :])
    est = {p["param"]: p["estimate"] for p in doc["parameters"]}
    # the sample tree was simulated with alpha 1.31, beta -1.15, gamma -1.0 / -0.8
    assert est["alpha"] > 0 and est["beta"] < 0 and est["gamma"] < 0
    assert est["delta[NIAH]"] > 0 > est["delta[VT]"]
    # the optima docs/import.md shows
    shown = {"prefill": (1.311, -1.19, -0.9804), "decode": (1.383, -1.109, -0.7961)}[phase]
    assert (est["alpha"], est["beta"], est["gamma"]) == pytest.approx(shown, abs=2e-3)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_study_output_formats(trees: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"study{suffix}"
    _run(
        "import",
        "sparse-frontier",
        str(trees / "study"),
        "--out",
        str(out),
        "--dense-phase",
        "prefill",
    )
    table = load_table(out, require=["N", "L", "C"])
    assert table.height == 189


def test_kvpress_import_and_fit(trees: Path, tmp_path: Path) -> None:
    out = tmp_path / "kvpress.parquet"
    text = _run("import", "kvpress", str(trees / "kvpress"), "--out", str(out), "--verbose")
    lines = text.strip().splitlines()
    assert lines[-1] == (
        f"{out}: 63 result files read, 189 rows, 2 skipped (1 decoding press (its cache size is "
        "set by target_size; the ratio reached is not recorded); 1 no metrics.json (unfinished run))"
    )
    assert any(line.startswith("skipped ruler__8192__") for line in lines)
    table = load_table(out, require=["N", "L", "C"])
    assert sorted(table["compression"].unique().round(6)) == pytest.approx([1.0, 4 / 3, 2.0, 4.0])
    fit = _run("fit", str(out), "--law", "sparse-frontier", "--backend", "lsq", "--bootstrap", "0",
               "--where", "press!=knorm", "--format", "json")  # fmt: skip
    est = {p["param"]: p["estimate"] for p in json.loads(fit[fit.index("{") :])["parameters"]}
    assert est["alpha"] > 0 and est["beta"] < 0 and est["gamma"] < 0
    assert (est["alpha"], est["beta"], est["gamma"]) == pytest.approx(
        (1.145, -0.8219, -1.282), abs=2e-3
    )  # as docs/import.md shows


def test_errors_are_one_line_naming_file_and_field(tmp_path: Path, study_result, kvpress_run,
                                                   kv_config) -> None:  # fmt: skip
    out = str(tmp_path / "t.parquet")
    bad = study_result(tmp_path / "a", doc='{"accuracy": 0.5,')
    err = _one_line_error("import", "sparse-frontier", str(tmp_path / "a"), "--out", out)
    assert str(bad) in err and "not valid JSON" in err

    bad = study_result(tmp_path / "b", doc={"accuracy": 0.5, "accuracy_variance": 0.1,
                                            "total_samples": 10})  # fmt: skip
    err = _one_line_error("import", "sparse-frontier", str(tmp_path / "b"), "--out", out)
    assert f"{bad}: field 'average_attention_sparsity' is missing" in err

    study_result(tmp_path / "c", model="phi_3b")
    err = _one_line_error("import", "sparse-frontier", str(tmp_path / "c"), "--out", out)
    assert "model 'phi_3b'" in err and "--params phi_3b=N" in err
    ok = str(tmp_path / "ok.parquet")  # `out` stays free: the refusals below are of inputs
    _run("import", "sparse-frontier", str(tmp_path / "c"), "--out", ok, "--params", "phi_3b=3.8e9")
    assert pl.read_parquet(ok)["params"].to_list() == [3.8e9]

    folder = kvpress_run(tmp_path / "d", config="model: !!python/name:os.system\n")
    err = _one_line_error("import", "kvpress", str(tmp_path / "d"), "--out", out)
    assert f"{folder / 'config.yaml'}: line 1, field 'model': " in err

    folder = kvpress_run(tmp_path / "e", config=kv_config(model="mistralai/Mistral-7B-v0.3"))
    err = _one_line_error("import", "kvpress", str(tmp_path / "e"), "--out", out)
    assert f"{folder / 'config.yaml'}: field 'model': 'mistralai/Mistral-7B-v0.3'" in err

    err = _one_line_error(
        "import", "kvpress", str(tmp_path / "e"), "--out", str(tmp_path / "t.xlsx")
    )
    assert "unknown output type '.xlsx'" in err
    err = _one_line_error("import", "sparse-frontier", str(tmp_path / "c"), "--out", out,
                          "--params", "phi_3b=big")  # fmt: skip
    assert "--params phi_3b: 'big' is not a number" in err
    err = _one_line_error("import", "sparse-frontier", str(tmp_path / "c"), "--out", out,
                          "--dense-phase", "never")  # fmt: skip
    assert "unknown dense phase 'never'" in err


@pytest.mark.parametrize("command", ["sparse-frontier", "kvpress"])
def test_help_has_an_example(command: str) -> None:
    assert "Example: scalelaw import " + command in _run("import", command, "--help")
