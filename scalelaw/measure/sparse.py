"""Sparse attention inside Hugging Face models.

One attention function is registered with transformers' `AttentionInterface` under the key
`scalelaw`; models loaded by `scalelaw.measure.models` use it. Outside a `sparse_attention(...)`
or `combined_attention(...)` block it is plain SDPA. Inside one, it routes by phase, with at most
one method per phase:

- a prefill method replaces the attention of the prompt (q_len > 1) by `method.prefill(q, k, v)`;
- a decode method builds its state from the prompt's q, k, v per layer (`prepare_cache`: snapkv
  evicts here, quest builds page metadata), and then answers every generated token with
  `method.decode(q, state)` after appending the new key and value.

With no prefill method the prompt is dense; with no decode method the generated tokens are. A
combined run has both: the decode method's state is built from the same q, k, v the prefill
method attends over, so layers after the first see what the sparse prefill made of the prompt.

The Hugging Face KV cache keeps every key and value; what a decode method reads is decided by its
own state, so eviction and page selection act exactly where they act in a serving system.

`capture_attention(layer)` records the q, k, v one layer's prompt attention receives (what a
prefill method would be given) and stops the forward there; the attention benchmark takes its
model inputs from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from scalelaw.kernels.base import SparseMethod
from scalelaw.kernels.specs import is_dense

ATTN_IMPLEMENTATION = "scalelaw"


@dataclass
class SparseContext:
    """The active method of one generation and what it achieved."""

    method: SparseMethod
    compression: float
    params: dict[str, Any] = field(default_factory=dict)
    states: dict[int, Any] = field(default_factory=dict)
    achieved: list[float] = field(default_factory=list)
    study: list[float] = field(default_factory=list)  # the same calls, C as the study counts it
    judged_by_study: bool = False  # labels judged on the study's count (block-sparse's blocks)

    @property
    def phase(self) -> str:
        return str(self.method.phase)

    def achieved_compression(self) -> float:
        """Mean compression over every layer call that used the method (1.0 if none did)."""
        return float(sum(self.achieved) / len(self.achieved)) if self.achieved else 1.0

    def study_compression(self) -> float:
        """Mean over the same calls of the C as the reference study counts it (block pairs,
        prompt over budget); the token count for methods whose count is the study's."""
        return float(sum(self.study) / len(self.study)) if self.study else 1.0


@dataclass
class Routing:
    """The method of each phase for one generation; None leaves that phase dense."""

    prefill: SparseContext | None = None
    decode: SparseContext | None = None


_ACTIVE: Routing | None = None


@dataclass
class Capture:
    """The q (B, H, L, D), k and v (B, H_kv, L, D) of one layer's prompt attention, as a prefill
    method receives them (after rotary embeddings, q scaled to the 1/sqrt(d) convention)."""

    layer: int
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None


class _Captured(Exception):
    """Ends a forward once the captured layer has been seen: later layers are not needed."""


_CAPTURE: Capture | None = None


@contextmanager
def capture_attention(layer: int) -> Iterator[Capture]:
    """Record the prompt attention inputs of `layer` in the forward run inside this block.

    The forward stops at that layer (the block's statements after it are skipped), so capturing
    an early layer costs only the layers before it.
    """
    global _CAPTURE
    cap = Capture(layer)
    previous, _CAPTURE = _CAPTURE, cap
    try:
        yield cap
    except _Captured:
        pass
    finally:
        _CAPTURE = previous


@contextmanager
def _routed(route: Routing) -> Iterator[Routing]:
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, route
    try:
        yield route
    finally:
        _ACTIVE = previous


def _context(
    method: SparseMethod | None, compression: float, params: dict[str, Any] | None
) -> SparseContext | None:
    if method is None or is_dense(compression):
        return None
    return SparseContext(method, float(compression), dict(params or {}))


@contextmanager
def sparse_attention(
    method: SparseMethod | None, compression: float, params: dict[str, Any] | None = None
) -> Iterator[SparseContext | None]:
    """Route the attention of every `scalelaw` model through `method` inside this block.

    The method acts in its own phase. `method=None` or `compression == 1` leave attention dense.
    """
    ctx = _context(method, compression, params)
    if ctx is None:
        yield None
        return
    with _routed(Routing(**{ctx.phase: ctx})):
        yield ctx


