"""The registry contract and clear errors on bad input."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from scalelaw.kernels import KernelInputError, get_method, list_methods  # noqa: E402


def test_names_and_phases():
    assert list_methods("prefill") == ["dense", "block-sparse", "vertical-slash", "flexprefill"]
    assert list_methods("decode") == ["dense", "quest", "snapkv", "ada-snapkv"]
    assert get_method("dense").phase == "prefill"
    assert get_method("dense", phase="decode").phase == "decode"
    assert get_method("quest").phase == "decode"
    with pytest.raises(KernelInputError, match=r"quest.*no 'prefill' phase"):
        get_method("quest", phase="prefill")
    with pytest.raises(KernelInputError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(KernelInputError, match="phase must be one of"):
        list_methods("train")


def test_knobs_defaults_and_overrides():
    m = get_method("block-sparse")
    assert m.knobs() == {"block_size": 16, "sink_blocks": 1, "local_blocks": 2}
    m64 = get_method("block-sparse", block_size=64)
    assert m64.knobs()["block_size"] == 64
    assert get_method("snapkv").knobs()["kernel_size"] == 21
    assert get_method("ada-snapkv").knobs()["floor_fraction"] == 0.2
    assert get_method("vertical-slash").knobs()["local_diagonals"] == 64
    with pytest.raises(KernelInputError, match="unknown knob 'blocksize'"):
        get_method("block-sparse", blocksize=64)
    with pytest.raises(KernelInputError, match="'block_size' must be >= 1"):
        get_method("block-sparse", block_size=0)
    with pytest.raises(KernelInputError, match="non-negative int"):
        get_method("quest", page_size=2.5)


@pytest.mark.parametrize("bad", [0.5, 0, -3, math.nan, math.inf, "ten"])
def test_bad_compression(qkv, bad):
    q, k, v = qkv(length=32)
    with pytest.raises(KernelInputError, match="block-sparse: compression must be"):
        get_method("block-sparse").prefill(q, k, v, compression=bad)
    with pytest.raises(KernelInputError, match="snapkv: compression must be"):
        get_method("snapkv").prepare_cache(q, k, v, compression=bad)


def test_bad_shapes(qkv):
    q, k, v = qkv(length=32)
    m = get_method("vertical-slash")
    with pytest.raises(KernelInputError, match="k and v shapes differ"):
        m.prefill(q, k, v[:, :, :16])
    with pytest.raises(KernelInputError, match=r"multiple of KV heads \(3\)"):
        kk = torch.randn(1, 3, 32, 32)
        m.prefill(q, kk, kk)
    with pytest.raises(KernelInputError, match="q must have 4 dims"):
        m.prefill(q[0], k, v)
    with pytest.raises(KernelInputError, match="head_dim of q"):
        m.prefill(q[..., :16], k, v)
    with pytest.raises(KernelInputError, match="dtypes differ"):
        m.prefill(q.half(), k, v)
    with pytest.raises(KernelInputError, match="backend must be one of"):
        m.prefill(q, k, v, backend="cuda")


def test_bad_decode_inputs(qkv):
    q, k, v = qkv(length=64)
    quest = get_method("quest")
    state = quest.prepare_cache(q, k, v, compression=2)
    with pytest.raises(KernelInputError, match=r"q_step must have shape \(B, H, 1, D\)"):
        quest.decode(q[:, :, :2], state)
    with pytest.raises(KernelInputError, match="k_new must have shape"):
        state.append(k[:, :1, :1], v[:, :1, :1])
    with pytest.raises(KernelInputError, match="prepared by 'quest'"):
        get_method("snapkv").decode(q[:, :, :1], state)
    with pytest.raises(KernelInputError, match="no prefill call"):
        quest.prefill(q, k, v)
