"""Kernel tests run Triton under its CPU interpreter when no CUDA device is present."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

if not torch.cuda.is_available():
    # Must be set before any Triton kernel is first launched.
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def qkv():
    """Random fp32 q (B, H, L, D) and k, v (B, H_kv, L, D) with a fixed seed."""

    def make(b=1, h=4, hkv=2, length=256, d=32, dtype=torch.float32, seed=0):
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(b, h, length, d, generator=g).to(dtype)
        k = torch.randn(b, hkv, length, d, generator=g).to(dtype)
        v = torch.randn(b, hkv, length, d, generator=g).to(dtype)
        return q, k, v

    return make


def minference_index(offsets, cols, length, bs):
    """MInference's vertical-slash index, walked query block by query block in plain Python.

    Returns per query block (tile starts, single columns): diagonal o < e = (m + 1) bs becomes
    the key range [s - bs, s), s = max(e - o, bs); ranges are walked left to right, one that
    starts inside the tiles so far extends them by a tile, else it opens a new run; a column
    counts where no run covers it.
    """
    offs = sorted(set(offsets), reverse=True)
    cols = sorted(set(cols))
    out = []
    for m in range(-(-length // bs)):
        e = (m + 1) * bs
        ss = [max(e - o, bs) for o in offs if o < e]
        runs = []
        if ss:
            rs, re = ss[0] - bs, ss[0]
            for s in ss[1:]:
                if s <= re:
                    continue
                if s <= re + bs:
                    re += bs
                else:
                    runs.append((rs, re))
                    rs, re = s - bs, s
            runs.append((rs, re))
        tiles = [t for rs, re in runs for t in range(rs, re, bs)]
        single = [v for v in cols if v < min(e, length) and not any(a <= v < z for a, z in runs)]
        out.append((tiles, single))
    return out


def index_mask(blocks, length, bs):
    """(L, L) bool: the keys each query row computes under a `minference_index` result."""
    mask = torch.zeros(length, length, dtype=torch.bool)
    for m, (tiles, single) in enumerate(blocks):
        rows = slice(m * bs, min(length, (m + 1) * bs))
        for t in tiles:
            mask[rows, t : min(length, t + bs)] = True
        for c in single:
            mask[rows, c] = True
    return mask


@pytest.fixture
def minference():
    return minference_index, index_mask
