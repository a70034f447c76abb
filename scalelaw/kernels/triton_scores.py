"""Triton window scores: column and diagonal sums of the last queries' softmax attention.

What `scalelaw.kernels.vertical_slash.window_scores_torch` computes (its readable reference),
without the (window x L) fp32 probabilities in memory: per (batch, head), the last `window`
queries' causal softmax over every key, summed over those queries per key column and per
diagonal offset o = i - j.

Three passes read K, each one program per block of one head:
1. row statistics: each query's running max and sum of exp2, online as flash attention does;
2. column sums: a program owns a block of keys and walks the query rows that see them;
3. diagonal sums: a program owns a block of diagonals; for a block of rows its diagonals cross a
   band of keys as wide as both blocks, scored as one tile and read along the diagonals with
   `tl.gather`.
Every sum is owned by one program: no atomics, so the result does not depend on scheduling.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from scalelaw.kernels.reference import FAR

LOG2E = 1.4426950408889634
BLOCK_M = 64  # query rows per tile
BLOCK_N = 64  # keys per column program, diagonals per diagonal program


@triton.jit
def _scores(q, k, FP32: tl.constexpr):
    if FP32:
        return tl.dot(q, tl.trans(k), input_precision="ieee")
    return tl.dot(q, tl.trans(k))


@triton.jit
def _load_rows(base, rows, ok, offs_d, d_ok, stride_l, stride_d):
    ptrs = base + rows[:, None] * stride_l + offs_d[None, :] * stride_d
    return tl.load(ptrs, mask=ok[:, None] & d_ok[None, :], other=0.0)


@triton.jit
def _head(Q, K, STATS, sqb, sqh, skb, skh, H, G, W):
    """This program's query head and its KV head (GQA: H / G query heads share one), and the
    two halves of the row stats: (B x H, W) running maxima, then sums of exp2."""
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    stats_m = STATS
    stats_s = STATS + tl.num_programs(0) * W
    return bh, Q + b * sqb + h * sqh, K + b * skb + (h // G) * skh, stats_m, stats_s


@triton.jit
def _row_stats_kernel(
    Q, K, STATS,
    sqb, sqh, sql, sqd,
    skb, skh, skl, skd,
    H, G, L, W, qk_scale,
    HEAD_D: tl.constexpr, BLOCK_D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
    FP32: tl.constexpr,
):  # fmt: skip
    bh, q_base, k_base, M, S = _head(Q, K, STATS, sqb, sqh, skb, skh, H, G, W)
    rb = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_D
    offs_r = rb * BM + tl.arange(0, BM)
    row_ok = offs_r < W
    qi = L - W + offs_r
    q = _load_rows(q_base, qi, row_ok, offs_d, d_ok, sql, sqd)
    m = tl.full([BM], float("-inf"), tl.float32)
    s_sum = tl.zeros([BM], tl.float32)
    hi = tl.minimum(L, L - W + rb * BM + BM)
    for j0 in range(0, hi, BN):
        offs_n = j0 + tl.arange(0, BN)
        kt = _load_rows(k_base, offs_n, offs_n < L, offs_d, d_ok, skl, skd)
        s = _scores(q, kt, FP32) * qk_scale
        s = tl.where((offs_n[None, :] <= qi[:, None]) & (offs_n[None, :] < L), s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        s_sum = s_sum * tl.exp2(m - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
        m = m_new
    tl.store(M + bh * W + offs_r, m, mask=row_ok)
    tl.store(S + bh * W + offs_r, s_sum, mask=row_ok)


@triton.jit
def _column_sums_kernel(
    Q, K, STATS, COLS,
    sqb, sqh, sql, sqd,
    skb, skh, skl, skd,
    H, G, L, W, qk_scale,
    HEAD_D: tl.constexpr, BLOCK_D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
    FP32: tl.constexpr,
):  # fmt: skip
    bh, q_base, k_base, M, S = _head(Q, K, STATS, sqb, sqh, skb, skh, H, G, W)
    jb = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_D
    offs_n = jb * BN + tl.arange(0, BN)
    n_ok = offs_n < L
    kt = _load_rows(k_base, offs_n, n_ok, offs_d, d_ok, skl, skd)
    acc = tl.zeros([BN], tl.float32)
    # rows before the first that sees key jb * BN attend to none of these keys
    r_first = (tl.maximum(0, jb * BN - (L - W)) // BM) * BM
    for r0 in range(r_first, W, BM):
        offs_r = r0 + tl.arange(0, BM)
        row_ok = offs_r < W
        qi = L - W + offs_r
        q = _load_rows(q_base, qi, row_ok, offs_d, d_ok, sql, sqd)
        m = tl.load(M + bh * W + offs_r, mask=row_ok, other=0.0)
        s_sum = tl.load(S + bh * W + offs_r, mask=row_ok, other=1.0)
        s = _scores(q, kt, FP32) * qk_scale
        p = tl.exp2(s - m[:, None]) / s_sum[:, None]
        keep = row_ok[:, None] & (offs_n[None, :] <= qi[:, None])
        acc += tl.sum(tl.where(keep, p, 0.0), 0)
    tl.store(COLS + bh * L + offs_n, acc, mask=n_ok)


@triton.jit
def _diagonal_sums_kernel(
    Q, K, STATS, DIAGS,
    sqb, sqh, sql, sqd,
    skb, skh, skl, skd,
    H, G, L, W, qk_scale,
    HEAD_D: tl.constexpr, BLOCK_D: tl.constexpr, BM: tl.constexpr, BO: tl.constexpr,
    FP32: tl.constexpr,
):  # fmt: skip
    bh, q_base, k_base, M, S = _head(Q, K, STATS, sqb, sqh, skb, skh, H, G, W)
    ob = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_D
    offs_t = tl.arange(0, BO)
    o = ob * BO + offs_t
    o_ok = o < L
    # in a tile of rows r0 + rr, diagonal ob * BO + t is key column rr + BO - 1 - t of the band
    # of keys that starts at L - W + r0 - ob * BO - (BO - 1)
    band = tl.arange(0, BM)[:, None] + (BO - 1) - offs_t[None, :]
    acc = tl.zeros([BO], tl.float32)
    r_first = (tl.maximum(0, ob * BO - (L - W)) // BM) * BM
    for r0 in range(r_first, W, BM):
        offs_r = r0 + tl.arange(0, BM)
        row_ok = offs_r < W
        qi = L - W + offs_r
        q = _load_rows(q_base, qi, row_ok, offs_d, d_ok, sql, sqd)
        m = tl.load(M + bh * W + offs_r, mask=row_ok, other=0.0)
        s_sum = tl.load(S + bh * W + offs_r, mask=row_ok, other=1.0)
        offs_c = L - W + r0 - ob * BO - (BO - 1) + tl.arange(0, BM + BO)
        kt = _load_rows(k_base, offs_c, (offs_c >= 0) & (offs_c < L), offs_d, d_ok, skl, skd)
        s = tl.gather(_scores(q, kt, FP32), band, axis=1) * qk_scale
        p = tl.exp2(s - m[:, None]) / s_sum[:, None]
        keep = row_ok[:, None] & o_ok[None, :] & (o[None, :] <= qi[:, None])
        acc += tl.sum(tl.where(keep, p, 0.0), 0)
    tl.store(DIAGS + bh * L + o, acc, mask=o_ok)


def window_scores_triton(
    q: torch.Tensor, k: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and diagonal scores (B, H, L) fp32 from the last `window` queries, per KV-head
    group: `window_scores_torch`'s, by three kernel launches."""
    b, h, length, d = q.shape
    g = h // k.shape[1]
    w = min(window, length)
    dev = q.device
    stats = torch.empty(2, b * h, w, dtype=torch.float32, device=dev)  # maxima, sums
    cols = torch.empty(b, h, length, dtype=torch.float32, device=dev)
    diags = torch.empty(b, h, length, dtype=torch.float32, device=dev)
    common = dict(
        HEAD_D=d,
        BLOCK_D=max(16, triton.next_power_of_2(d)),
        BM=BLOCK_M,
        FP32=q.dtype == torch.float32,
        num_warps=4,
    )
    args = (*q.stride(), *k.stride(), h, g, length, w, LOG2E / math.sqrt(d))
    _row_stats_kernel[(b * h, triton.cdiv(w, BLOCK_M))](q, k, stats, *args, BN=BLOCK_N, **common)
    _column_sums_kernel[(b * h, triton.cdiv(length, BLOCK_N))](
        q, k, stats, cols, *args, BN=BLOCK_N, **common
    )
    _diagonal_sums_kernel[(b * h, triton.cdiv(length, BLOCK_N))](
        q, k, stats, diags, *args, BO=BLOCK_N, **common
    )
    return cols, diags


