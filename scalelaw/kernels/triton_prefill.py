"""Triton sparse prefill: one flash-attention forward driven by per-query-block index lists.

For each query block the kernel walks a list of key blocks (block-sparse, flexprefill's block
heads, and the blocks that vertical-slash diagonals cross) and then a list of gathered single key
columns (vertical-slash's vertical part). Online softmax keeps one pass over each tile.
For vertical-slash heads a tile only scores entries on kept diagonals (a per-head offset lookup)
and a column only scores entries off those diagonals, so every kept entry counts exactly once.
No L x L mask is built: the inputs are O(L) or O(L / block) per head.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from scalelaw.kernels.base import KernelInputError
from scalelaw.kernels.triton_flash import online_softmax_step, tile_scores

COLUMN_TILE = 64


@triton.jit
def _sparse_prefill_fwd(
    Q,
    K,
    V,
    Out,
    IDX,
    CNT,
    DKEEP,
    HEAD_DIAG,
    COLS,
    CCNT,
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
    HAS_DIAG: tl.constexpr,
    HAS_COLS: tl.constexpr,
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
    use_diag = 0
    if HAS_DIAG:
        use_diag = tl.load(HEAD_DIAG + bh)
    dk_base = DKEEP + bh * L

    n_blocks = tl.load(CNT + bh * NB + qb)
    for j in range(0, n_blocks):
        kb = tl.load(IDX + (bh * NB + qb) * KMAX + j)
        offs_n = kb * BLOCK + offs_b
        col_ok = offs_n < L
        s = tile_scores(q, k_base, offs_n, col_ok, offs_d, d_ok, skl, qk_scale)
        keep = (offs_m[:, None] >= offs_n[None, :]) & col_ok[None, :] & row_ok[:, None]
        if HAS_DIAG:
            off = tl.maximum(offs_m[:, None] - offs_n[None, :], 0)
            on_diag = tl.load(dk_base + off, mask=keep & (use_diag != 0), other=1)
            keep = keep & (on_diag != 0)
        s = tl.where(keep, s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(
            s, m_i, l_i, acc, v_base, offs_n, col_ok, offs_d, d_ok, svl
        )

    if HAS_COLS:
        n_cols = tl.load(CCNT + bh * NB + qb)
        offs_c = tl.arange(0, BLOCK_C)
        for c0 in range(0, n_cols, BLOCK_C):
            c_ok = (c0 + offs_c) < n_cols
            cols = tl.load(COLS + bh * NCOL + c0 + offs_c, mask=c_ok, other=0)
            s = tile_scores(q, k_base, cols, c_ok, offs_d, d_ok, skl, qk_scale)
            keep = (offs_m[:, None] >= cols[None, :]) & c_ok[None, :] & row_ok[:, None]
            off = tl.maximum(offs_m[:, None] - cols[None, :], 0)
            on_diag = tl.load(dk_base + off, mask=keep, other=0)
            keep = keep & (on_diag == 0)
            s = tl.where(keep, s, float("-inf"))
            m_i, l_i, acc = online_softmax_step(
                s, m_i, l_i, acc, v_base, cols, c_ok, offs_d, d_ok, svl
            )

    # Rows past the sequence end have no scores; keep them finite (they are not stored).
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        Out + b * sob + h * soh + offs_m[:, None] * sol + offs_d[None, :],
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )


def _check(q: torch.Tensor, k: torch.Tensor, block: int) -> None:
    if block < 16 or block & (block - 1):
        raise KernelInputError(
            f"triton sparse prefill: block size must be a power of two >= 16, got {block}"
        )
    if q.shape[2] != k.shape[2]:
        raise KernelInputError("triton sparse prefill: q and k must have equal length")


def _launch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    counts: torch.Tensor,
    block: int,
    diag_keep: torch.Tensor | None = None,
    head_diag: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
    col_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    _check(q, k, block)
    b, h, length, d = q.shape
    g = h // k.shape[1]
    nb = math.ceil(length / block)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    index = index.to(torch.int32).contiguous()
    counts = counts.to(torch.int32).contiguous()
    dummy = torch.zeros(1, dtype=torch.int8, device=q.device)
    dk = dummy if diag_keep is None else diag_keep.to(torch.int8).contiguous()
    hd = dummy if head_diag is None else head_diag.to(torch.int8).contiguous()
    c = torch.zeros(1, dtype=torch.int32, device=q.device) if cols is None else cols
    cc = torch.zeros(1, dtype=torch.int32, device=q.device) if col_counts is None else col_counts
    c = c.to(torch.int32).contiguous()
    cc = cc.to(torch.int32).contiguous()
    grid = (nb, b * h)
    _sparse_prefill_fwd[grid](
        q,
        k,
        v,
        out,
        index,
        counts,
        dk,
        hd,
        c,
        cc,
        1.0 / math.sqrt(d) * 1.4426950408889634,
        length,
        h,
        g,
        nb,
        index.shape[-1],
        c.shape[-1],
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
        HAS_DIAG=diag_keep is not None,
        HAS_COLS=cols is not None,
    )
    return out


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    counts: torch.Tensor,
    block: int,
) -> torch.Tensor:
    """Causal attention over the key blocks `index[b, h, qb, :counts[b, h, qb]]`."""
    return _launch(q, k, v, index, counts, block)


def diagonal_block_lists(diag_keep: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key blocks crossed by kept diagonals, per query block: index (B, H, nb, n), counts."""
    b, h, length = diag_keep.shape
    nb = math.ceil(length / block)
    # Block offset delta = qb - kb holds diagonals (delta - 1) * block + 1 .. (delta + 1) * block - 1.
    pad = (nb + 1) * block - length
    kept = torch.nn.functional.pad(diag_keep, (block - 1, pad)).float()
    window = torch.nn.functional.max_pool1d(
        kept.reshape(b * h, 1, -1), 2 * block - 1, stride=block
    ).reshape(b, h, -1)[..., :nb]
    touched = window > 0
    n = int(touched.sum(-1).max())
    deltas = torch.argsort((~touched).to(torch.int8), dim=-1, stable=True)[..., : max(n, 1)]
    n_touched = touched.sum(-1)
    qb = torch.arange(nb, device=diag_keep.device)
    valid = torch.arange(deltas.shape[-1], device=diag_keep.device) < n_touched[..., None]
    ok = valid[:, :, None, :] & (deltas[:, :, None, :] <= qb[:, None])
    index = (qb[:, None] - deltas[:, :, None, :]).clamp(min=0)
    # Deltas are ascending, so the valid ones form a prefix of each row.
    return index.to(torch.int32), ok.sum(-1).to(torch.int32)


