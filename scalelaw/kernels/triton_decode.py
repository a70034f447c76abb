"""Triton decode kernels: quest's page scores, attention over selected pages or over ragged
per-head lengths, and the combine of split partial results.

An attention program takes the query heads of one GQA group and a slice of its keys (split-K,
as flash-decoding does, so a long cache keeps the GPU busy); it loads keys and values straight
from the cache, with no gather copy, and writes a partial softmax (max, sum, weighted values)
that one small kernel combines.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from scalelaw.kernels.base import KernelInputError
from scalelaw.kernels.triton_flash import online_softmax_step, tile_scores

LOG2E = 1.4426950408889634
# Programs one decode step aims for: enough splits to fill an H100's SMs a few times over.
TARGET_PROGRAMS = 256


@triton.jit
def _page_scores_fwd(
    Q,
    PMIN,
    PMAX,
    OUT,
    G,
    HKV,
    NP,
    HEAD_D,
    sqb,
    sqh,
    snb,
    snh,
    snp,
    sxb,
    sxh,
    sxp,
    BLOCK_P: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    bk = tl.program_id(0)
    pb = tl.program_id(1)
    b = bk // HKV
    kvh = bk % HKV
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_D
    q = tl.load(
        Q + b * sqb + (kvh * G + offs_g)[:, None] * sqh + offs_d[None, :],
        mask=(offs_g < G)[:, None] & d_ok[None, :],
        other=0.0,
    ).to(tl.float32)
    # sum_h sum_d max(q min, q max) = sum_d (sum_h q+) max_d + (sum_h q-) min_d
    q_pos = tl.sum(tl.maximum(q, 0.0), 0)
    q_neg = tl.sum(tl.minimum(q, 0.0), 0)
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    ok = (offs_p < NP)[:, None] & d_ok[None, :]
    hi = tl.load(
        PMAX + b * sxb + kvh * sxh + offs_p[:, None] * sxp + offs_d[None, :], mask=ok, other=0.0
    ).to(tl.float32)
    lo = tl.load(
        PMIN + b * snb + kvh * snh + offs_p[:, None] * snp + offs_d[None, :], mask=ok, other=0.0
    ).to(tl.float32)
    s = tl.sum(hi * q_pos[None, :] + lo * q_neg[None, :], 1)
    tl.store(OUT + bk * NP + offs_p, s, mask=offs_p < NP)


def page_scores_triton(
    q_step: torch.Tensor, page_min: torch.Tensor, page_max: torch.Tensor
) -> torch.Tensor:
    """quest's page scores (B, H_kv, pages) fp32, reading the metadata once in its own dtype."""
    b, h, _, d = q_step.shape
    hkv, n_pages = page_min.shape[1], page_min.shape[2]
    out = torch.empty(b, hkv, n_pages, dtype=torch.float32, device=q_step.device)
    if n_pages == 0:
        return out
    q = q_step.contiguous()
    if page_min.stride(-1) != 1 or page_max.stride(-1) != 1:
        page_min, page_max = page_min.contiguous(), page_max.contiguous()
    block_d = max(16, triton.next_power_of_2(d))
    # 4K metadata elements per tensor per program: at d = 128 about 100 registers (sm_90), where
    # 8K takes 168 and halves the warps an SM holds
    block_p = max(16, min(64, 4096 // block_d))
    grid = (b * hkv, triton.cdiv(n_pages, block_p))
    _page_scores_fwd[grid](
        q,
        page_min,
        page_max,
        out,
        h // hkv,
        hkv,
        n_pages,
        d,
        q.stride(0),
        q.stride(1),
        page_min.stride(0),
        page_min.stride(1),
        page_min.stride(2),
        page_max.stride(0),
        page_max.stride(1),
        page_max.stride(2),
        BLOCK_P=block_p,
        BLOCK_G=max(2, triton.next_power_of_2(h // hkv)),
        BLOCK_D=block_d,
    )
    return out


@triton.jit
def _split_decode_fwd(
    Q,
    K,
    V,
    PAGES,
    LENS,
    ACC,
    M,
    LSUM,
    qk_scale,
    T,
    G,
    HKV,
    NPAGES,
    PAGES_PER_SPLIT,
    N_SPLITS,
    HEAD_D,
    sqb,
    sqh,
    skb,
    skh,
    skl,
    svb,
    svh,
    svl,
    PAGE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PAGED: tl.constexpr,
    RAGGED: tl.constexpr,
):
    bk = tl.program_id(0)
    split = tl.program_id(1)
    b = bk // HKV
    kvh = bk % HKV
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    g_ok = offs_g < G
    d_ok = offs_d < HEAD_D
    heads = kvh * G + offs_g
    q = tl.load(
        Q + b * sqb + heads[:, None] * sqh + offs_d[None, :],
        mask=g_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    PAGES_PER_TILE = BLOCK_N // PAGE
    offs_n = tl.arange(0, BLOCK_N)
    slot = offs_n // PAGE
    within = offs_n % PAGE
    m_i = tl.full([BLOCK_G], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    first = split * PAGES_PER_SPLIT
    last = tl.minimum(first + PAGES_PER_SPLIT, NPAGES)
    t_len = T
    if RAGGED:
        # each head reads its own kept tokens; splits past them do no work
        t_len = tl.load(LENS + bk)
        last = tl.minimum(last, (t_len + PAGE - 1) // PAGE)
    page_base = PAGES + bk * NPAGES
    k_base = K + b * skb + kvh * skh
    v_base = V + b * svb + kvh * svh
    for p0 in range(first, last, PAGES_PER_TILE):
        p_ok = (p0 + slot) < last
        page = tl.load(page_base + p0 + slot, mask=p_ok, other=0) if PAGED else p0 + slot
        tok = page * PAGE + within
        n_ok = p_ok & (tok < t_len)
        s = tile_scores(q, k_base, tok, n_ok, offs_d, d_ok, skl, qk_scale)
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v_base, tok, n_ok, offs_d, d_ok, svl)
    row = (b * HKV * G + heads) * N_SPLITS + split
    tl.store(ACC + row[:, None] * HEAD_D + offs_d[None, :], acc, mask=g_ok[:, None] & d_ok[None, :])
    tl.store(M + row, m_i, mask=g_ok)
    tl.store(LSUM + row, l_i, mask=g_ok)


@triton.jit
def _combine_splits_fwd(
    ACC,
    M,
    LSUM,
    OUT,
    N_SPLITS,
    HEAD_D,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_D
    m_run = tl.max(tl.full([BLOCK_S], float("-inf"), dtype=tl.float32), 0)
    l_run = tl.sum(tl.zeros([BLOCK_S], dtype=tl.float32), 0)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s0 in range(0, N_SPLITS, BLOCK_S):
        s_ok = (s0 + offs_s) < N_SPLITS
        split = row * N_SPLITS + s0 + offs_s
        m = tl.load(M + split, mask=s_ok, other=float("-inf"))
        lsum = tl.load(LSUM + split, mask=s_ok, other=0.0)
        part = tl.load(
            ACC + split[:, None] * HEAD_D + offs_d[None, :],
            mask=s_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        m_new = tl.maximum(m_run, tl.max(m, 0))
        alpha = tl.math.exp2(m_run - m_new)
        w = tl.math.exp2(m - m_new)
        l_run = l_run * alpha + tl.sum(lsum * w, 0)
        acc = acc * alpha + tl.sum(part * w[:, None], 0)
        m_run = m_new
    out = acc / l_run
    tl.store(OUT + row * HEAD_D + offs_d, out.to(OUT.dtype.element_ty), mask=d_ok)


def combine_splits_torch(acc: torch.Tensor, m: torch.Tensor, lsum: torch.Tensor) -> torch.Tensor:
    """PyTorch oracle of the combine: (B, H, S, D), (B, H, S) base-2 partials -> (B, H, D)."""
    top = m.amax(-1, keepdim=True)
    w = torch.exp2(m - top)
    return (acc * w[..., None]).sum(2) / (lsum * w).sum(-1, keepdim=True)


def combine_splits(
    acc: torch.Tensor, m: torch.Tensor, lsum: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Combine split partials (B, H, S, D), (B, H, S) into (B, H, 1, D) of `dtype`, in one launch."""
    b, h, n_splits, d = acc.shape
    out = torch.empty(b, h, 1, d, dtype=dtype, device=acc.device)
    _combine_splits_fwd[(b * h,)](
        acc,
        m,
        lsum,
        out,
        n_splits,
        d,
        BLOCK_S=max(2, min(32, triton.next_power_of_2(n_splits))),
        BLOCK_D=max(16, triton.next_power_of_2(d)),
    )
    return out


def _split_decode(
    q_step: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pages: torch.Tensor | None,
    lengths: torch.Tensor | None,
    page_size: int,
    length: int,
    n_pages: int,
    pages_per_split: int,
) -> torch.Tensor:
    b, h, _, d = q_step.shape
    hkv = k.shape[1]
    n_splits = max(1, math.ceil(n_pages / pages_per_split))
    per_tile = max(1, 64 // page_size)
    q = q_step.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    v = v if v.stride(-1) == 1 else v.contiguous()
    acc = torch.empty(b, h, n_splits, d, dtype=torch.float32, device=q.device)
    m = torch.empty(b, h, n_splits, dtype=torch.float32, device=q.device)
    lsum = torch.empty_like(m)
    # the flag that is off makes its pointer unused: any tensor stands in
    pages_arg = pages if pages is not None else m
    lens_arg = lengths if lengths is not None else m
    _split_decode_fwd[(b * hkv, n_splits)](
        q,
        k,
        v,
        pages_arg,
        lens_arg,
        acc,
        m,
        lsum,
        1.0 / math.sqrt(d) * LOG2E,
        length,
        h // hkv,
        hkv,
        n_pages,
        pages_per_split,
        n_splits,
        d,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        PAGE=page_size,
        BLOCK_N=page_size * per_tile,
        BLOCK_G=max(16, triton.next_power_of_2(h // hkv)),
        BLOCK_D=max(16, triton.next_power_of_2(d)),
        PAGED=pages is not None,
        RAGGED=lengths is not None,
    )
    return combine_splits(acc, m, lsum, q_step.dtype)


def paged_decode_attention(
    q_step: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pages: torch.Tensor,
    page_size: int,
    length: int,
    pages_per_split: int | None = None,
) -> torch.Tensor:
    """Attention of q_step (B, H, 1, D) over the pages (B, H_kv, P) of a (B, H_kv, T, D) cache."""
    if page_size & (page_size - 1):
        raise KernelInputError(
            f"quest: the Triton decode kernel needs a power-of-two page_size, got {page_size}"
        )
    b, hkv, n_pages = pages.shape
    if pages_per_split is None:
        pages_per_split = max(8, math.ceil(n_pages / max(1, TARGET_PROGRAMS // (b * hkv))))
    pages = pages.to(torch.int32).contiguous()
    return _split_decode(q_step, k, v, pages, None, page_size, length, n_pages, pages_per_split)


# Tokens one tile of the ragged kernel reads (one "page" of contiguous tokens).
RAGGED_TILE = 64


def ragged_decode_attention(
    q_step: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    max_length: int,
    tiles_per_split: int | None = None,
) -> torch.Tensor:
    """Attention of q_step (B, H, 1, D) over the first lengths[b, h] keys of each KV head of a
    (B, H_kv, T, D) cache; `max_length` is lengths.max() (known on the host, so no sync)."""
    b, hkv = lengths.shape
    n_tiles = math.ceil(max_length / RAGGED_TILE)
    if tiles_per_split is None:
        tiles_per_split = max(2, math.ceil(n_tiles / max(1, TARGET_PROGRAMS // (b * hkv))))
    lengths = lengths.to(torch.int32).contiguous()
    return _split_decode(
        q_step, k, v, None, lengths, RAGGED_TILE, max_length, n_tiles, tiles_per_split
    )
