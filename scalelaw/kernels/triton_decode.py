"""Triton paged decode: one query step reads only the selected pages of the full KV cache.

Each program takes the query heads of one GQA group and a slice of the selected page list
(split-K, as flash-decoding does, so a long cache keeps the GPU busy); it loads the keys and
values of those pages straight from the cache, with no gather copy, and writes a partial
softmax (max, sum, weighted values) that a small PyTorch step combines.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from scalelaw.kernels.base import KernelInputError
from scalelaw.kernels.triton_flash import online_softmax_step, tile_scores


@triton.jit
def _paged_decode_fwd(
    Q,
    K,
    V,
    PAGES,
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
    page_base = PAGES + bk * NPAGES
    k_base = K + b * skb + kvh * skh
    v_base = V + b * svb + kvh * svh
    for p0 in range(first, last, PAGES_PER_TILE):
        p_ok = (p0 + slot) < last
        page = tl.load(page_base + p0 + slot, mask=p_ok, other=0)
        tok = page * PAGE + within
        n_ok = p_ok & (tok < T)
        s = tile_scores(q, k_base, tok, n_ok, offs_d, d_ok, skl, qk_scale)
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v_base, tok, n_ok, offs_d, d_ok, svl)
    row = (b * HKV * G + heads) * N_SPLITS + split
    tl.store(ACC + row[:, None] * HEAD_D + offs_d[None, :], acc, mask=g_ok[:, None] & d_ok[None, :])
    tl.store(M + row, m_i, mask=g_ok)
    tl.store(LSUM + row, l_i, mask=g_ok)


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
    b, h, _, d = q_step.shape
    hkv = k.shape[1]
    g = h // hkv
    n_pages = pages.shape[-1]
    if pages_per_split is None:
        # Enough splits to give the GPU a few hundred programs on long caches.
        pages_per_split = max(8, math.ceil(n_pages / max(1, 256 // max(1, b * hkv))))
    n_splits = math.ceil(n_pages / pages_per_split)
    per_tile = max(1, 64 // page_size)
    pages = pages.to(torch.int32).contiguous()
    q = q_step.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    v = v if v.stride(-1) == 1 else v.contiguous()
    acc = torch.empty(b * h * n_splits, d, dtype=torch.float32, device=q.device)
    m = torch.empty(b * h * n_splits, dtype=torch.float32, device=q.device)
    lsum = torch.empty_like(m)
    grid = (b * hkv, n_splits)
    _paged_decode_fwd[grid](
        q,
        k,
        v,
        pages,
        acc,
        m,
        lsum,
        1.0 / math.sqrt(d) * 1.4426950408889634,
        length,
        g,
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
        BLOCK_G=max(16, triton.next_power_of_2(g)),
        BLOCK_D=max(16, triton.next_power_of_2(d)),
    )
    # Combine the splits: base-2 logits, as in the kernel.
    m = m.view(b, h, n_splits)
    lsum = lsum.view(b, h, n_splits)
    acc = acc.view(b, h, n_splits, d)
    top = m.amax(-1, keepdim=True)
    w = torch.exp2(m - top)
    out = (acc * w[..., None]).sum(2) / (lsum * w).sum(-1, keepdim=True)
    return out.unsqueeze(2).to(q_step.dtype)