# --- the tile index ---------------------------------------------------------------------------
# What `scalelaw.kernels.tiles.lines_index` builds from the kept lines, as MInference's own
# index kernel builds it: one program per (row, query block), walking that block's diagonals in
# order. On a GPU the walk costs a few thousand scalar steps per program and no temporaries,
# where the vectorised PyTorch build holds (query blocks x lines) grids in row chunks.


@triton.jit
def _count_at_most(row, n, value, LOG_N: tl.constexpr):
    """How many of the ascending row[:n] are <= value (binary search)."""
    pos = tl.zeros([], tl.int32)
    for j in tl.static_range(LOG_N + 1):
        cand = pos + (1 << (LOG_N - j))
        ok = cand <= n
        pos = tl.where(ok & (tl.load(row + cand - 1, mask=ok, other=0) <= value), cand, pos)
    return pos


@triton.jit
def _index_tiles_kernel(
    X, STARTS, COUNTS,
    N, NB, W,
    BS: tl.constexpr, LOG_N: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0)
    m = tl.program_id(1)
    e = (m + 1) * BS  # keys up to e: the block keeps the diagonals with o = -x < e
    row = X + r.to(tl.int64) * N
    end = tl.zeros([], tl.int32)  # where the current run's tiles end
    cnt = tl.zeros([], tl.int32)
    out = STARTS + (r * NB + m).to(tl.int64) * W
    # the kept diagonals with o < e, in order of descending o (pads, 2 bs, come after them)
    for k in range(_count_at_most(row, N, -e, LOG_N), _count_at_most(row, N, 0, LOG_N)):
        s = tl.maximum(e + tl.load(row + k).to(tl.int32), BS)  # the range is [s - bs, s)
        # a range that starts past the run's end opens a new run; one that ends past it
        # extends the run by one tile; one inside it adds nothing
        opens = (cnt == 0) | (s > end + BS)
        extends = (cnt > 0) & (s > end) & (s <= end + BS)
        tl.store(out + cnt, tl.where(opens, s - BS, end), mask=opens | extends)
        end = tl.where(opens, s, tl.where(extends, end + BS, end))
        cnt += (opens | extends).to(tl.int32)
    tl.store(COUNTS + r * NB + m, cnt)


