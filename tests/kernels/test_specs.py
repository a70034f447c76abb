"""The method spec: one source for knobs, the study's values and reachable C, read by the
kernels; and the study's behaviours that the spec pins (flexprefill, quest)."""

from __future__ import annotations

import math
import random

import pytest

torch = pytest.importorskip("torch")

from scalelaw import study  # noqa: E402
from scalelaw.frontier.cost import DECODE_METHODS, PREFILL_METHODS  # noqa: E402
from scalelaw.kernels import (  # noqa: E402
    get_method,
    list_methods,
    specs,
)
from scalelaw.kernels.budgets import block_compression, block_pairs_compression  # noqa: E402
from scalelaw.kernels.tiles import lines_cells, lines_index  # noqa: E402


def test_kernels_and_cost_model_read_the_spec():
    assert list_methods() == list(specs.SPECS)
    for name, spec in specs.SPECS.items():
        m = get_method(name)
        assert m.knobs() == spec.defaults()
        assert (m.name, m.phases, m.budget_rule) == (name, spec.phases, spec.budget_rule)
        assert spec.knob_help() == m.KNOB_HELP
    assert tuple(specs.method_names("prefill")) == PREFILL_METHODS
    assert tuple(specs.method_names("decode")) == DECODE_METHODS
    assert study.STUDY_COMPRESSIONS_TEXT == "1,1.43,1.67,2,2.5,3.33,5,7.5,10,15,20"


def test_defaults_are_the_studys_settings():
    fp = specs.get_spec("flexprefill")
    assert fp.defaults() == {
        "budget_rule": "study",  # the study's (alpha, min_budget) per length and level
        "budget_length": None,  # the prompt's length; `measure` sets the grid's
        "window": 512,
        "alpha": None,  # solved from C; fixing it is a knob
        "min_budget": 512,
        "tau": 0.0,  # query-aware block mode off
        "block_size": 64,
        "sink_columns": 4,
        "local_diagonals": 64,
    }
    assert fp.study_values()["alpha"] == 0.65
    for spec in specs.SPECS.values():
        differ = {k for k, v in spec.defaults().items() if spec.study_values()[k] != v}
        # budget_length's study value is "the grid's length", which `measure` fills in per run
        assert differ <= {"alpha", "budget_length"}, (spec.name, differ)


def test_cover_count_is_the_studys_rule():
    from scalelaw.kernels.flexprefill import cover_count, cumulative_mass

    mass = cumulative_mass(torch.tensor([[[0.1, 0.5, 0.1, 0.3]]]))
    # lines whose cumulative mass stays within alpha, plus the one that crosses it
    assert cover_count(mass, 0.65).item() == 2
    assert cover_count(mass, 0.85).item() == 3
    assert cover_count(mass, 0.0).item() == 1
    assert cover_count(mass, 1.0).item() == 4


def test_flexprefill_counts_columns_and_diagonals_separately(qkv):
    q, k, v = qkv(h=2, hkv=1, length=256, d=16, seed=4)
    direction = torch.zeros(16)
    direction[0] = 1.0
    q[:, :, :] += 4 * direction  # every query looks at column 50: column mass is concentrated
    k[:, :, 50] += 4 * direction
    m = get_method(
        "flexprefill", window=32, alpha=0.6, min_budget=0, sink_columns=1, local_diagonals=1,
        block_size=8,
    )  # fmt: skip
    res = m.prefill(q, k, v, compression=2.0)
    assert res.stats["alpha"] == 0.6 and res.stats["min_budget"] == 0
    assert res.stats["mean_columns"] < res.stats["mean_diagonals"]
    # a fixed alpha keeps min_budget whatever C asks
    floor = m.prefill(q, k, v, compression=8.0, min_budget=40).stats
    assert floor["min_budget"] == 40 and floor["mean_columns"] >= 40


def test_reachable_ranges_are_what_the_kernels_achieve(qkv):
    q, k, v = qkv(h=4, hkv=2, length=200, d=16)
    # block-sparse: the always-kept blocks alone; a block as long as the prompt is dense only
    c_max = specs.reachable("block-sparse", {"block_size": 8}, 200)[1]
    # in block pairs (25 blocks of 8), the count its labels are judged on
    assert c_max == pytest.approx(block_pairs_compression(25, 3))
    res = get_method("block-sparse", block_size=8).prefill(q, k, v, compression=c_max)
    assert res.study_compression == pytest.approx(c_max) and res.reached
    assert res.achieved_compression == pytest.approx(block_compression(200, 8, 3))
    assert specs.reachable("block-sparse", {"block_size": 256}, 200) == (1.0, 1.0)
    # quest: the newest page alone
    assert specs.reachable("quest", {}, 200) == (1.0, 200 / 8)
    state = get_method("quest").prepare_cache(q, k, v, compression=500.0)
    assert state.achieved_compression == pytest.approx(25.0)
    # snapkv: sink and recent tokens alone
    assert specs.reachable("snapkv", {}, 200) == (1.0, 200 / 132)
    # vertical-slash: an upper bound the data cannot beat
    kn = {"window": 32, "local_diagonals": 4, "block_size": 8, "budget_rule": "exact"}
    bound = specs.reachable("vertical-slash", kn, 200)[1]
    res = get_method("vertical-slash", **kn).prefill(q, k, v, compression=100.0)
    assert 1 < res.achieved_compression <= bound + 1e-9
    assert "not reachable" in res.note
    assert specs.unreachable_reason("vertical-slash", kn, 200, 100.0).startswith(
        "vertical-slash cannot reach C=100 at L=200"
    )


