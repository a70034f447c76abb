"""`scalelaw kernels list` and `scalelaw kernels check`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scalelaw.cli import app

# the kernel tests' own guard, which this file had from tests/kernels/conftest.py
pytest.importorskip("torch")

runner = CliRunner()


def test_list_json_has_every_method_with_knobs():
    res = runner.invoke(app, ["kernels", "list", "--json"])
    assert res.exit_code == 0, res.output
    info = {m["method"]: m for m in json.loads(res.stdout)}
    assert set(info) == {
        "dense",
        "block-sparse",
        "vertical-slash",
        "flexprefill",
        "quest",
        "snapkv",
        "ada-snapkv",
    }
    assert info["dense"]["phases"] == ["prefill", "decode"]
    assert info["quest"]["knobs"] == {"page_size": 16}
    assert set(info["snapkv"]["knob_help"]) == set(info["snapkv"]["knobs"])
    # our default and the study's value side by side, and the reachable C at --seq-len
    assert info["flexprefill"]["knobs"]["alpha"] is None
    assert info["flexprefill"]["study"]["alpha"] == 0.65
    assert info["quest"]["seq_len"] == 16384 and info["quest"]["reachable"] == [1.0, 1024.0]
    # the study ran block-sparse and flexprefill at 3 where the others ran 3.33
    assert info["block-sparse"]["study_levels"] == [20, 15, 10, 7.5, 5, 3, 2]
    assert info["flexprefill"]["study_levels"] == info["block-sparse"]["study_levels"]
    assert 3.33 in info["vertical-slash"]["study_levels"] and info["dense"]["study_levels"] == []


def test_list_format_json_gives_every_knobs_default_study_value_and_help():
    from scalelaw.kernels.specs import SPECS

    res = runner.invoke(app, ["kernels", "list", "--format", "json", "--seq-len", "4096"])
    assert res.exit_code == 0, res.output
    info = {m["method"]: m for m in json.loads(res.stdout)}
    assert set(info) == set(SPECS)
    for name, spec in SPECS.items():
        assert info[name]["phases"] == list(spec.phases)
        knobs = {k["name"]: k for k in info[name]["knob_specs"]}
        assert list(knobs) == [k.name for k in spec.knobs]
        for knob in spec.knobs:
            row = knobs[knob.name]
            assert (row["default"], row["study"], row["help"]) == (
                knob.default,
                knob.study,
                knob.meaning,
            )
    alpha = {k["name"]: k for k in info["flexprefill"]["knob_specs"]}["alpha"]
    assert alpha == {
        "name": "alpha",
        "default": None,
        "study": 0.65,
        "help": alpha["help"],
        "type": "float",
        "low": 0,
        "high": 1,
        "optional": True,
    }
    assert info["quest"]["reachable"] == [1.0, 256.0]
    # the former --json prints the same
    old = runner.invoke(app, ["kernels", "list", "--json", "--seq-len", "4096"])
    assert json.loads(old.stdout) == json.loads(res.stdout)
    bad = runner.invoke(app, ["kernels", "list", "--format", "yaml"])
    assert bad.exit_code == 2


def test_list_table_shows_study_values_and_ranges():
    res = runner.invoke(app, ["kernels", "list", "--seq-len", "4096"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "alpha=from-C" in res.output and "(0.65)" in res.output
    assert "budget_rule=study" in res.output and "budget_length=prompt-length" in res.output
    assert "1-256 at L=4096" in res.output
    assert "levels: 20, 15, 10, 7.5, 5, 3, 2" in res.output  # block-sparse's, unwrapped at 200
    bad = runner.invoke(app, ["kernels", "list", "--seq-len", "0"])
    assert bad.exit_code == 2 and "--seq-len must be >= 1" in bad.output


def test_list_phase_filter_and_bad_phase():
    res = runner.invoke(app, ["kernels", "list", "--phase", "decode", "--json"])
    assert [m["method"] for m in json.loads(res.stdout)] == [
        "dense",
        "quest",
        "snapkv",
        "ada-snapkv",
    ]
    bad = runner.invoke(app, ["kernels", "list", "--phase", "train"])
    assert bad.exit_code == 2
    assert "phase must be one of" in bad.output


def test_check_matches_dense_at_c1():
    res = runner.invoke(
        app,
        [
            "kernels",
            "check",
            "--length",
            "2048",
            "--compression",
            "1,2",
            "--budget-rule",
            "exact",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 2 * 6
    for r in rows:
        if r["compression"] == 1:
            assert r["max_abs_diff_vs_dense"] < 1e-4
        else:
            assert r["max_abs_diff_vs_dense"] > 1e-3  # sparse attention really differs
            assert r["reached"], r["note"]


def test_check_study_budgets_report_the_c_they_achieve():
    res = runner.invoke(
        app, ["kernels", "check", "--length", "1024", "--compression", "3", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    rows = {r["method"]: r for r in json.loads(res.stdout)}
    vs = rows["vertical-slash"]
    assert vs["reached"] or "study's budget for level C=3" in vs["note"]
    bad = runner.invoke(app, ["kernels", "check", "--budget-rule", "loose"])
    assert bad.exit_code == 2 and "--budget-rule" in bad.output


def test_check_bad_arguments():
    res = runner.invoke(app, ["kernels", "check", "--compression", "1,x"])
    assert res.exit_code == 2 and "--compression" in res.output
    res = runner.invoke(app, ["kernels", "check", "--compression", "0.5", "--length", "64"])
    assert res.exit_code == 2 and "compression must be" in res.output
    # a length whose dense score matrix cannot fit is refused before anything is allocated
    res = runner.invoke(app, ["kernels", "check", "--length", "1000000000000"])
    assert res.exit_code == 2 and "--length 1000000000000: the dense reference needs" in res.output


def test_command_module_does_not_import_torch():
    code = "import sys, scalelaw.commands.kernels; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args", [["kernels", "--help"], ["kernels", "check", "--help"]])
def test_help_has_example(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0
    if "check" in args:
        assert "Example: scalelaw kernels check" in res.output
