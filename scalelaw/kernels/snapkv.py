"""SnapKV and Ada-SnapKV decode: evict most of the prompt's KV cache once, after prefill.

Token importance is the attention of the last `window` prompt queries to every prompt key,
smoothed by average pooling along the sequence (zero padding counted, as in the study). SnapKV
sums it over those queries and over the query heads of a GQA group (the study averages over the
group: the same ranking) and keeps the same number of tokens per KV head. Ada-SnapKV takes the
maximum over the queries and over the heads of a group, as the study does, and makes one top-k
across the KV heads of a layer (scores are attention probabilities, comparable across heads)
after every head has kept its floor: max(`floor_fraction` of its capacity, its sink and recent
tokens). The first `sink_tokens` and last `recent_tokens` are always kept.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from scalelaw.kernels.base import (
    AttentionResult,
    KernelInputError,
    SparseMethod,
    resolve_backend,
    unreachable_note,
)
from scalelaw.kernels.budgets import ada_floor, protected_tokens, snapkv_capacity
from scalelaw.kernels.cache import KVCache
from scalelaw.kernels.dense import check_decode_query
from scalelaw.kernels.reference import CHUNK_ELEMENTS, decode_attention, last_window_probs
from scalelaw.kernels.specs import SPECS


def token_scores(
    q: torch.Tensor, k: torch.Tensor, window: int, kernel_size: int, reduce: str = "sum"
) -> torch.Tensor:
    """Pooled importance (B, H_kv, L) of every prompt token.

    `reduce` "sum" adds the attention over the window and over the heads of a GQA group
    (SnapKV); "max" takes the maximum over both (Ada-SnapKV).
    """
    b, h, lq, _ = q.shape
    length = k.shape[2]
    hkv = k.shape[1]
    g = h // hkv
    w = min(window, lq)
    scores = torch.zeros(b, hkv, length, dtype=torch.float32, device=q.device)
    step = max(1, CHUNK_ELEMENTS // max(1, b * g * w * length))
    for s in range(0, hkv, step):
        e = min(hkv, s + step)
        probs = last_window_probs(q[:, s * g : e * g], k[:, s:e], w)
        grouped = probs.reshape(b, e - s, g, w, length)
        if reduce == "max":
            scores[:, s:e] = grouped.amax(3).amax(2)
        else:
            scores[:, s:e] = grouped.sum(3).sum(2)
    if kernel_size > 1:
        pad = kernel_size // 2
        flat = scores.reshape(b * hkv, 1, length)
        pooled = F.avg_pool1d(flat, kernel_size, stride=1, padding=pad, count_include_pad=True)
        scores = pooled[..., :length].reshape(b, hkv, length)
    return scores


def protected(length: int, sink: int, recent: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(length, device=device)
    return (pos < sink) | (pos >= length - recent)


def gather_kept(
    k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Pack kept tokens (in order) to the front; pad ragged heads and return their mask."""
    counts = keep.sum(-1)
    kmax = int(counts.max())
    # Stable sort puts kept positions first, each group in sequence order.
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[..., :kmax]
    idx = order[..., None].expand(*order.shape, k.shape[-1])
    kk, vv = k.gather(2, idx), v.gather(2, idx)
    if bool((counts == kmax).all()):
        return kk, vv, None
    valid = torch.arange(kmax, device=k.device) < counts[..., None]
    return kk, vv, valid


class SnapKV(SparseMethod):
    spec = SPECS["snapkv"]
    # how token scores pool over the window and the heads of a GQA group
    SCORE = "sum"

    def _keep_mask(self, scores: torch.Tensor, capacity: int, kn: dict[str, Any]) -> torch.Tensor:
        length = scores.shape[-1]
        prot = protected(length, kn["sink_tokens"], kn["recent_tokens"], scores.device)
        free = max(0, capacity - int(prot.sum()))
        masked = scores.masked_fill(prot, float("-inf"))
        keep = prot.expand_as(scores).clone()
        if free:
            top = torch.topk(masked, free, dim=-1).indices
            keep.scatter_(-1, top, True)
        return keep

    def prepare_cache(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        **knobs: Any,
    ) -> KVCache:
        c, lq, lk, kn = self._start_cache(q_prompt, k, v, compression, knobs)
        if lq > lk:
            raise KernelInputError(
                f"{self.name}: q_prompt has {lq} positions but the prompt has only {lk} keys"
            )
        capacity = snapkv_capacity(lk, c)
        if capacity >= lk:
            return KVCache(self.name, k, v, n_prompt=lk, requested_compression=c, knobs=kn)
        scores = token_scores(q_prompt, k, kn["window"], kn["kernel_size"], self.SCORE)
        keep = self._keep_mask(scores, capacity, kn)
        kk, vv, valid = gather_kept(k, v, keep)
        state = KVCache(
            self.name, kk, vv, n_prompt=lk, valid=valid, requested_compression=c, knobs=kn
        )
        minimum = protected_tokens(lk, kn["sink_tokens"], kn["recent_tokens"])
        state.note = unreachable_note(
            self.name,
            c,
            state.achieved_compression,
            f"prompt of {lk} tokens keeps at least {minimum} sink and recent tokens",
        )
        return state

    def decode(
        self, q_step: torch.Tensor, state: KVCache, *, backend: str = "auto"
    ) -> AttentionResult:
        check_decode_query(self.name, q_step, state)
        resolve_backend(self.name, backend, q_step.device, state.knobs)
        # Eviction already happened; a step is dense attention over what is left.
        out = decode_attention(q_step, state.k, state.v, state.valid)
        return AttentionResult(
            out, state.achieved_compression, state.requested_compression, state.note
        )


class AdaSnapKV(SnapKV):
    spec = SPECS["ada-snapkv"]
    SCORE = "max"

    def _keep_mask(self, scores: torch.Tensor, capacity: int, kn: dict[str, Any]) -> torch.Tensor:
        b, hkv, length = scores.shape
        prot = protected(length, kn["sink_tokens"], kn["recent_tokens"], scores.device)
        floor = min(length, ada_floor(capacity, kn["floor_fraction"], int(prot.sum())))
        # the floor is every head's own top tokens, its protected ones first
        forced = scores.masked_fill(prot, float("inf"))
        keep = torch.zeros_like(scores, dtype=torch.bool)
        keep.scatter_(-1, torch.topk(forced, floor, dim=-1).indices, True)
        shared = hkv * max(0, capacity - floor)
        if shared:
            rest = scores.masked_fill(keep, float("-inf")).reshape(b, hkv * length)
            top = torch.topk(rest, shared, dim=-1).indices
            flat = keep.reshape(b, hkv * length)
            flat.scatter_(-1, top, True)
            keep = flat.reshape(b, hkv, length)
        return keep