def column_lists(col_keep: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept columns per head ascending (B, H, n) and how many each query block sees."""
    b, h, length = col_keep.shape
    nb = math.ceil(length / block)
    n = max(1, int(col_keep.sum(-1).max()))
    order = torch.argsort((~col_keep).to(torch.int8), dim=-1, stable=True)[..., :n]
    cols = torch.where(
        torch.arange(n, device=col_keep.device) < col_keep.sum(-1, keepdim=True), order, length
    )
    last_row = torch.clamp(
        torch.arange(1, nb + 1, device=col_keep.device) * block - 1, max=length - 1
    )
    counts = torch.searchsorted(
        cols.contiguous(), last_row.expand(b, h, nb).contiguous(), right=True
    )
    return cols.to(torch.int32), counts.to(torch.int32)


def vertical_slash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    col_keep: torch.Tensor,
    diag_keep: torch.Tensor,
    block: int,
) -> torch.Tensor:
    """Causal attention over kept columns and kept diagonals, both (B, H, L) bool."""
    index, counts = diagonal_block_lists(diag_keep, block)
    cols, col_counts = column_lists(col_keep, block)
    head_diag = torch.ones(q.shape[:2], dtype=torch.int8, device=q.device)
    return _launch(q, k, v, index, counts, block, diag_keep, head_diag, cols, col_counts)


def flexprefill_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    vs: object,
    blocks: object,
    block_mode: torch.Tensor,
    block: int,
) -> torch.Tensor:
    """Vertical-slash heads and block-mode heads in one launch."""
    from scalelaw.kernels.block_sparse import BlockPattern
    from scalelaw.kernels.vertical_slash import VSPattern

    assert isinstance(vs, VSPattern)
    index, counts = diagonal_block_lists(vs.diag_keep, block)
    cols, col_counts = column_lists(vs.col_keep, block)
    if isinstance(blocks, BlockPattern):
        width = max(index.shape[-1], blocks.index.shape[-1])
        pad_i = torch.nn.functional.pad(index, (0, width - index.shape[-1]))
        pad_b = torch.nn.functional.pad(blocks.index, (0, width - blocks.index.shape[-1]))
        mode = block_mode[:, :, None, None]
        index = torch.where(mode, pad_b, pad_i)
        counts = torch.where(block_mode[:, :, None], blocks.counts, counts)
        col_counts = torch.where(block_mode[:, :, None], torch.zeros_like(col_counts), col_counts)
    head_diag = (~block_mode).to(torch.int8)
    return _launch(q, k, v, index, counts, block, vs.diag_keep, head_diag, cols, col_counts)