@contextmanager
def combined_attention(
    prefill: SparseMethod | None,
    prefill_compression: float,
    decode: SparseMethod | None,
    decode_compression: float,
) -> Iterator[Routing]:
    """`prefill` on the prompt and `decode` on the generated tokens, each at its own ratio.

    A method that is None or at C = 1 leaves its phase dense; each slot takes only a method of
    that phase.
    """
    route = Routing(
        _context(prefill, prefill_compression, None), _context(decode, decode_compression, None)
    )
    for slot, ctx in (("prefill", route.prefill), ("decode", route.decode)):
        if ctx is not None and ctx.phase != slot:
            raise ValueError(f"the {slot} slot got a {ctx.phase} method")
    with _routed(route):
        yield route


def _prescale(query: torch.Tensor, scaling: float | None) -> torch.Tensor:
    # the methods use the standard 1/sqrt(d) scale; fold any other model scale into q
    if scaling is None:
        return query
    d = query.shape[-1]
    ratio = scaling * math.sqrt(d)
    return query if abs(ratio - 1.0) < 1e-6 else query * ratio


def _output(ctx: SparseContext, result: Any) -> tuple[torch.Tensor, None]:
    """A method's result in transformers' layout; the C it achieved, when it reports one, is
    recorded for the run's mean."""
    out = getattr(result, "out", result)
    achieved = getattr(result, "achieved_compression", None)
    if achieved is not None:
        ctx.achieved.append(float(achieved))
        study = getattr(result, "study_compression", None)
        ctx.study.append(float(achieved if study is None else study))
        ctx.judged_by_study |= bool(getattr(result, "judged_by_study", False))
    return out.transpose(1, 2).contiguous(), None


def scalelaw_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention function registered as `scalelaw`: SDPA, or the active methods by phase."""
    route = _ACTIVE
    cap = _CAPTURE
    if cap is not None and query.shape[2] > 1 and int(getattr(module, "layer_idx", 0)) == cap.layer:
        cap.q, cap.k, cap.v = _prescale(query, scaling), key, value
        raise _Captured

    def dense() -> tuple[torch.Tensor, None]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )

    if route is None or (attention_mask is not None and query.shape[0] > 1):
        return dense()
    layer = int(getattr(module, "layer_idx", 0))
    if query.shape[2] > 1:  # the prompt
        result = (
            dense()
            if route.prefill is None
            else _prefill(route.prefill, query, key, value, scaling, layer)
        )
        if route.decode is not None:
            ctx = route.decode
            ctx.states[layer] = ctx.method.prepare_cache(
                _prescale(query, scaling), key, value, compression=ctx.compression, **ctx.params
            )
        return result
    if route.decode is None:
        return dense()
    return _decode(route.decode, query, key, value, scaling, layer)


def _prefill(
    ctx: SparseContext,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float | None,
    layer: int,
) -> tuple[torch.Tensor, None]:
    q_len, kv = query.shape[2], key.shape[2]
    if kv != q_len:
        raise RuntimeError(
            "sparse prefill needs an empty cache (prompt length equals key length); "
            f"got {q_len} queries and {kv} keys in layer {layer}"
        )
    return _output(
        ctx,
        ctx.method.prefill(
            _prescale(query, scaling), key, value, compression=ctx.compression, **ctx.params
        ),
    )


def _decode(
    ctx: SparseContext,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float | None,
    layer: int,
) -> tuple[torch.Tensor, None]:
    state = ctx.states.get(layer)
    if state is None:
        raise RuntimeError(
            f"decode method has no state for layer {layer}; was the prompt prefilled?"
        )
    state.append(key[:, :, -1:], value[:, :, -1:])
    return _output(ctx, ctx.method.decode(_prescale(query, scaling), state))


_INSTALLED = False


def install() -> None:
    """Register the `scalelaw` attention and mask functions with transformers (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    AttentionInterface.register(ATTN_IMPLEMENTATION, scalelaw_attention)
    # without a registered mask function, a custom key receives attention_mask=None everywhere
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    _INSTALLED = True
