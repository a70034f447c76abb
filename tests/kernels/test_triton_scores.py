"""The Triton window scores against the PyTorch reference (CPU interpreter here, GPU when
present), at shapes that do not fit the kernels' blocks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from scalelaw.kernels.triton_scores import window_scores_triton  # noqa: E402
from scalelaw.kernels.vertical_slash import window_scores, window_scores_torch  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


@pytest.mark.parametrize(
    ("b", "h", "hkv", "length", "d", "window", "dtype"),
    [
        (1, 4, 2, 150, 32, 64, torch.float32),  # L not a multiple of the blocks
        (2, 7, 1, 200, 16, 40, torch.float32),  # GQA 7:1, batch 2, a window of 40 rows
        (1, 2, 2, 50, 32, 64, torch.float32),  # window longer than the sequence
        (1, 4, 1, 130, 64, 70, torch.float16),
    ],
)
def test_triton_window_scores_match_the_reference(qkv, b, h, hkv, length, d, window, dtype):
    q, k, _ = qkv(b=b, h=h, hkv=hkv, length=length, d=d, dtype=dtype, seed=length)
    q, k = q.to(DEVICE), k.to(DEVICE)
    want_cols, want_diags = window_scores_torch(q, k, window)
    cols, diags = window_scores_triton(q, k, window)
    assert cols.shape == diags.shape == (b, h, length) and cols.dtype == torch.float32
    tol = TOL[dtype]
    torch.testing.assert_close(cols, want_cols, atol=tol, rtol=tol)
    torch.testing.assert_close(diags, want_diags, atol=tol, rtol=tol)
    # each query row's probabilities sum to one: so do the column and the diagonal sums
    rows = torch.full((b, h), float(min(window, length)), device=DEVICE)
    torch.testing.assert_close(cols.sum(-1), rows, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(diags.sum(-1), rows, atol=1e-3, rtol=1e-4)


def test_triton_window_scores_read_strided_inputs(qkv):
    # q and k as a (B, L, H, D) layout transposed: the kernels take the strides as given
    q, k, _ = qkv(b=1, h=4, hkv=2, length=96, d=32)
    q = q.transpose(1, 2).contiguous().transpose(1, 2).to(DEVICE)
    k = k.transpose(1, 2).contiguous().transpose(1, 2).to(DEVICE)
    assert not q.is_contiguous()
    want = window_scores_torch(q, k, 48)
    got = window_scores_triton(q, k, 48)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_window_scores_take_the_kernel_on_cuda_only(qkv, monkeypatch):
    import scalelaw.kernels.triton_scores as ts

    calls = []
    monkeypatch.setattr(ts, "window_scores_triton", lambda *a: calls.append(a) or (None, None))
    q, k, _ = qkv(length=64)
    window_scores(q, k, 16)
    assert calls == []  # CPU tensors: the PyTorch path
