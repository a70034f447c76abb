"""The cost model: hand-computed FLOPs and bytes, and the study's reported shares."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from scalelaw.frontier import Architecture, CostError, decode_bytes, get_architecture, prefill_flops
from scalelaw.frontier.cost import indexing_flops

TINY = Architecture(
    "tiny", "x", layers=2, hidden=8, heads=2, kv_heads=1, head_dim=4, mlp=16, vocab=10
)
QWEN = ("7B", "14B", "32B", "72B")


def test_prefill_tiny_by_hand() -> None:
    b = prefill_flops(TINY, 4, 2.0)
    # per (query, key) pair per layer: 4 h d_h + 3 h = 32 + 6 = 38; 2 layers, L^2 = 16, rho = 1/2
    assert b.parts["attention"] == 38 * 2 * 16 / 2 == 608
    assert b.dense_parts["attention"] == 1216
    # n 2 L d (2 h d_h + 2 h_kv d_h) = 2 * 2 * 4 * 8 * (16 + 8)
    assert b.parts["projections"] == 3072
    # n (6 L d d_mlp + 2 L d_mlp) = 2 * (3072 + 128)
    assert b.parts["mlp"] == 6400
    # 2 L d + 2 L d V = 64 + 640
    assert b.parts["embeddings_logits"] == 704
    assert b.total == 10784 and b.dense_total == 11392
    assert b.speedup == pytest.approx(11392 / 10784)
    half = prefill_flops(TINY, 4, 1.0, causal_half=True, batch=3)
    assert half.parts["attention"] == 3 * 38 * 2 * 10  # L (L + 1) / 2 = 10 pairs, batch 3


def test_decode_tiny_by_hand() -> None:
    b = decode_bytes(TINY, 4, 2.0, batch=3, bytes_per_element=2, method="quest")
    # KV: batch 2 h_kv d_h n L rho = 3 * 2 * 4 * 2 * 4 / 2 elements, 2 bytes each
    assert b.parts["kv_cache"] == 2 * 96
    assert b.dense_parts["kv_cache"] == 2 * 192
    # weights: n (2 d h d_h + 2 d h_kv d_h) = 2 * (128 + 64); MLP n 3 d d_mlp = 768; d V + d = 88
    assert b.parts["projections"] == 2 * 384
    assert b.parts["mlp"] == 2 * 768
    assert b.parts["embeddings_logits"] == 2 * 88
    # quest page metadata: batch 2 n h_kv d_h L / 16 = 3 * 2 * 2 * 4 * 4 / 16
    assert b.parts["indexing"] == 2 * 12
    assert b.speedup < b.speedup_bound


def _reported(shared_data: Path) -> pl.DataFrame:
    return pl.read_csv(shared_data / "paper" / "v2_reported_aggregates.csv", comment_prefix="#")


def _values(frame: pl.DataFrame, prefix: str) -> list[float]:
    text = frame.filter(pl.col("quantity").str.starts_with(prefix))["value"][0]
    return [float(v.strip().rstrip("x%")) for v in text.split("/")]


def test_prefill_shares_against_study(shared_data: Path) -> None:
    reported = [v / 100 for v in _values(_reported(shared_data), "prefill attention share")]
    speedups = _values(_reported(shared_data), "prefill speedup from 5x")
    for length, share, speed in zip((16384, 65536, 131072), reported, speedups, strict=True):
        runs = [prefill_flops(get_architecture("qwen2.5", s), length, 5.0) for s in QWEN]
        block = np.mean([r.attention_block_share for r in runs])
        quad = np.mean([r.attention_share for r in runs])
        # the study's share counts the q/k/v/o projections with attention
        assert block == pytest.approx(share, abs=0.02)
        assert quad < block - 0.03
        # and its speed-ups apply 5x to that whole share (Amdahl); ours shrink only the L^2 part
        assert 1 / (1 - share + share / 5) == pytest.approx(speed, abs=0.05)
        assert np.mean([r.speedup for r in runs]) < speed


def test_decode_shares_against_study(shared_data: Path) -> None:
    reported = [v / 100 for v in _values(_reported(shared_data), "decode KV-cache share of memory")]
    for length, share in zip((16384, 131072), reported, strict=True):
        ours = np.mean(
            [decode_bytes(get_architecture("qwen2.5", s), length).attention_share for s in QWEN]
        )
        assert ours == pytest.approx(share, abs=0.01)


def test_gemma_window_against_study() -> None:
    # study: at 64K, batch 8, attention is 76% of prefill for Qwen2.5-14B vs 42% for Gemma-3-12B;
    # Gemma-3-12B at 128K: 54% of prefill, 75% of decode traffic (batch 8)
    g = get_architecture("gemma3", "12B")
    qwen = prefill_flops(get_architecture("qwen2.5", "14B"), 65536, batch=8)
    assert qwen.attention_block_share == pytest.approx(0.76, abs=0.01)
    assert prefill_flops(g, 65536, batch=8).attention_block_share == pytest.approx(0.42, abs=0.01)
    assert prefill_flops(g, 131072).attention_block_share == pytest.approx(0.54, abs=0.01)
    assert decode_bytes(g, 131072, batch=8).attention_share == pytest.approx(0.75, abs=0.01)
    # without the sliding windows Gemma would look like any other model
    full = replace(g, local_layers=0, window=None)
    assert prefill_flops(full, 65536, batch=8).attention_block_share > 0.6


def test_indexing_and_bounds() -> None:
    q = get_architecture("qwen2.5", "7B")
    prev = 1.0
    for c in (1.0, 2.0, 5.0, 10.0, 20.0):
        b = prefill_flops(q, 65536, c, method="vertical-slash")
        assert b.speedup <= b.speedup_bound + 1e-12
        assert b.speedup_bound >= prev
        prev = b.speedup_bound
    assert prev < 1 / (1 - b.attention_share)
    block = prefill_flops(q, 65536, 10.0, method="block-sparse").parts["indexing"]
    assert 0 < block < 0.01 * prefill_flops(q, 65536).dense_total
    with pytest.raises(CostError, match="compression must be >= 1"):
        prefill_flops(q, 1024, 0.5)
    with pytest.raises(CostError, match="unknown decode method 'vertical-slash'"):
        decode_bytes(q, 1024, 2.0, method="vertical-slash")


def test_indexing_reads_each_methods_own_knobs() -> None:
    # flexprefill scores its last 512 queries (the study's setting) and, with query-aware mode
    # off (tau = 0), estimates no blocks: twice vertical-slash's 256 queries, no block term
    q = get_architecture("qwen2.5", "7B")
    vs = indexing_flops(q, 131072, "vertical-slash")
    assert indexing_flops(q, 131072, "flexprefill") == pytest.approx(2 * vs)
    with_blocks = indexing_flops(q, 131072, "flexprefill", knobs={"tau": 0.1})
    assert with_blocks > 2 * vs
    # a grid's knobs: whole floats are accepted, other methods' knobs ignored
    b16 = indexing_flops(q, 131072, "block-sparse")
    b64 = indexing_flops(q, 131072, "block-sparse", knobs={"block_size": 64.0, "page_size": 4})
    assert b64 < b16
    assert indexing_flops(q, 131072, "vertical-slash", knobs={"window": 512}) == 2 * vs
    with pytest.raises(CostError, match="block-sparse: knob 'block_size' must be >= 1"):
        indexing_flops(q, 1024, "block-sparse", knobs={"block_size": 0})
    quest4 = decode_bytes(q, 131072, 10.0, method="quest", knobs={"page_size": 4})
    quest16 = decode_bytes(q, 131072, 10.0, method="quest")
    assert quest4.parts["indexing"] == pytest.approx(4 * quest16.parts["indexing"])