def test_quest_reads_its_budget_plus_the_newest_page(qkv):
    from scalelaw.kernels.quest import select_pages

    q, k, v = qkv(h=4, hkv=2, length=256, d=32)
    m = get_method("quest")
    state = m.prepare_cache(q, k, v, compression=4.0)
    pages = select_pages(q[:, :, -1:], state)
    assert pages.shape[-1] == 4 + 1 and (pages[..., -1] == 15).all()
    res = m.decode(q[:, :, -1:], state)
    assert res.achieved_compression == pytest.approx(256 / 80)
    assert res.stats["pages_read"] == 5


def test_quest_far_above_its_range_reads_one_page_not_everything(qkv):
    q, k, v = qkv(h=4, hkv=2, length=64, d=32)
    m = get_method("quest")
    state = m.prepare_cache(q, k, v, compression=200.0)  # once: round(64 / 200) = 0 -> dense
    qs = q[:, :, -1:]
    res = m.decode(qs, state)
    assert res.achieved_compression == pytest.approx(4.0) and "not reachable" in res.note
    g = 2
    want = torch.softmax(
        qs @ k[:, :, 48:].repeat_interleave(g, 1).transpose(-1, -2) / math.sqrt(32), -1
    ) @ v[:, :, 48:].repeat_interleave(g, 1)
    torch.testing.assert_close(res.out, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_vertical_slash_index_is_minferences(minference, seed):
    walk, _ = minference
    rng = random.Random(seed)
    length, bs = rng.choice([(97, 8), (200, 16), (64, 4)])
    heads = 3
    diag_orders, col_orders, n_diag, n_col = [], [], [], []
    for h in range(heads):
        diags = list(range(length))
        if h != 0:  # head 0: diagonals clustered at the main one; others scattered
            rng.shuffle(diags)
        diags.remove(0)
        diag_orders.append([0, *diags])  # the main diagonal is always kept
        cols = list(range(length))
        rng.shuffle(cols)
        col_orders.append(cols)
        n_diag.append(rng.randint(1, length))
        n_col.append(rng.randint(1, length))
    d, c = torch.tensor([diag_orders]), torch.tensor([col_orders])
    nd, nc = torch.tensor([n_diag]), torch.tensor([n_col])
    index = lines_index(c, d, nc, nd, length, bs)
    bound = lines_cells(c, d, nc, nd, length, bs)
    for h in range(heads):
        want = walk(diag_orders[h][: n_diag[h]], col_orders[h][: n_col[h]], length, bs)
        for m, (tiles, single) in enumerate(want):
            assert index.starts[0, h, m, : index.counts[0, h, m]].tolist() == tiles
            assert index.cols[0, h, m, : index.col_counts[0, h, m]].tolist() == single
        cells = sum(bs * bs * len(t) + bs * len(s) for t, s in want)
        assert index.cells()[0, h].item() == cells
        # the count used while searching n: tiles exact, columns at most
        assert cells <= bound[0, h].item() <= cells + bs * n_col[h] * math.ceil(length / bs)


def test_every_diagonal_kept_is_the_causal_tile_list():
    from scalelaw.kernels.tiles import TileIndex

    length, bs = 203, 16
    g = torch.Generator().manual_seed(0)
    d = torch.stack([torch.randperm(length, generator=g) for _ in range(3)])[None]
    c = torch.stack([torch.randperm(length, generator=g) for _ in range(3)])[None]
    n = torch.full((1, 3), length)
    walked = lines_index(c, d, n, n, length, bs)
    causal = TileIndex.causal(1, 3, length, bs, torch.device("cpu"))
    assert torch.equal(walked.counts, causal.counts) and int(walked.col_counts.sum()) == 0
    assert torch.equal(walked.cells(), causal.cells())
    for m in range(walked.n_blocks):
        assert torch.equal(walked.starts[..., m, : m + 1], causal.starts[..., m, : m + 1])


def test_budgets_match_the_studys_table(shared_data):
    import csv

    from scalelaw.kernels.budgets import quest_budget_pages, snapkv_capacity

    with (shared_data / "paper" / "budgets_to_compression.csv").open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    checked = 0
    for r in rows:
        if r["method"] not in ("Quest", "SnapKV/Ada-SnapKV"):
            continue
        # the study's grid is in sparsity levels (0.95, 0.9333, ...): C = 1 / (1 - sparsity)
        length, value = int(r["seq_len"]), int(r["value"])
        c = 1 / (1 - float(r["implied_sparsity"]))
        if r["method"] == "Quest":
            assert quest_budget_pages(length, c, 16) * 16 == value, r
            checked += 1
        else:
            # the table lists sparsities rounded to 4 digits; capacities agree within a token
            assert abs(snapkv_capacity(length, c) - value) <= 1, r
            checked += 1
    assert checked >= 60


def test_shortfall_names_runs_far_below_the_request():
    assert specs.shortfall(10.0, 9.0) is None and specs.shortfall(1.0, 1.0) is None
    assert specs.shortfall(10.0, 4.0) == (
        "achieved C=4 is below 1/2 of the requested C=10"
    )  # fmt: skip
