"""Sparse prefill in PyTorch that does work in proportion to the kept entries (the CPU path).

`masked_causal` in `reference.py` is the plain oracle: it scores every causal entry and masks.
These functions compute only what a pattern keeps: gathered key blocks for block patterns, and
for vertical-slash the kept columns as one small matmul plus one shifted row-wise product per
kept diagonal (a diagonal i - j = o pairs q[o:] with k[:L - o]: contiguous slices, no copies).
"""

from __future__ import annotations

import math

import torch

from scalelaw.kernels.reference import CHUNK_ELEMENTS


def block_sparse_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    counts: torch.Tensor,
    bs: int,
) -> torch.Tensor:
    """Causal attention over key blocks `index[b, h, qb, :counts]`, gathering only those."""
    b, h, length, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    nb = index.shape[2]
    kmax = index.shape[3]
    pad = nb * bs - length
    scale = 1.0 / math.sqrt(d)

    def blocks(x: torch.Tensor) -> torch.Tensor:
        if pad:
            x = torch.cat([x, x.new_zeros(*x.shape[:2], pad, d)], dim=2)
        return x.reshape(x.shape[0], x.shape[1], nb, bs, d)

    qb_all, kb_all, vb_all = blocks(q), blocks(k), blocks(v)
    bi = torch.arange(b, device=q.device)[:, None, None, None]
    hi = (torch.arange(h, device=q.device) // g)[None, :, None, None]
    out = torch.empty(b, h, nb, bs, d, dtype=q.dtype, device=q.device)
    rows = max(1, CHUNK_ELEMENTS // max(1, b * h * kmax * bs * max(bs, d)))
    t = torch.arange(bs, device=q.device)
    slot = torch.arange(kmax, device=q.device)
    for s in range(0, nb, rows):
        e = min(nb, s + rows)
        idx = index[:, :, s:e].long()
        kk = kb_all[bi, hi, idx].float()  # (B, H, n, kmax, bs, D)
        vv = vb_all[bi, hi, idx].float()
        qq = qb_all[:, :, s:e].float()
        scores = torch.einsum("bhnsd,bhnktd->bhnskt", qq, kk) * scale
        qpos = (torch.arange(s, e, device=q.device)[:, None] * bs + t)[:, :, None, None]
        kpos = idx[:, :, :, None, :, None] * bs + t
        ok = (kpos <= qpos) & (kpos < length)
        ok = ok & (slot < counts[:, :, s:e, None])[:, :, :, None, :, None]
        scores = scores.masked_fill(~ok, float("-inf")).flatten(-2)
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # padded rows have no keys
        o = torch.einsum("bhnsm,bhnmd->bhnsd", probs, vv.flatten(3, 4))
        out[:, :, s:e] = o.to(q.dtype)
    return out.reshape(b, h, nb * bs, d)[:, :, :length]


def vertical_slash_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    col_keep: torch.Tensor,
    diag_keep: torch.Tensor,
    heads: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention over kept columns and diagonals ((B, H, L) bool), head by head.

    `heads` (B, H) bool limits the work to some heads; the others are left as zeros.
    """
    b, h, length, d = q.shape
    g = h // k.shape[1]
    scale = 1.0 / math.sqrt(d)
    out = torch.zeros_like(q)
    pos = torch.arange(length, device=q.device)
    for bb in range(b):
        for hh in range(h):
            if heads is not None and not bool(heads[bb, hh]):
                continue
            qh = q[bb, hh].float()
            kh = k[bb, hh // g].float()
            vh = v[bb, hh // g].float()
            dk = diag_keep[bb, hh]
            cols = torch.nonzero(col_keep[bb, hh]).flatten()
            offs = torch.nonzero(dk).flatten().tolist()
            # Columns: scored unless the entry lies on a kept diagonal (counted there).
            sc = (qh @ kh[cols].T) * scale
            rel = pos[:, None] - cols[None, :]
            ok = (rel >= 0) & ~dk[rel.clamp(min=0)]
            sc = sc.masked_fill(~ok, float("-inf"))
            # Diagonal logits kept as (n, L) so each diagonal is one contiguous row.
            sd = torch.full((len(offs), length), float("-inf"), device=q.device)
            for j, o in enumerate(offs):
                sd[j, o:] = (qh[o:] * kh[: length - o]).sum(-1) * scale
            top = torch.maximum(sc.amax(-1), sd.amax(0))
            pc = torch.exp(sc - top[:, None])
            pd = torch.exp(sd - top[None, :])
            acc = pc @ vh[cols]
            for j, o in enumerate(offs):
                acc[o:] += pd[j, o:, None] * vh[: length - o]
            denom = pc.sum(-1) + pd.sum(0)
            out[bb, hh] = (acc / denom[:, None]).to(q.dtype)
    return out
