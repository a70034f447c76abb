"""Triton sparse prefill: one flash-attention forward driven by per-query-block tile lists.

For each query block the kernel walks a list of key tiles (each `block` keys wide, starting at
any key: block-sparse blocks, flexprefill's block heads, MInference's ranges of vertical-slash
diagonals) and then a list of single key columns (the vertical lines no tile covers), with
online softmax and a causal mask. It computes exactly the cells the `TileIndex` counts, which is
what the PyTorch path computes too. No L x L mask is built: the inputs are tile and column lists.

The kernel takes plain tensors (the fields of a `scalelaw.kernels.tiles.TileIndex`), so it knows
nothing of the methods that build them.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from scalelaw.kernels.specs import KernelInputError
from scalelaw.kernels.triton_flash import online_softmax_step, tile_scores

COLUMN_TILE = 64


@triton.jit
def _sparse_prefill_fwd(
    Q,
    K,
    V,
    Out,
    STARTS,
    CNT,
    COLS,
    CCNT,
    TOUCHED,
    qk_scale,
    L,
    H,
    G,
    NB,
    KMAX,
    NCOL,
    HEAD_D,
    sqb,
    sqh,
    sql,
    skb,
    skh,
    skl,
    svb,
    svh,
    svl,
    sob,
    soh,
    sol,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_C: tl.constexpr,
    HAS_COLS: tl.constexpr,
    COUNT: tl.constexpr,
):
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    kvh = h // G
    offs_m = qb * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    offs_b = tl.arange(0, BLOCK)
    row_ok = offs_m < L
    d_ok = offs_d < HEAD_D
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sql + offs_d[None, :],
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_base = K + b * skb + kvh * skh
    v_base = V + b * svb + kvh * svh
    m_i = tl.full([BLOCK], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK, BLOCK_D], dtype=tl.float32)

    n_tiles = tl.load(CNT + bh * NB + qb)
    for j in range(0, n_tiles):
        start = tl.load(STARTS + (bh * NB + qb) * KMAX + j)
        offs_n = start + offs_b
        col_ok = offs_n < L
        s = tile_scores(q, k_base, offs_n, col_ok, offs_d, d_ok, skl, qk_scale)
        keep = (offs_m[:, None] >= offs_n[None, :]) & col_ok[None, :] & row_ok[:, None]
        s = tl.where(keep, s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(
            s, m_i, l_i, acc, v_base, offs_n, col_ok, offs_d, d_ok, svl
        )

    n_cols = 0
    if HAS_COLS:
        n_cols = tl.load(CCNT + bh * NB + qb)
        offs_c = tl.arange(0, BLOCK_C)
        for c0 in range(0, n_cols, BLOCK_C):
            c_ok = (c0 + offs_c) < n_cols
            cols = tl.load(COLS + (bh * NB + qb) * NCOL + c0 + offs_c, mask=c_ok, other=0)
            s = tile_scores(q, k_base, cols, c_ok, offs_d, d_ok, skl, qk_scale)
            keep = (offs_m[:, None] >= cols[None, :]) & c_ok[None, :] & row_ok[:, None]
            s = tl.where(keep, s, float("-inf"))
            m_i, l_i, acc = online_softmax_step(
                s, m_i, l_i, acc, v_base, cols, c_ok, offs_d, d_ok, svl
            )

    if COUNT:
        # what this program computed: tiles walked and single columns scored
        tl.store(TOUCHED + (bh * NB + qb) * 2, n_tiles)
        tl.store(TOUCHED + (bh * NB + qb) * 2 + 1, n_cols)

    # Rows past the sequence end have no scores; keep them finite (they are not stored).
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        Out + b * sob + h * soh + offs_m[:, None] * sol + offs_d[None, :],
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )


def tile_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    cols: torch.Tensor,
    col_counts: torch.Tensor,
    block: int,
    touched: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of every query block over its tiles and single columns only.

    Per (batch, head, query block): `starts` (B, H, nb, K) the first key of each `block`-wide
    tile, valid up to `counts` (B, H, nb); `cols` (B, H, nb, V) single key columns, valid up to
    `col_counts`. `touched` (B, H, nb, 2) int32, when given, receives the tiles and columns each
    program computed (a check that the cells counted are the cells computed).
    """
    if block < 16 or block & (block - 1):
        raise KernelInputError(
            f"triton sparse prefill: block size must be a power of two >= 16, got {block}"
        )
    if q.shape[2] != k.shape[2]:
        raise KernelInputError("triton sparse prefill: q and k must have equal length")
    b, h, length, d = q.shape
    g = h // k.shape[1]
    nb = math.ceil(length / block)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    kmax, ncol = max(1, starts.shape[-1]), max(1, cols.shape[-1])
    has_cols = cols.numel() > 0
    starts = starts.to(torch.int32).contiguous() if starts.numel() else dummy
    counts = counts.to(torch.int32).contiguous()
    cols = cols.to(torch.int32).contiguous() if has_cols else dummy
    col_counts = col_counts.to(torch.int32).contiguous() if has_cols else dummy
    touch = dummy if touched is None else touched
    grid = (nb, b * h)
    _sparse_prefill_fwd[grid](
        q,
        k,
        v,
        out,
        starts,
        counts,
        cols,
        col_counts,
        touch,
        1.0 / math.sqrt(d) * 1.4426950408889634,
        length,
        h,
        g,
        nb,
        kmax,
        ncol,
        d,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
        BLOCK=block,
        BLOCK_D=max(16, triton.next_power_of_2(d)),
        BLOCK_C=COLUMN_TILE,
        HAS_COLS=has_cols,
        COUNT=touched is not None,
    )
    return out
