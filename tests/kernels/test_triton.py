"""Triton kernels against the PyTorch references (CPU interpreter here, GPU when present).

Interpreter runs are slow, so shapes are tiny and each case launches a kernel once or twice.
bf16 is only tested on a GPU: bf16 `tl.dot` is wrong under the interpreter.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from scalelaw.kernels import get_method  # noqa: E402
from scalelaw.kernels.base import resolve_backend  # noqa: E402
from scalelaw.kernels.flexprefill import js_distance  # noqa: E402

TOL = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 2e-2}
VS = {"window": 32, "local_diagonals": 4, "block_size": 16}


def both(method, q, k, v, c, **knobs):
    want = method.prefill(q, k, v, compression=c, backend="torch", **knobs)
    got = method.prefill(q, k, v, compression=c, backend="triton", **knobs)
    assert got.achieved_compression == pytest.approx(want.achieved_compression)
    tol = TOL[q.dtype]
    torch.testing.assert_close(got.out.float(), want.out.float(), atol=tol, rtol=tol)
    return got


def test_auto_backend_is_torch_on_cpu():
    assert resolve_backend("x", "auto", torch.device("cpu")) == "torch"
    assert resolve_backend("x", "auto", torch.device("cuda")) == "triton"


def test_auto_backend_falls_back_for_knobs_triton_cannot_run():
    from scalelaw.kernels import KernelInputError

    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    for name in ("block-sparse", "vertical-slash", "flexprefill"):
        kn = get_method(name, block_size=8).knobs()
        assert resolve_backend(name, "auto", cuda, kn) == "torch"
        assert resolve_backend(name, "auto", cuda, {**kn, "block_size": 64}) == "triton"
        with pytest.raises(KernelInputError, match="power of two >= 16, got 8"):
            resolve_backend(name, "triton", cuda, kn)
    quest = get_method("quest", page_size=12).knobs()
    assert resolve_backend("quest", "auto", cuda, quest) == "torch"


@pytest.mark.parametrize(("dtype", "c", "d"), [(torch.float32, 3.0, 32), (torch.float16, 1.0, 64)])
def test_block_sparse_kernel(qkv, dtype, c, d):
    q, k, v = qkv(h=4, hkv=2, length=150, d=d, dtype=dtype)
    res = both(get_method("block-sparse", block_size=16), q, k, v, c)
    if c == 1.0:
        assert res.achieved_compression == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_vertical_slash_kernel(qkv, dtype):
    q, k, v = qkv(h=2, hkv=1, length=160, d=32, dtype=dtype, seed=2)
    both(get_method("vertical-slash", **VS), q, k, v, 2.0)


def test_vertical_slash_counts_the_tiles_the_kernel_touches(qkv):
    from scalelaw.kernels.triton_prefill import tile_attention

    # Diagonals far apart, each costing its own tile per query block (the case where walking
    # every block diagonal a kept diagonal crosses computed more than dense while reporting C).
    q, k, v = qkv(h=2, hkv=1, length=192, d=32, seed=3)
    m = get_method("vertical-slash", **VS)
    pat = m.pattern(q, k, 1.5)
    touched = torch.zeros(1, 2, pat.index.n_blocks, 2, dtype=torch.int32)
    ix = pat.index
    out = tile_attention(q, k, v, ix.starts, ix.counts, ix.cols, ix.col_counts, ix.block, touched)
    cells = 16 * (16 * touched[..., 0].sum() + touched[..., 1].sum()).item()
    res = m.prefill(q, k, v, compression=1.5, backend="triton")
    torch.testing.assert_close(res.out, out)
    assert res.achieved_compression == pytest.approx(max(1.0, 192 * 193 / 2 * 2 / cells))
    assert cells == pytest.approx(float(pat.entries.sum()))


def test_flexprefill_kernel_with_mixed_heads(qkv):
    q, k, v = qkv(h=4, hkv=2, length=128, d=32, seed=4)
    js = js_distance(q, k, 32, 16)
    tau = float(js.flatten().sort().values[1:3].mean())  # two heads below, two above
    m = get_method("flexprefill", **VS, min_budget=8, tau=tau)
    res = both(m, q, k, v, 2.0)
    assert res.stats["block_heads"] == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    ("b", "h", "hkv", "length"),
    [
        (1, 6, 2, 250),  # 257 after the append
        (2, 14, 2, 299),  # batch 2, GQA 7:1, 306 after the append
    ],
)
def test_quest_kernel_with_splits(qkv, dtype, b, h, hkv, length):
    from scalelaw.kernels.quest import select_pages
    from scalelaw.kernels.triton_decode import paged_decode_attention

    q, k, v = qkv(b=b, h=h, hkv=hkv, length=length, d=32, dtype=dtype)
    m = get_method("quest")
    state = m.prepare_cache(q, k, v, compression=3.0)
    state.append(k[:, :, :7], v[:, :, :7])  # last page partly filled
    assert state.length % 16 and state.n_pages > state.budget + 1
    qs = q[:, :, -1:]
    want = m.decode(qs, state, backend="torch")
    got = m.decode(qs, state, backend="triton")
    tol = TOL[dtype]
    torch.testing.assert_close(got.out.float(), want.out.float(), atol=tol, rtol=tol)
    split = paged_decode_attention(
        qs, state.k, state.v, select_pages(qs, state), 16, state.length, pages_per_split=2
    )
    torch.testing.assert_close(split.float(), want.out.float(), atol=tol, rtol=tol)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize(
    ("name", "knobs"),
    [
        ("block-sparse", {"block_size": 64}),
        ("vertical-slash", {"block_size": 64}),
        ("flexprefill", {"block_size": 64}),
    ],
)
def test_prefill_kernels_on_gpu(name, knobs, dtype, d):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 8, 4096, d, device="cuda", generator=g, dtype=dtype)
    k = torch.randn(1, 2, 4096, d, device="cuda", generator=g, dtype=dtype)
    v = torch.randn(1, 2, 4096, d, device="cuda", generator=g, dtype=dtype)
    both(get_method(name, **knobs), q, k, v, 10.0)
    both(get_method(name, **knobs), q, k, v, 1.0)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_quest_kernel_on_gpu(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 28, 1, 128, device="cuda", generator=g, dtype=dtype)
    k = torch.randn(1, 4, 32768, 128, device="cuda", generator=g, dtype=dtype)
    v = torch.randn(1, 4, 32768, 128, device="cuda", generator=g, dtype=dtype)
    m = get_method("quest")
    state = m.prepare_cache(q, k, v, compression=10.0)
    want = m.decode(q, state, backend="torch").out.float()
    got = m.decode(q, state, backend="triton").out.float()
    torch.testing.assert_close(got, want, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", ["block-sparse", "vertical-slash", "flexprefill"])
def test_prefill_128k_fits_in_memory(name):
    q = torch.randn(1, 28, 131072, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 4, 131072, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    res = get_method(name, block_size=64).prefill(q, k, v, compression=10.0)
    assert torch.isfinite(res.out).all()
    assert res.reached, res.note
