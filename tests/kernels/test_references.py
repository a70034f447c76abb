"""PyTorch references against dense attention and against naive full-matrix oracles."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from scalelaw.kernels import KernelInputError, get_method  # noqa: E402
from scalelaw.kernels import reference as ref  # noqa: E402
from scalelaw.kernels.budgets import block_compression  # noqa: E402

PREFILL = ["block-sparse", "vertical-slash", "flexprefill"]
DECODE = ["quest", "snapkv", "ada-snapkv"]
# Knobs that fit the tiny test sequences (defaults are for 16K-128K tokens).
SMALL = {
    "block-sparse": {"block_size": 8},
    "vertical-slash": {"window": 32, "local_diagonals": 4, "block_size": 8, "budget_rule": "exact"},
    "flexprefill": {
        "window": 32,
        "local_diagonals": 4,
        "min_budget": 16,
        "block_size": 8,
        "budget_rule": "exact",
    },
    "quest": {"page_size": 8},
    "snapkv": {"window": 32, "recent_tokens": 16, "kernel_size": 5},
    "ada-snapkv": {"window": 32, "recent_tokens": 16, "kernel_size": 5},
}


def naive_masked(q, k, v, mask):
    """Full L x L softmax attention under a (B, H, L, L) bool mask; the oracle."""
    g = q.shape[1] // k.shape[1]
    kk = k.float().repeat_interleave(g, 1)
    vv = v.float().repeat_interleave(g, 1)
    s = q.float() @ kk.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, -1) @ vv


def causal(length):
    return torch.ones(length, length, dtype=torch.bool).tril()


@pytest.mark.parametrize("name", ["dense", *PREFILL])
@pytest.mark.parametrize(("h", "hkv"), [(4, 4), (4, 2), (6, 1)])
def test_prefill_c1_equals_dense(qkv, name, h, hkv):
    q, k, v = qkv(h=h, hkv=hkv, length=200, d=32)
    want = naive_masked(q, k, v, causal(200))
    res = get_method(name).prefill(q, k, v, compression=1, **SMALL.get(name, {}))
    assert res.achieved_compression == pytest.approx(1.0)
    assert res.note == ""
    torch.testing.assert_close(res.out, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", PREFILL)
@pytest.mark.parametrize("c", [2.0, 5.0, 10.0])
def test_prefill_reaches_compression(qkv, name, c):
    # 384 tokens: the 8-token tiles of the line methods reach C = 10 there
    q, k, v = qkv(length=384, d=32)
    knobs = SMALL[name]
    if name == "block-sparse":
        knobs = {"block_size": 4}
    res = get_method(name).prefill(q, k, v, compression=c, **knobs)
    assert res.reached, res.note
    assert abs(res.achieved_compression / c - 1) <= 0.10
    assert res.out.shape == q.shape
    assert torch.isfinite(res.out).all()


def test_block_sparse_matches_naive_oracle_and_counts(qkv):
    q, k, v = qkv(h=4, hkv=2, length=203, d=16, seed=3)
    m = get_method("block-sparse", block_size=8)
    pat = m.pattern(q, k, 4.0)
    mask = pat.block_mask().repeat_interleave(8, 2).repeat_interleave(8, 3)[..., :203, :203]
    mask = mask & causal(203)
    res = m.prefill(q, k, v, compression=4.0)
    torch.testing.assert_close(res.out, naive_masked(q, k, v, mask), atol=2e-5, rtol=1e-4)
    # Achieved C is the computed fraction of the causal matrix, counted independently.
    kept = mask.sum().item()
    assert res.achieved_compression == pytest.approx(203 * 204 / 2 * 4 / kept)
    assert (pat.counts[0, 0] == torch.clamp(torch.arange(1, 27), max=pat.index.shape[-1])).all()


def test_block_sparse_picks_the_dominant_block(qkv):
    q, k, _v = qkv(h=2, hkv=2, length=256, d=16)
    # Keys of block 9 align with every query: it must be kept for all later query blocks.
    direction = torch.randn(16, generator=torch.Generator().manual_seed(1))
    q = q + 3 * direction
    k[:, :, 72:80] += 3 * direction
    pat = get_method("block-sparse", block_size=8).pattern(q, k, 4.0)
    assert pat.index.shape[-1] > 3  # room beyond the mandatory blocks
    mask = pat.block_mask()
    assert mask[:, :, 9:, 9].all()
    assert mask[:, :, :, 0].all()  # sink block
    assert mask.diagonal(dim1=-2, dim2=-1).all()
    assert mask.diagonal(offset=-1, dim1=-2, dim2=-1).all()


def test_block_compression_formula_matches_study():
    # The study's top_chunks at 16K with 16-token blocks (v1 Table 6) count whole blocks; we
    # count tokens, so diagonal blocks are triangles and C comes out slightly higher.
    for top_chunks, study_c in [(53, 9.922), (26, 19.955), (300, 2.000)]:
        assert study_c < block_compression(16384, 16, top_chunks) < study_c * 1.025


@pytest.mark.parametrize(("length", "bs"), [(203, 8), (256, 16), (17, 4), (100, 128)])
def test_block_compression_counts_the_pattern(qkv, length, bs):
    q, k, _ = qkv(h=2, hkv=1, length=length, d=16)
    nb = -(-length // bs)
    for per_row in sorted({1, 2, 3, nb // 2 or 1, nb}):
        pat = get_method("block-sparse", block_size=bs).pattern(q, k, 1.0)
        from scalelaw.kernels.block_sparse import select_blocks

        pat = select_blocks(q, k, bs, per_row, 1, 1)
        want = length * (length + 1) / 2 * 2 / float(pat.computed_entries().sum())
        assert block_compression(length, bs, per_row) == pytest.approx(want)


def test_vertical_slash_matches_naive_oracle(qkv, minference):
    # The cells computed are MInference's: each kept diagonal a tile per query block, columns
    # only outside the tiles; output and achieved C both follow from those cells.
    walk, to_mask = minference
    q, k, v = qkv(h=4, hkv=2, length=160, d=16, seed=5)
    m = get_method("vertical-slash", window=32, local_diagonals=4, block_size=8)
    pat = m.pattern(q, k, 3.0)
    masks, cells = [], 0
    for head in range(4):
        diags = torch.nonzero(pat.diag_keep[0, head]).flatten().tolist()
        cols = torch.nonzero(pat.col_keep[0, head]).flatten().tolist()
        blocks = walk(diags, cols, 160, 8)
        masks.append(to_mask(blocks, 160, 8))
        cells += sum(64 * len(t) + 8 * len(c) for t, c in blocks)
    mask = torch.stack(masks)[None] & causal(160)
    res = m.prefill(q, k, v, compression=3.0)
    torch.testing.assert_close(res.out, naive_masked(q, k, v, mask), atol=2e-5, rtol=1e-4)
    assert res.achieved_compression == pytest.approx(160 * 161 / 2 * 4 / cells)
    assert pat.col_keep[..., :4].all() and pat.diag_keep[..., :4].all()
    assert (pat.col_keep.sum(-1) == pat.diag_keep.sum(-1)).all()  # equal numbers per head


def test_vertical_slash_finds_a_heavy_column(qkv):
    q, k, _v = qkv(h=2, hkv=1, length=256, d=16)
    direction = torch.randn(16, generator=torch.Generator().manual_seed(1))
    q = q + 2 * direction
    k[:, :, 100] += 6 * direction
    m = get_method("vertical-slash", window=32, local_diagonals=4, block_size=8)
    pat = m.pattern(q, k, 5.0)
    assert pat.col_keep[..., 100].all()
    # every query block past column 100 computes it, in a tile or as a single column
    rows = pat.index.block_rows(0, pat.index.n_blocks, 256)
    assert rows[..., 100 // 8 :, 100].all()


def test_flexprefill_block_heads_and_mass(qkv):
    q, k, v = qkv(length=384, d=32)
    m = get_method("flexprefill", **SMALL["flexprefill"])
    all_blocks = m.prefill(q, k, v, compression=4.0, tau=1.0)
    assert all_blocks.stats["blocks_per_row"] > 0
    assert all_blocks.stats["block_heads"] == 4
    no_blocks = m.prefill(q, k, v, compression=2.0)
    assert no_blocks.stats["block_heads"] == 0
    assert 0 < no_blocks.stats["alpha"] < 1 and no_blocks.stats["min_budget"] == 16
    for r in (all_blocks, no_blocks):
        assert r.reached, r.note
    # A floor above what C allows: the study's alpha = 0 rows, every head at the uniform count.
    uniform = m.prefill(q, k, v, compression=4.0, min_budget=10_000)
    assert uniform.stats["alpha"] == 0.0 and uniform.stats["min_budget"] < 10_000
    assert uniform.stats["mean_columns"] == uniform.stats["mean_diagonals"]
    assert uniform.reached, uniform.note


def test_unreachable_compression_is_reported(qkv):
    q, k, v = qkv(length=64)
    res = get_method("block-sparse").prefill(q, k, v, compression=20)
    assert not res.reached
    assert "not reachable" in res.note and "L=64" in res.note
    state = get_method("snapkv").prepare_cache(q, k, v, compression=20)
    assert "not reachable" in state.note


def test_chunked_engine_equals_one_chunk(qkv, monkeypatch):
    q, k, v = qkv(length=96, d=16)
    m = get_method("vertical-slash", window=16, local_diagonals=4)
    whole = m.prefill(q, k, v, compression=3.0).out
    monkeypatch.setattr(ref, "CHUNK_ELEMENTS", 4 * 96 * 7)  # 7 rows per chunk
    assert ref.chunk_rows(1, 4, 96) == 7
    torch.testing.assert_close(m.prefill(q, k, v, compression=3.0).out, whole)


def full_decode(q_step, k, v):
    g = q_step.shape[1] // k.shape[1]
    s = q_step @ k.repeat_interleave(g, 1).transpose(-1, -2) / math.sqrt(k.shape[-1])
    return torch.softmax(s, -1) @ v.repeat_interleave(g, 1)


@pytest.mark.parametrize("name", ["dense", *DECODE])
def test_decode_c1_equals_dense(qkv, name):
    q, k, v = qkv(h=4, hkv=2, length=100)
    m = get_method(name, phase="decode")
    state = m.prepare_cache(q, k, v, compression=1, **SMALL.get(name, {}))
    kk, vv = k, v
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        kn, vn = torch.randn(1, 2, 1, 32, generator=g), torch.randn(1, 2, 1, 32, generator=g)
        qs = torch.randn(1, 4, 1, 32, generator=g)
        state.append(kn, vn)
        kk, vv = torch.cat([kk, kn], 2), torch.cat([vv, vn], 2)
        res = m.decode(qs, state)
        torch.testing.assert_close(res.out, full_decode(qs, kk, vv), atol=1e-5, rtol=1e-4)
        assert res.achieved_compression == pytest.approx(1.0)
    assert state.n_appended == 3 and state.k.shape[2] == 103


@pytest.mark.parametrize("name", DECODE)
@pytest.mark.parametrize("c", [2.0, 5.0])
def test_decode_reaches_compression(qkv, name, c):
    q, k, v = qkv(h=4, hkv=2, length=256)
    m = get_method(name)
    state = m.prepare_cache(q, k, v, compression=c, **SMALL[name])
    assert abs(state.achieved_compression / c - 1) <= 0.10, state.note
    res = m.decode(q[:, :, -1:], state)
    assert abs(res.achieved_compression / c - 1) <= 0.10


def test_snapkv_keeps_sinks_recent_and_hot_token(qkv):
    q, k, v = qkv(h=4, hkv=2, length=256, d=32)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    q[:, :, -32:] += 2 * direction
    k[:, :, 77] += 6 * direction
    k[:, :, :, -1] = torch.arange(256.0)  # tag positions to find them after eviction
    state = get_method("snapkv").prepare_cache(q, k, v, compression=4.0, **SMALL["snapkv"])
    assert state.k.shape[2] == 64 and state.valid is None
    kept = state.k[..., -1].round().long()
    for pos in [0, 1, 2, 3, 77, *range(240, 256)]:
        assert (kept == pos).any(-1).all(), pos
    # Kept tokens stay in sequence order.
    assert (kept.diff(dim=-1) > 0).all()


def test_ada_snapkv_shares_budget_with_floors(qkv):
    q, k, v = qkv(h=4, hkv=2, length=256, d=32)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    q[:, :2, -32:] = 5 * direction  # KV head 0 attends to tokens 100..199 only
    k[:, 0, 100:200] = 5 * direction
    q[:, 2:] = 0  # KV head 1 attends uniformly: lower maxima than head 0's hot tokens
    m = get_method("ada-snapkv")
    state = m.prepare_cache(q, k, v, compression=4.0, **SMALL["ada-snapkv"])
    counts = state.valid.sum(-1)
    assert int(counts.sum()) == 2 * 64  # the layer budget is shared
    # The floor is max(20% of the capacity, sink + recent) = max(12, 20) = 20, not sink +
    # recent + 20% of what is left after them (28): head 1 keeps exactly its floor.
    assert counts.tolist() == [[108, 20]]
    res = m.decode(q[:, :, -1:], state)
    keep = state.valid[0]
    want = []
    for head in range(4):
        kv = head // 2
        kh, vh = state.k[0, kv][keep[kv]], state.v[0, kv][keep[kv]]
        s = torch.softmax(q[0, head, -1] @ kh.T / math.sqrt(32), -1)
        want.append(s @ vh)
    torch.testing.assert_close(res.out[0, :, 0], torch.stack(want), atol=1e-5, rtol=1e-4)


def test_ada_snapkv_scores_take_the_max_over_window_and_group(qkv):
    from scalelaw.kernels.snapkv import token_scores

    q, k, _ = qkv(h=4, hkv=2, length=96, d=16)
    w = 16
    probs = naive_masked(q, k, torch.eye(96)[None, None].expand(1, 2, 96, 96), causal(96))
    probs = probs[:, :, -w:]  # (B, H, w, L): attention of the last w queries
    grouped = probs.reshape(1, 2, 2, w, 96)
    pool = torch.nn.functional.avg_pool1d  # zero padding counted, as the study pools
    want_max = pool(grouped.amax(3).amax(2), 5, 1, 2)[..., :96]
    want_sum = pool(grouped.sum(3).sum(2), 5, 1, 2)[..., :96]
    torch.testing.assert_close(token_scores(q, k, w, 5, "max"), want_max, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(token_scores(q, k, w, 5, "sum"), want_sum, atol=1e-6, rtol=1e-5)
    # One query's sharp look at token 30 beats many queries' mild interest in token 60 under
    # the maximum (ada-snapkv), not under the sum (snapkv).
    q, k, v = qkv(h=2, hkv=1, length=128, d=16, seed=2)
    q, k = q * 0.1, k * 0.1
    a, b = torch.zeros(16), torch.zeros(16)
    a[0], b[1] = 1.0, 1.0
    q[:, :, -1] += 12 * a
    k[:, :, 30] += 12 * a
    q[:, :, -16:-1] += 4 * b
    k[:, :, 60] += 4 * b
    knobs = {"window": 16, "kernel_size": 1, "sink_tokens": 0, "recent_tokens": 0}
    ada = get_method("ada-snapkv", **knobs).prepare_cache(q, k, v, compression=128.0)
    snap = get_method("snapkv", **knobs).prepare_cache(q, k, v, compression=128.0)
    assert torch.equal(ada.k[0, 0, 0], k[0, 0, 30])
    assert torch.equal(snap.k[0, 0, 0], k[0, 0, 60])


def test_quest_reads_the_matching_page(qkv):
    q, k, v = qkv(h=4, hkv=2, length=256, d=32)
    m = get_method("quest", page_size=8)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    k[:, :, 130] += 8 * direction
    state = m.prepare_cache(q, k, v, compression=8.0)
    qs = direction.expand(1, 4, 1, 32).contiguous()
    from scalelaw.kernels.quest import gather_pages, select_pages

    pages = select_pages(qs, state)
    # budget round(256 / 8 / 8) = 4 pages, plus the newest one (as the study reads)
    assert pages.shape[-1] == 5 and (pages == 16).any(-1).all()  # token 130 is in page 16
    assert (pages == 31).any(-1).all()  # newest page always read
    res = m.decode(qs, state)
    ks, vs, valid = gather_pages(state, pages)
    assert valid.all()
    torch.testing.assert_close(res.out, full_decode(qs, ks, vs), atol=1e-5, rtol=1e-4)
    # Page bounds are true bounds of the keys they summarise, also after appends.
    state.append(k[:, :, :3] * 5, v[:, :, :3])
    pk = torch.nn.functional.pad(state.k, (0, 0, 0, 8 - state.length % 8), value=float("nan"))
    pk = pk.reshape(1, 2, -1, 8, 32)
    torch.testing.assert_close(state.page_max, pk.nan_to_num(-1e9).amax(3))
    torch.testing.assert_close(state.page_min, pk.nan_to_num(1e9).amin(3))


@pytest.mark.parametrize("b", [1, 2])
def test_flexprefill_mixed_heads_match_naive_oracle(qkv, minference, b):
    from scalelaw.kernels.flexprefill import js_distance

    walk, to_mask = minference
    q, k, v = qkv(b=b, h=4, hkv=2, length=144, d=16, seed=7)
    js = js_distance(q, k, 32, 16).flatten().sort().values
    tau = float(js[2 * b - 1 : 2 * b + 1].mean())  # half the heads below, half above
    m = get_method(
        "flexprefill", window=32, local_diagonals=4, min_budget=8, block_size=16, tau=tau
    )
    vs, blocks, mode, stats = m.pattern(q, k, 3.0)
    assert stats["block_heads"] == 2 * b
    bmask = blocks.block_mask().repeat_interleave(16, 2).repeat_interleave(16, 3)[..., :144, :144]
    cells = 0.0
    lines = torch.zeros(b, 4, 144, 144, dtype=torch.bool)
    for bi in range(b):
        for hi in range(4):
            diags = torch.nonzero(vs.diag_keep[bi, hi]).flatten().tolist()
            cols = torch.nonzero(vs.col_keep[bi, hi]).flatten().tolist()
            idx = walk(diags, cols, 144, 16)
            lines[bi, hi] = to_mask(idx, 144, 16)
            if not mode[bi, hi]:
                cells += sum(256 * len(t) + 16 * len(c) for t, c in idx)
            else:
                cells += float((bmask[bi, hi] & causal(144)).sum())
    mask = torch.where(mode[:, :, None, None], bmask, lines) & causal(144)
    res = m.prefill(q, k, v, compression=3.0)
    torch.testing.assert_close(res.out, naive_masked(q, k, v, mask), atol=2e-5, rtol=1e-4)
    assert res.achieved_compression == pytest.approx(max(1.0, 144 * 145 / 2 * 4 * b / cells))


def test_block_gather_path_chunks(qkv, monkeypatch):
    from scalelaw.kernels import sparse_torch

    q, k, v = qkv(length=100, d=16)
    m = get_method("block-sparse", block_size=8)
    whole = m.prefill(q, k, v, compression=2.5).out
    monkeypatch.setattr(sparse_torch, "CHUNK_ELEMENTS", 1)  # one query block at a time
    torch.testing.assert_close(m.prefill(q, k, v, compression=2.5).out, whole)
    pat = m.pattern(q, k, 2.5)
    oracle = ref.masked_causal(q, k, v, pat.keep_fn(), multiple=8)
    torch.testing.assert_close(whole, oracle, atol=2e-5, rtol=1e-4)


def test_patterns_at_c1_keep_every_causal_entry(qkv):
    q, k, _ = qkv(length=200, d=16)
    bs = get_method("block-sparse", block_size=16).pattern(q, k, 1.0)
    assert torch.equal(
        bs.block_mask(), torch.ones(13, 13, dtype=torch.bool).tril().expand(1, 4, 13, 13)
    )
    vs = get_method("vertical-slash", **SMALL["vertical-slash"]).pattern(q, k, 1.0)
    fp, _, _, _ = get_method("flexprefill", **SMALL["flexprefill"]).pattern(q, k, 1.0)
    for pat in (vs, fp):
        rows = pat.index.block_rows(0, 25, 200).repeat_interleave(8, dim=2)
        assert (rows | ~causal(200)).all()


def test_snapkv_needs_only_the_last_window_of_queries(qkv):
    q, k, v = qkv(h=4, hkv=2, length=200)
    m = get_method("snapkv", **SMALL["snapkv"])
    full = m.prepare_cache(q, k, v, compression=3.0)
    tail = m.prepare_cache(q[:, :, -32:], k, v, compression=3.0)
    assert torch.equal(full.k, tail.k) and torch.equal(full.v, tail.v)
    with pytest.raises(KernelInputError, match="only 100 keys"):
        m.prepare_cache(q, k[:, :, :100], v[:, :, :100], compression=3.0)
