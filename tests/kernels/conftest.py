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
