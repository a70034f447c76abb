"""The real SmolLM2-135M-Instruct, offline from its PyPI package: it finds a needle at C = 1."""

from __future__ import annotations

import pytest
import torch

from scalelaw.measure.generate import greedy
from scalelaw.measure.sparse import sparse_attention
from scalelaw.measure.tasks import get_task


def test_smollm2_loads_with_identity(smollm2) -> None:  # type: ignore[no-untyped-def]
    assert smollm2.params == 134_515_008
    assert smollm2.family == "smollm2"
    assert len(smollm2.file_hash) == 64
    assert smollm2.render("hi").startswith("<|im_start|>system")


def test_smollm2_answers_a_short_needle_task_at_c1(smollm2) -> None:  # type: ignore[no-untyped-def]
    task = get_task("niah-multikey", needles=1, queries=1)
    sample = task.generate(smollm2.count_tokens, 256, seed=0, index=0)
    assert 0.95 * 256 <= sample.n_tokens <= 256
    from scalelaw.kernels import get_method

    ids = smollm2.encode(sample.prompt)
    with sparse_attention(get_method("block-sparse"), 1.0):
        gen = greedy(smollm2.model, ids, 24, smollm2.eos_ids)
    text = smollm2.tokenizer.decode(gen.tokens, skip_special_tokens=True)
    assert task.score(text, sample) == 1.0, text
    # the scalelaw attention path at C = 1 is exactly the model's own SDPA
    smollm2.model.set_attn_implementation("sdpa")
    try:
        plain = greedy(smollm2.model, ids, 24, smollm2.eos_ids)
    finally:
        smollm2.model.set_attn_implementation("scalelaw")
    assert plain.tokens == gen.tokens


def test_sparse_prefill_changes_logits_and_reports_compression(smollm2) -> None:  # type: ignore[no-untyped-def]
    from scalelaw.kernels import get_method

    task = get_task("niah-multikey", needles=1, queries=1)
    ids = torch.tensor([smollm2.encode(task.generate(smollm2.count_tokens, 256, 0, 1).prompt)])
    with torch.inference_mode():
        dense = smollm2.model(ids, logits_to_keep=1).logits
        with sparse_attention(get_method("block-sparse"), 4.0) as ctx:
            sparse = smollm2.model(ids, logits_to_keep=1).logits
    assert ctx is not None and len(ctx.achieved) == smollm2.model.config.num_hidden_layers
    assert ctx.achieved_compression() == pytest.approx(4.0, rel=0.15)
    assert not torch.allclose(dense, sparse, atol=1e-3)
