"""Token budgets and combined prefill+decode runs through a sweep of the tiny random model."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from scalelaw.errors import ScalelawError
from scalelaw.kernels import get_method
from scalelaw.measure.generate import greedy
from scalelaw.measure.models import load_model
from scalelaw.measure.sparse import combined_attention
from scalelaw.measure.sweep import Summary, run_sweep

GRID = """
name = "budgets-combined"
seed = 0
samples = 1
max_new_tokens = 2
lengths = [256, 384]
compression = [1]
budgets = [64, 128, 512]
models = ["tiny-llama"]
# quest at C = 4 and 256 tokens reads its 8 pages plus the newest page: 3.56, 11% off the label,
# which the default tolerance of 10% would make a failed run
compression_tolerance = 0.15

[methods]
block-sparse = { block_size = 8, local_blocks = 1 }
quest = { page_size = 8 }

[tasks]
niah-multikey = { needles = 1, queries = 1 }

[[combine]]
prefill = { method = "block-sparse", compression = 4, block_size = 8, local_blocks = 1 }
decode = { method = "quest", compression = [1, 4], page_size = 8 }
"""

Swept = tuple[Path, list[str], Summary]
TOLERANCE = 0.15  # achieved / requested at these short lengths: the grid's compression_tolerance


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    folder = tmp_path_factory.mktemp("budgets")
    grid = folder / "grid.toml"
    grid.write_text(GRID)
    log: list[str] = []
    summary = run_sweep(grid, folder / "r.parquet", quiet=True, log=log.append)
    return folder / "r.parquet", log, summary


#: The count a label is judged on: block pairs for block-sparse (as the study counts it), tokens
#: for the others.
JUDGED = (
    pl.when(pl.col("method").str.starts_with("block-sparse"))
    .then(pl.col("study_compression"))
    .otherwise(pl.col("achieved_compression"))
)


def test_budgets_become_ratios_and_are_recorded(swept: Swept) -> None:
    out, log, summary = swept
    table = pl.read_parquet(out)
    assert not summary.failed
    single = table.filter(pl.col("phase") != "prefill+decode")
    by_budget = single.filter(pl.col("budget").is_not_null())
    # 2 methods x (64, 128 at 256 and at 384); 512 is >= both lengths
    assert by_budget.height == 8
    assert (by_budget["compression"] == by_budget["seq_len"] / by_budget["budget"]).all()
    assert set(single.filter(pl.col("budget").is_null())["compression"]) == {1.0}
    ratio = by_budget.select(JUDGED / pl.col("compression")).to_series()
    assert ratio.min() > 1 - TOLERANCE and ratio.max() < 1 + TOLERANCE
    assert log == [
        f"{out.parent / 'grid.toml'}: budget 512 keeps every token at L=256, 384 (C <= 1); "
        "skipped there, the dense point is compression = 1"
    ]
    # each phase's own ratio, 1 for the phase a method leaves dense
    prefill = single.filter(pl.col("phase") == "prefill")
    decode = single.filter(pl.col("phase") == "decode")
    assert (prefill["prefill_compression"] == prefill["compression"]).all()
    assert (
        set(prefill["decode_compression"]) == set(prefill["achieved_decode_compression"]) == {1.0}
    )
    assert (decode["decode_compression"] == decode["compression"]).all()
    assert (decode["achieved_decode_compression"] == decode["achieved_compression"]).all()
    assert set(decode["prefill_compression"]) == {1.0}


def test_combined_rows_carry_both_ratios(swept: Swept) -> None:
    out, _, summary = swept
    table = pl.read_parquet(out)
    combined = table.filter(pl.col("phase") == "prefill+decode")
    assert combined.height == 4  # 2 lengths x decode C = 1 and 4
    assert set(combined["method"]) == {"block-sparse+quest"}
    assert combined["budget"].null_count() == combined.height
    assert (combined["compression"] == combined["prefill_compression"]).all()
    assert set(combined["prefill_compression"]) == {4.0}
    assert set(combined["decode_compression"]) == {1.0, 4.0}
    assert (combined["achieved_compression"] == combined["achieved_prefill_compression"]).all()
    # the prefill half is block-sparse, judged in block pairs (the row's study_compression)
    assert (combined["study_compression"] <= combined["achieved_prefill_compression"]).all()
    for phase, judged in (("prefill", "study_compression"), ("decode", None)):
        requested = combined[f"{phase}_compression"]
        ratio = combined[judged or f"achieved_{phase}_compression"] / requested
        assert ratio.min() > 1 - TOLERANCE and ratio.max() < 1 + TOLERANCE, phase
    assert combined.filter(pl.col("decode_compression") == 1)[
        "achieved_decode_compression"
    ].to_list() == [1.0, 1.0]
    knobs = combined["method_params"][0]
    assert '"prefill": {"block_size": 8' in knobs and '"decode": {"page_size": 8}' in knobs
    # decode C = 1 is block-sparse alone: it shares the run of block-sparse at C = 4, which the
    # budget 64 gives at 256 tokens (and no budget at 384)
    shared = table.filter((pl.col("seq_len") == 256) & (pl.col("prefill_compression") == 4))
    assert shared.filter(pl.col("decode_compression") == 1)["compute_id"].n_unique() == 1
    # 16 configurations from 13 runs: C = 1 of both methods is one dense run per length, and
    # decode C = 1 at 256 tokens is the budget-64 block-sparse run
    assert summary.configurations == 16
    assert summary.runs == 13


def test_the_tables_fit_by_law(swept: Swept) -> None:
    from scalelaw.data import load_table
    from scalelaw.fits import FitOptions, fit, get_law

    out, _, _ = swept
    both = ["params", "seq_len", "prefill_compression", "decode_compression"]
    assert load_table(out, require=both).height == 16
    with pytest.raises(ScalelawError, match="fit them with sparse-frontier-pd"):
        fit(str(out), get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=0))


def test_rerun_repeats_nothing(swept: Swept) -> None:
    out, _, _ = swept
    again = run_sweep(out.parent / "grid.toml", out, quiet=True, log=lambda _: None)
    assert again.already_done == 16 and again.measured == 0 and again.runs == 0


def test_combined_routing_runs_each_method_in_its_phase() -> None:
    tiny = load_model("tiny-llama", dtype="float32", device="cpu", seed=0)
    ids = torch.randint(0, 500, (300,), generator=torch.Generator().manual_seed(3)).tolist()
    plain = greedy(tiny.model, ids, 4, frozenset())
    # the dense method of each phase goes through both paths and must change nothing
    prefill, decode = get_method("dense", phase="prefill"), get_method("dense", phase="decode")
    with combined_attention(prefill, 2.0, decode, 2.0) as route:
        routed = greedy(tiny.model, ids, 4, frozenset())
    assert routed.tokens == plain.tokens
    assert route.prefill is not None and route.decode is not None
    layers = tiny.model.config.num_hidden_layers
    assert len(route.prefill.achieved) == layers
    assert sorted(route.decode.states) == list(range(layers))
    assert len(route.decode.achieved) == (len(routed.tokens) - 1) * layers
    wrong = combined_attention(get_method("quest"), 4.0, None, 1.0)
    with pytest.raises(ValueError, match="the prefill slot got a decode method"), wrong:
        pass
