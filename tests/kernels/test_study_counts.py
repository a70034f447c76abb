"""C as the reference study counts it, beside our token-exact count: block pairs for
block-sparse, the prompt's length over the budget for the decode methods."""

from __future__ import annotations

import pytest

from scalelaw.kernels import get_method
from scalelaw.kernels.budgets import block_pairs_compression, choose_blocks_per_row


def test_block_sparse_picks_the_studys_top_chunks_at_every_published_point(shared_data):
    import csv

    from scalelaw.kernels.study_budgets import BLOCK_SPARSE_LEVELS

    with (shared_data / "paper" / "budgets_to_compression.csv").open() as f:
        rows = [
            r
            for r in csv.DictReader(line for line in f if not line.startswith("#"))
            if r["method"] == "Block-Sparse"
        ]
    assert len(rows) == 21  # 7 levels at 16K, 32K and 64K, listed sparsest first
    for i, r in enumerate(rows):
        length, top_chunks = int(r["seq_len"]), int(r["value"])
        level = BLOCK_SPARSE_LEVELS[i % 7]
        # sink block + diagonal and sub-diagonal: 3 blocks always kept
        assert choose_blocks_per_row(length, 16, level, 3) == top_chunks, r
        got = block_pairs_compression(length // 16, top_chunks)
        assert got == pytest.approx(float(r["implied_compression"]), abs=5e-4), r


def test_block_pairs_at_the_studys_16k_levels_are_the_level():
    # 16K at 16-token blocks: 1024 block rows; the study's levels are block-pair ratios
    nb = 16384 // 16
    for level in (2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0):
        per_row = choose_blocks_per_row(16384, 16, level, 2)
        assert block_pairs_compression(nb, per_row) == pytest.approx(level, rel=0.01)


def test_block_sparse_reports_block_pairs_and_keeps_the_token_count(qkv):
    q, k, v = qkv(h=4, hkv=2, length=250, d=16)  # 16 blocks, the last one partial
    res = get_method("block-sparse", block_size=16).prefill(q, k, v, compression=4.0)
    per_row = res.stats["blocks_per_row"]
    assert res.study_compression == block_pairs_compression(16, per_row)
    # a kept diagonal block computes only its triangle: the token count is the higher C
    assert res.achieved_compression > res.study_compression
    assert res.study_counted == res.study_compression


def test_vertical_slash_counts_as_the_study_does(qkv):
    q, k, v = qkv(h=4, hkv=2, length=512, d=16)
    res = get_method("vertical-slash", budget_rule="exact", block_size=16).prefill(
        q, k, v, compression=4.0
    )
    assert res.study_compression is None
    assert res.study_counted == res.achieved_compression


@pytest.mark.parametrize("name", ["quest", "snapkv", "ada-snapkv"])
def test_decode_methods_count_the_prompt_over_the_budget(qkv, name):
    q, k, v = qkv(h=4, hkv=2, length=4096, d=16)
    m = get_method(name)
    state = m.prepare_cache(q, k, v, compression=4.0)
    q1 = q[:, :, -1:]
    before = m.decode(q1, state)
    # the study's count: 4096 prompt tokens over a budget of 1024 (quest: 64 pages of 16)
    assert before.study_compression == pytest.approx(4.0, rel=1e-9)
    assert before.achieved_compression == pytest.approx(
        4096 / (1024 + 16) if name == "quest" else 4.0  # quest reads the newest page too
    )
    for _ in range(40):
        state.append(k[:, :, -1:], v[:, :, -1:])
    after = m.decode(q1, state)
    # the study's count stays at the prompt; ours follows the cache as it grows
    assert after.study_compression == before.study_compression
    if name == "quest":  # 64 budget pages plus the newest, of 4136 % 16 = 8 tokens
        assert after.achieved_compression == pytest.approx(4136 / (1024 + 8))
    else:  # generated tokens are always kept
        assert after.achieved_compression == pytest.approx(4136 / (1024 + 40))
