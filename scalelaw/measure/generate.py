"""Greedy decoding with a KV cache: one prefill forward, then one forward per new token."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel


@dataclass(frozen=True)
class Generation:
    tokens: list[int]
    prefill_s: float
    decode_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def greedy(
    model: PreTrainedModel, input_ids: list[int], max_new_tokens: int, eos_ids: frozenset[int]
) -> Generation:
    """Generate up to `max_new_tokens` tokens greedily; stops after the first EOS token."""
    with warnings.catch_warnings():
        # recent transformers rename the forward's `past_key_values` to `cache` and warn (a
        # FutureWarning, again for every run); the old name still works, early 5.x releases
        # know no other, and the user can do nothing about it
        warnings.filterwarnings(
            "ignore", message=r"`past_key_values` is deprecated", category=FutureWarning
        )
        return _greedy(model, input_ids, max_new_tokens, eos_ids)


@torch.inference_mode()
def _greedy(
    model: PreTrainedModel, input_ids: list[int], max_new_tokens: int, eos_ids: frozenset[int]
) -> Generation:
    device = next(model.parameters()).device
    ids = torch.tensor([input_ids], device=device)
    cache = DynamicCache(config=model.config)
    t0 = time.perf_counter()
    # logits of the last position only: the full (L, vocab) matrix would dominate memory
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    token = int(out.logits[0, -1].argmax())
    _sync(device)
    t1 = time.perf_counter()
    tokens = [token]
    while len(tokens) < max_new_tokens and token not in eos_ids:
        step = torch.tensor([[token]], device=device)
        out = model(input_ids=step, past_key_values=cache, use_cache=True)
        token = int(out.logits[0, -1].argmax())
        tokens.append(token)
    _sync(device)
    t2 = time.perf_counter()
    return Generation(tokens, t1 - t0, t2 - t1)
