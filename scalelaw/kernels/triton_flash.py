"""The flash-attention steps the Triton kernels share: score a tile of keys, fold it into a
running softmax (max `m_i`, sum `l_i`, weighted values `acc`), with scores in log2 units."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def tile_dot(q, k_base, rows, rows_ok, offs_d, d_ok, stride_l):
    """Raw products (M, N) of the queries `q` (M, D) with the keys at positions `rows` (N); for
    callers that scaled `q` already."""
    kt = tl.load(
        k_base + rows[None, :] * stride_l + offs_d[:, None],
        mask=rows_ok[None, :] & d_ok[:, None],
        other=0.0,
    )
    return tl.dot(q, kt)


@triton.jit
def tile_scores(q, k_base, rows, rows_ok, offs_d, d_ok, stride_l, qk_scale):
    """Scores (M, N) of the queries `q` (M, D) against the keys at positions `rows` (N)."""
    return tile_dot(q, k_base, rows, rows_ok, offs_d, d_ok, stride_l) * qk_scale


@triton.jit
def online_softmax_step(s, m_i, l_i, acc, v_base, rows, rows_ok, offs_d, d_ok, stride_l):
    """Fold scores `s` (-inf where masked) of the keys at `rows` into (m_i, l_i, acc)."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    vt = tl.load(
        v_base + rows[:, None] * stride_l + offs_d[None, :],
        mask=rows_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt)
    return m_new, l_i, acc
