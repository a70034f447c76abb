"""PyTorch attention used as the CPU path and as the test oracle.

Sparse prefill patterns are applied query-chunk by query-chunk so that no L x L score matrix
exists at once: each chunk of rows sees a (rows x keys) slice, masked by the method's pattern.
GQA is handled by broadcasting query groups over their KV head, never by copying K and V.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# A keep function gets (row_start, row_end, key_end) and returns a bool tensor broadcastable to
# (B, H, row_end - row_start, key_end): True where the pattern computes the score.
KeepFn = Callable[[int, int, int], torch.Tensor]

# Upper bound on the fp32 score elements of one chunk (B * H * rows * keys), about 256 MB.
CHUNK_ELEMENTS = 1 << 26

# Slot value past every real tile start or column of a tile index (`tiles`, and its Triton build
# in `triton_scores`): sorts last and covers nothing.
FAR = torch.iinfo(torch.int32).max


def dense_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Dense causal attention; queries are the last `L_q` positions of the `L_k` keys."""
    lq, lk = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if lq == lk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    rows = torch.arange(lk - lq, lk, device=q.device)[:, None]
    mask = torch.arange(lk, device=q.device)[None, :] <= rows
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


def chunk_rows(batch: int, heads: int, length: int, multiple: int = 1) -> int:
    rows = max(1, CHUNK_ELEMENTS // max(1, batch * heads * length))
    rows = max(multiple, rows // multiple * multiple)
    return min(rows, max(length, 1))


def masked_causal(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: KeepFn,
    multiple: int = 1,
) -> torch.Tensor:
    """Causal attention restricted to a pattern; every row must keep at least its diagonal."""
    b, h, length, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    scale = 1.0 / math.sqrt(d)
    out = torch.empty_like(q)
    kf = k.float().unsqueeze(2)  # (B, Hkv, 1, L, D)
    vf = v.float().unsqueeze(2)
    rows = chunk_rows(b, h, length, multiple)
    pos = torch.arange(length, device=q.device)
    for s in range(0, length, rows):
        e = min(length, s + rows)
        qc = q[:, :, s:e].float().reshape(b, hkv, g, e - s, d)
        scores = torch.matmul(qc, kf[..., :e, :].transpose(-1, -2)) * scale
        allowed = keep(s, e, e) & (pos[None, :e] <= pos[s:e, None])
        allowed = allowed.expand(b, h, e - s, e).reshape(b, hkv, g, e - s, e)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        oc = torch.matmul(probs, vf[..., :e, :])
        out[:, :, s:e] = oc.reshape(b, h, e - s, d).to(q.dtype)
    return out


def decode_attention(
    q_step: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """One decode step over a (possibly ragged) cache; `valid` (B, H_kv, T) marks real slots."""
    gqa = q_step.shape[1] != k.shape[1]
    mask = None
    if valid is not None:
        g = q_step.shape[1] // k.shape[1]
        mask = valid.repeat_interleave(g, dim=1)[:, :, None, :]
    return F.scaled_dot_product_attention(q_step, k, v, attn_mask=mask, enable_gqa=gqa)


def last_window_probs(q: torch.Tensor, k: torch.Tensor, window: int) -> torch.Tensor:
    """Softmax attention of the last `window` queries over all keys, causal: (B, H, w, L) fp32.

    The queries are the last positions of the sequence (q may hold fewer rows than k has keys).
    """
    b, h, lq, d = q.shape
    length = k.shape[2]
    hkv = k.shape[1]
    g = h // hkv
    w = min(window, lq)
    qw = q[:, :, lq - w :].float().reshape(b, hkv, g, w, d)
    scores = torch.matmul(qw, k.float().unsqueeze(2).transpose(-1, -2)) / math.sqrt(d)
    rows = torch.arange(length - w, length, device=q.device)[:, None]
    future = torch.arange(length, device=q.device)[None, :] > rows
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1).reshape(b, h, w, length)
