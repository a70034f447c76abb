"""Dense attention: the baseline of both phases (C = 1 always)."""

from __future__ import annotations

from typing import Any

import torch

from scalelaw.kernels.base import (
    AttentionResult,
    KernelInputError,
    SparseMethod,
    resolve_backend,
)
from scalelaw.kernels.cache import KVCache
from scalelaw.kernels.reference import decode_attention, dense_causal
from scalelaw.kernels.specs import SPECS


def check_decode_query(name: str, q_step: torch.Tensor, state: KVCache) -> None:
    if not isinstance(state, KVCache):
        raise KernelInputError(
            f"{name}: state must come from prepare_cache, got {type(state).__name__}"
        )
    if state.method != name:
        raise KernelInputError(
            f"{name}: state was prepared by {state.method!r}; decode it with that method"
        )
    if q_step.dim() != 4 or q_step.shape[2] != 1:
        raise KernelInputError(
            f"{name}: q_step must have shape (B, H, 1, D), got {tuple(q_step.shape)}"
        )
    b, hkv, _, d = state.k.shape
    if q_step.shape[0] != b or q_step.shape[3] != d or q_step.shape[1] % hkv != 0:
        raise KernelInputError(
            f"{name}: q_step shape {tuple(q_step.shape)} does not fit the cache "
            f"(batch {b}, KV heads {hkv}, head_dim {d})"
        )
    if q_step.dtype != state.k.dtype:
        raise KernelInputError(
            f"{name}: q_step dtype {q_step.dtype} != cache dtype {state.k.dtype}"
        )


class Dense(SparseMethod):
    spec = SPECS["dense"]

    def _note(self, c: float) -> str:
        return "" if c == 1.0 else f"dense: computes everything, requested C={c:g} ignored"

    def prefill(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        backend: str = "auto",
        **knobs: Any,
    ) -> AttentionResult:
        c, *_ = self._start_prefill(q, k, v, compression, backend, knobs)
        return AttentionResult(dense_causal(q, k, v), 1.0, c, self._note(c))

    def prepare_cache(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        **knobs: Any,
    ) -> KVCache:
        c, *_ = self._start_cache(q_prompt, k, v, compression, knobs)
        return KVCache(
            self.name, k, v, n_prompt=k.shape[2], requested_compression=c, note=self._note(c)
        )

    def decode(
        self, q_step: torch.Tensor, state: KVCache, *, backend: str = "auto"
    ) -> AttentionResult:
        check_decode_query(self.name, q_step, state)
        resolve_backend(self.name, backend, q_step.device)
        out = decode_attention(q_step, state.k, state.v, state.valid)
        return AttentionResult(out, 1.0, state.requested_compression, state.note)
