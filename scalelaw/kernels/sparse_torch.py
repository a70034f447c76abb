"""Sparse prefill in PyTorch that does work in proportion to the cells a tile list computes.

`masked_causal` in `reference.py` is the plain oracle: it scores every causal entry and masks.
`tile_attention_torch` takes the same tile and column tensors as the Triton kernel (the fields
of a `TileIndex`) and computes the same cells: for each query block it gathers the keys of its tiles and single columns and runs one
masked softmax over them, a chunk of query blocks at a time.
"""

from __future__ import annotations

import math

import torch

from scalelaw.kernels.reference import CHUNK_ELEMENTS


def tile_attention_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    cols: torch.Tensor,
    col_counts: torch.Tensor,
    block: int,
) -> torch.Tensor:
    """Causal attention of every query block over its tiles and single columns only (the
    arguments of `triton_prefill.tile_attention`)."""
    b, h, length, d = q.shape
    g = h // k.shape[1]
    bs = block
    nb = starts.shape[2]
    kt, kc = starts.shape[-1], cols.shape[-1]
    width = kt * bs + kc
    scale = 1.0 / math.sqrt(d)
    pad = nb * bs - length
    qb_all = q
    if pad:
        qb_all = torch.cat([q, q.new_zeros(b, h, pad, d)], dim=2)
    qb_all = qb_all.reshape(b, h, nb, bs, d)
    bi = torch.arange(b, device=q.device)[:, None, None, None]
    hi = (torch.arange(h, device=q.device) // g)[None, :, None, None]
    out = torch.empty(b, h, nb, bs, d, dtype=q.dtype, device=q.device)
    rows = max(1, CHUNK_ELEMENTS // max(1, b * h * max(width, 1) * max(bs, d)))
    t = torch.arange(bs, device=q.device)
    tile_slot = torch.arange(kt, device=q.device)
    col_slot = torch.arange(kc, device=q.device)
    for s in range(0, nb, rows):
        e = min(nb, s + rows)
        st = starts[:, :, s:e].long()
        tile_ok = tile_slot < counts[:, :, s:e, None]
        kpos_t = (st[..., None] + t).flatten(-2)  # (B, H, n, kt * bs)
        ok_t = tile_ok.repeat_interleave(bs, dim=-1)
        cl = cols[:, :, s:e].long()
        ok_c = col_slot < col_counts[:, :, s:e, None]
        kpos = torch.cat([kpos_t, cl], dim=-1)
        ok = torch.cat([ok_t, ok_c], dim=-1) & (kpos < length)
        idx = torch.where(ok, kpos, 0)
        kk = k[bi, hi, idx].float()  # (B, H, n, width, D)
        vv = v[bi, hi, idx].float()
        qq = qb_all[:, :, s:e].float()
        scores = torch.einsum("bhnsd,bhnmd->bhnsm", qq, kk) * scale
        qpos = (torch.arange(s, e, device=q.device)[:, None] * bs + t)[:, :, None]
        allowed = ok[:, :, :, None, :] & (kpos[:, :, :, None, :] <= qpos)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # padded rows have no keys
        o = torch.einsum("bhnsm,bhnmd->bhnsd", probs, vv)
        out[:, :, s:e] = o.to(q.dtype)
    return out.reshape(b, h, nb * bs, d)[:, :, :length]
