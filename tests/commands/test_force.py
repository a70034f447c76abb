"""No command overwrites an existing --out without --force: it keeps the file, says so in one
line naming it and --force, and exits 2 before any work (`simulate`'s rule, shared through
`scalelaw.commands.options.new_output`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalelaw.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]

#: Each command with an --out that exists. The other arguments name nothing that exists: the
#: refusal comes before anything is read.
REFUSED = {
    "plan": ["plan", "fit.nc", "--candidates", "grid.toml", "--target", "L=128K,budget=4e16",
             "--gpu-hours", "1", "--out", "next.toml"],
    "frontier": ["frontier", "sparse-frontier-v1:prefill", "--sizes", "7B,14B", "--out",
                 "frontier.png"],
    "tolerance": ["tolerance", "results.csv", "--out", "tolerance.png"],
    "check": ["check", "sim.csv", "--out", "check.png"],
    "import sparse-frontier": ["import", "sparse-frontier", "study", "--out", "study.parquet"],
    "import kvpress": ["import", "kvpress", "kvpress", "--out", "kvpress.parquet"],
}  # fmt: skip


@pytest.mark.parametrize("args", REFUSED.values(), ids=REFUSED.keys())
def test_an_existing_out_is_kept_without_force(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / args[args.index("--out") + 1]
    out.write_text("keep me")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert out.name in lines[0] and "exists" in lines[0] and "--force" in lines[0]
    assert out.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_force_overwrites_the_figure(tmp_path: Path) -> None:
    png = tmp_path / "frontier.png"
    png.write_text("old")
    args = ["frontier", "sparse-frontier-v1:prefill", "--sizes", "7B,14B", "--out", str(png)]
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(b"\x89PNG")


def test_force_overwrites_an_imported_table(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "importers" / "sample_trees.py"), "samples"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    out = tmp_path / "kvpress.parquet"
    args = ["import", "kvpress", str(tmp_path / "samples" / "kvpress"), "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert runner.invoke(app, args).exit_code == 2
    again = runner.invoke(app, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert "189 rows" in again.stdout


@pytest.mark.parametrize("command", [["plan"], ["frontier"], ["tolerance"], ["check"],
                                     ["import", "kvpress"], ["import", "sparse-frontier"]])  # fmt: skip
def test_force_is_in_the_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert "--force" in result.stdout