@triton.jit
def _index_columns_kernel(
    COLS, STARTS, COUNTS, LISTS, COL_COUNTS,
    V, NB, W,
    BS: tl.constexpr, BV: tl.constexpr, LOG_W: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0)
    m = tl.program_id(1)
    e = (m + 1) * BS
    tiles = tl.load(COUNTS + r * NB + m)
    st = STARTS + (r * NB + m).to(tl.int64) * W
    out = LISTS + (r * NB + m).to(tl.int64) * V  # past 2^31 at 128K
    kept = tl.zeros([], tl.int32)
    # the columns are distinct and ascending: those below e are among the first e
    for v0 in range(0, tl.minimum(V, e), BV):
        v = v0 + tl.arange(0, BV)
        c = tl.load(COLS + r.to(tl.int64) * V + v, mask=v < V, other=e)
        # the tiles that start at or before c, by binary search of the ascending starts
        pos = tl.zeros([BV], tl.int32)
        for j in tl.static_range(LOG_W + 1):
            cand = pos + (1 << (LOG_W - j))
            ok = cand <= tiles
            t = tl.load(st + cand - 1, mask=ok, other=0)
            pos = tl.where(ok & (t <= c), cand, pos)
        last = tl.load(st + pos - 1, mask=pos > 0, other=-BS)
        keep = (c < e) & (last + BS <= c)  # below the block's end and in no tile
        at = kept + tl.cumsum(keep.to(tl.int32), 0) - 1
        tl.store(out + at, c, mask=keep)
        kept += tl.sum(keep.to(tl.int32), 0)
    tl.store(COL_COUNTS + r * NB + m, kept)


COLUMN_BLOCK = 128  # columns per step of the column-list program


def lines_index_triton(
    x: torch.Tensor, cols: torch.Tensor, length: int, bs: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tile lists and single-column lists of `tiles.lines_index`, by two kernel launches:
    `x` (R, n) minus the kept offsets, ascending, pads 2 bs after them (`tiles._top_x`); `cols`
    (R, V) int32 kept columns, ascending, pads past every key. Returns `_tiles`'s starts (R, nb,
    W) and counts (R, nb), and `_single_columns`'s lists (R, nb, V) and counts (R, nb), the
    lists padded with `reference.FAR` as theirs are."""
    r, n = x.shape
    v = cols.shape[1]
    nb = math.ceil(length / bs)
    w = max(1, min(n - 1, nb))
    dev = x.device
    starts = torch.full((r, nb, w), FAR, dtype=torch.int32, device=dev)
    counts = torch.empty(r, nb, dtype=torch.int32, device=dev)
    lists = torch.full((r, nb, v), FAR, dtype=torch.int32, device=dev)
    col_counts = torch.empty(r, nb, dtype=torch.int32, device=dev)
    _index_tiles_kernel[(r, nb)](
        x, starts, counts, n, nb, w, BS=bs, LOG_N=n.bit_length() - 1, num_warps=1
    )
    _index_columns_kernel[(r, nb)](
        cols, starts, counts, lists, col_counts, v, nb, w,
        BS=bs, BV=COLUMN_BLOCK, LOG_W=w.bit_length() - 1, num_warps=4,
    )  # fmt: skip
    return starts, counts, lists, col_counts
