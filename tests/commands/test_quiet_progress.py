"""Progress in one style (`scalelaw.commands.progress.track`) and nothing else on standard error:
plan's stages and the quickstart's fit and figures log lines off a terminal, the libraries'
bars and warnings stay quiet while a model loads, and the sweep's own fallback prints nothing
off a terminal."""

from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from scalelaw import quickstart
from scalelaw.cli import app
from scalelaw.commands import progress
from scalelaw.errors import ScalelawError
from scalelaw.fits import FitOptions

runner = CliRunner()


# --- plan: one tracker per stage ---------------------------------------------------------------
def _plan(fit_file: Path, grid_file: Path, *extra: str) -> list[str]:
    args = ["plan", str(fit_file), "--candidates", str(grid_file), "--target",
            "L=128K,budget=4.5e16", "--sizes", "7B,14B,32B,72B", "--gpu-hours", "2", *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stderr.splitlines()


def test_plan_logs_each_stage_off_a_terminal(
    planning_fit_file: Path, planning_grid_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVERY", 0.05)
    lines = _plan(planning_fit_file, planning_grid_file)
    value = [line for line in lines if "plan: value of each candidate: " in line]
    assert "started" in value[0] and "candidates done" in value[0], lines
    assert re.search(r"finished: (\d+) of \1 candidates done", value[-1]), value
    assert any("plan: choosing the batch: " in line for line in lines), lines


def test_plan_quiet_logs_no_stage(planning_fit_file: Path, planning_grid_file: Path) -> None:
    lines = _plan(planning_fit_file, planning_grid_file, "--quiet")
    assert not [line for line in lines if "plan: " in line], lines


# --- quickstart --------------------------------------------------------------------------------
def test_quickstart_overwrites_only_in_its_own_folder(tmp_path: Path) -> None:
    own = tmp_path / "quickstart-out"
    own.mkdir()
    (own / "fit.nc").write_text("an earlier run's")
    assert [p.name for p in quickstart.check_out(own)] == list(quickstart.OUTPUTS)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fit.png").write_text("the user's")
    with pytest.raises(ScalelawError, match=r"mine/fit.png: exists; .* quickstart-out"):
        quickstart.check_out(mine)
    assert quickstart.check_out(mine, overwrite=True)
    assert quickstart.check_out(tmp_path / "new" / "folder")  # made when it runs
    (tmp_path / "file").write_text("")
    with pytest.raises(ScalelawError, match="is a file"):
        quickstart.check_out(tmp_path / "file")


def test_quickstart_says_what_it_writes_and_tracks_fit_and_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # least squares and two of the figures: the same steps, in seconds
    monkeypatch.setattr(
        quickstart, "FitOptions", lambda seed: FitOptions(backend="lsq", bootstrap=5, seed=seed)
    )
    monkeypatch.setattr(quickstart, "FIGURES", ("posterior", "ppc"))
    monkeypatch.setattr(quickstart, "OUTPUTS", ("sim.csv", "fit.nc", "posterior.png", "ppc.png"))
    caplog.set_level(logging.INFO, logger="scalelaw")
    out = tmp_path / "quickstart-out"
    text = io.StringIO()
    quickstart.run(out, console=Console(file=text, width=200), progress=progress.track)
    first = text.getvalue().splitlines()[0]
    assert str(out) in first and "overwritten" in first
    assert all(name in first for name in quickstart.OUTPUTS), first
    assert sorted(p.name for p in out.iterdir()) == sorted(quickstart.OUTPUTS)
    lines = [r.getMessage() for r in caplog.records if r.name == "scalelaw"]
    assert any(line.startswith("quickstart: fitting: started") for line in lines), lines
    assert "quickstart: drawing figures: finished: 2 of 2 figures done" in " ".join(lines), lines


# --- model loading -----------------------------------------------------------------------------
def test_loading_a_model_keeps_the_libraries_quiet(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from scalelaw.measure.models import quiet_loading

    caplog.set_level(logging.DEBUG, logger="scalelaw.measure.models")
    before = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
        assert gguf_utils.tqdm(range(3)).disable  # the GGUF conversion's own bar
        hf_logging.get_logger("transformers.modeling_utils").warning("Loading weights: noise")
        warnings.warn("`torch_dtype` is deprecated", FutureWarning, stacklevel=1)
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before
    assert capfd.readouterr().err == ""
    (record,) = [r for r in caplog.records if r.name == "scalelaw.measure.models"]
    assert record.levelno == logging.DEBUG and "FutureWarning" in record.getMessage()


# --- the sweep's fallback ----------------------------------------------------------------------
def test_the_sweep_api_prints_no_progress_of_its_own_off_a_terminal(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from scalelaw.measure.sweep import _progress

    with _progress(2, quiet=False) as advance:
        advance(0, "tiny-llama niah-multikey L=256 dense C=1")
        advance(1, "tiny-llama niah-multikey L=256 dense C=1")
        advance(1)
    assert capfd.readouterr().err == ""
