"""Sparse attention inside a tiny random model: routing by phase, dense at C = 1, states per layer."""

from __future__ import annotations

import pytest
import torch

from scalelaw.kernels import get_method
from scalelaw.measure.generate import greedy
from scalelaw.measure.models import ModelError, load_model
from scalelaw.measure.sparse import sparse_attention


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2"])
def tiny(request):  # type: ignore[no-untyped-def]
    return load_model(request.param, dtype="float32", device="cpu", seed=0)


def _ids(n: int) -> torch.Tensor:
    return torch.randint(0, 500, (1, n), generator=torch.Generator().manual_seed(n))


def test_c1_and_no_method_are_plain_sdpa(tiny) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(300)
    with torch.inference_mode():
        ours = tiny.model(ids).logits
        with sparse_attention(get_method("block-sparse"), 1.0) as ctx:
            c1 = tiny.model(ids).logits
        tiny.model.set_attn_implementation("sdpa")
        try:
            ref = tiny.model(ids).logits
        finally:
            tiny.model.set_attn_implementation("scalelaw")
    assert ctx is None
    assert torch.equal(ours, ref) and torch.equal(c1, ref)


def test_prefill_method_acts_on_the_prompt_only(tiny) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(320)
    with torch.inference_mode():
        dense = tiny.model(ids).logits
        with sparse_attention(get_method("block-sparse"), 4.0) as ctx:
            sparse = tiny.model(ids).logits
    assert ctx is not None
    assert len(ctx.achieved) == tiny.model.config.num_hidden_layers
    assert ctx.achieved_compression() == pytest.approx(4.0, rel=0.1)
    # the first block is attended densely by every method: its logits agree
    assert torch.allclose(dense[:, :16], sparse[:, :16], atol=1e-5)
    assert not torch.allclose(dense[:, -16:], sparse[:, -16:], atol=1e-4)


@pytest.mark.parametrize("name", ["quest", "snapkv"])
def test_decode_method_builds_state_per_layer_and_reads_less(tiny, name: str) -> None:  # type: ignore[no-untyped-def]
    ids = _ids(400)[0].tolist()
    method = get_method(
        name, **({"window": 32, "kernel_size": 7, "recent_tokens": 8} if name == "snapkv" else {})
    )
    with sparse_attention(method, 8.0) as ctx:
        gen = greedy(tiny.model, ids, 6, frozenset())
    assert ctx is not None
    assert sorted(ctx.states) == list(range(tiny.model.config.num_hidden_layers))
    # one decode call per layer per generated token after the first (which comes from prefill)
    assert len(ctx.achieved) == (len(gen.tokens) - 1) * tiny.model.config.num_hidden_layers
    assert ctx.achieved_compression() > 4.0
    assert all(s.n_appended == len(gen.tokens) - 1 for s in ctx.states.values())


def test_unknown_model_spec() -> None:
    with pytest.raises(ModelError, match="not a short name"):
        load_model("no-such-model")
    with pytest.raises(ModelError, match="GGUF file not found"):
        load_model("missing.gguf")


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_dense_method_through_the_router_reproduces_sdpa(tiny, phase: str) -> None:  # type: ignore[no-untyped-def]
    # the registry's dense method ignores C: routing it through both paths must change nothing
    ids = _ids(260)[0].tolist()
    plain = greedy(tiny.model, ids, 8, frozenset())
    with sparse_attention(get_method("dense", phase=phase), 2.0) as ctx:
        routed = greedy(tiny.model, ids, 8, frozenset())
    assert ctx is not None and ctx.achieved
    assert routed.tokens == plain.tokens


def test_local_model_directory_loads_with_a_content_hash(tiny, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = load_model(str(tmp_path), dtype="float32", device="cpu")
    assert again.params == tiny.params
    assert len(again.file_hash) == 64 and again.source == tmp_path.name
    ids = _ids(64)
    with torch.inference_mode():
        assert torch.allclose(again.model(ids).logits, tiny.model(ids).logits, atol=1e-5)
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text() + " ")
    from scalelaw.measure.models import dir_hash

    assert dir_hash(tmp_path) != again.file_hash


def test_capture_records_one_layers_inputs_and_stops_there(tiny) -> None:  # type: ignore[no-untyped-def]
    from scalelaw.measure.sparse import capture_attention

    ids = _ids(40)
    cfg = tiny.model.config
    d = cfg.hidden_size // cfg.num_attention_heads
    with torch.inference_mode(), capture_attention(1) as cap:
        tiny.model(ids)
        raise AssertionError("the forward goes on past the captured layer")
    assert cap.q is not None and cap.k is not None and cap.v is not None
    assert cap.q.shape == (1, cfg.num_attention_heads, 40, d)
    assert cap.k.shape == cap.v.shape == (1, cfg.num_key_value_heads, 40, d)
    # outside the block the model runs as before
    with torch.inference_mode():
        assert tiny.model(ids).logits.shape[1] == 40
