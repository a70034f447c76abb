"""SnapKV and Ada-SnapKV decode: evict most of the prompt's KV cache once, after prefill.

Token importance is the attention of the last `window` prompt queries to every prompt key,
smoothed by average pooling along the sequence (zero padding counted, as in the study). SnapKV
sums it over those queries and over the query heads of a GQA group (the study averages over the
group: the same ranking) and keeps the same number of tokens per KV head. Ada-SnapKV takes the
maximum over the queries and over the heads of a group, as the study does, and makes one top-k
across the KV heads of a layer (scores are attention probabilities, comparable across heads)
after every head has kept its floor: max(`floor_fraction` of its capacity, its sink and recent
tokens). The first `sink_tokens` and last `recent_tokens` are always kept.

Ada-SnapKV keeps different counts per head: each head's tokens are packed to the front of its
row with a per-head length (`RaggedKVCache`), generated tokens are written right after them, and
a step reads each head's own tokens with no mask. The eviction is callable on its own (`evict`)
so its one-off cost can be timed beside a step; a cache records the work it did (`eviction`).
"""

from __future__ import annotations

from dataclasses import dataclass
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack kept tokens (in order) to the front of each head's row; returns the packed keys and
    values, as long as the longest head, and the per-head counts (B, H_kv)."""
    counts = keep.sum(-1)
    kmax = int(counts.max())
    # Stable sort puts kept positions first, each group in sequence order.
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[..., :kmax]
    idx = order[..., None].expand(*order.shape, k.shape[-1])
    return k.gather(2, idx), v.gather(2, idx), counts


# the work of an eviction that evicted nothing (C too low to evict)
NO_EVICTION = dict.fromkeys(("score_flops", "score_bytes", "select_elements", "pack_bytes"), 0.0)


class SnapKVCache(KVCache):
    """The cache left after an eviction, with the work that eviction did (`eviction_work`)."""

    def __init__(self, *args: Any, eviction: dict[str, float] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.eviction = dict(NO_EVICTION if eviction is None else eviction)


class RaggedKVCache(SnapKVCache):
    """A cache whose KV heads keep different numbers of tokens: head (b, h) holds its
    `lengths[b, h]` tokens at the front of its row; slots past them are unused."""

    def __init__(
        self, method: str, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, **kw: Any
    ) -> None:
        super().__init__(method, k, v, **kw)
        self._lens = lengths.to(torch.int32).contiguous()
        # a host copy, so a step never waits on the device to learn the lengths
        self._lens_host = lengths.cpu().long()
        self._len = int(self._lens_host.max())
        self.n_kept_prompt = float(self._lens_host.double().mean())

    @property
    def lengths(self) -> torch.Tensor:
        """(B, H_kv) int32 tokens held per KV head, on the cache's device."""
        return self._lens

    @property
    def head_lengths(self) -> list[list[int]]:
        return self._lens_host.tolist()

    @property
    def valid(self) -> torch.Tensor:
        # built only on request (inspection, tests); decoding uses the lengths
        return torch.arange(self._len, device=self._k.device) < self._lens[..., None]

    def _on_append(self, start: int, end: int) -> None:
        # The base class wrote the new tokens at [start, end) of every row, which is right after
        # the longest head's tokens; move them right after each head's own.
        n = end - start
        pos = self._lens.long()[..., None] + torch.arange(n, device=self._k.device)
        idx = pos[..., None].expand(*pos.shape, self._k.shape[-1])
        for buf in (self._k, self._v):
            # a copy: a short head's destination can overlap the slots being read
            buf.scatter_(2, idx, buf[:, :, start:end].clone())
        self._lens += n
        self._lens_host += n


def ragged_attention(q_step: torch.Tensor, state: RaggedKVCache, backend: str) -> torch.Tensor:
    """One decode step over each KV head's own tokens, with no mask."""
    if backend == "triton":
        from scalelaw.kernels.triton_decode import ragged_decode_attention  # deferred: triton

        return ragged_decode_attention(q_step, state.k, state.v, state.lengths, state.length)
    g = q_step.shape[1] // state.k.shape[1]
    out = torch.empty_like(q_step)
    for bi, row in enumerate(state.head_lengths):
        for kv, n in enumerate(row):
            heads = slice(kv * g, (kv + 1) * g)
            out[bi, heads] = F.scaled_dot_product_attention(
                q_step[bi : bi + 1, heads],
                state.k[bi : bi + 1, kv : kv + 1, :n],
                state.v[bi : bi + 1, kv : kv + 1, :n],
                enable_gqa=g > 1,
            )[0]
    return out


@dataclass(frozen=True)
class Eviction:
    """What an eviction kept, packed: keys and values (B, H_kv, T, D), the tokens each KV head
    kept (B, H_kv), None when nothing was evicted, and the work it did (`eviction_work`)."""

    k: torch.Tensor
    v: torch.Tensor
    lengths: torch.Tensor | None
    work: dict[str, float]


def eviction_work(
    q_prompt: torch.Tensor, k: torch.Tensor, window: int, kept: int
) -> dict[str, float]:
    """The work of one eviction keeping `kept` slots per KV head, to set beside a step's.

    score: q . k of the last `window` queries against every prompt key (flops, bytes read);
    select: the scores the top-k runs over; pack: bytes the gather of the kept slots moves.
    """
    b, h, lq, d = q_prompt.shape
    hkv, length = k.shape[1], k.shape[2]
    w = min(window, lq)
    item = k.element_size()
    return {
        "score_flops": float(2 * b * h * w * length * d),
        "score_bytes": float((b * h * w + b * hkv * length) * d * item),
        "select_elements": float(b * hkv * length),
        "pack_bytes": float(2 * 2 * b * hkv * kept * d * item),
    }


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

    def evict(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        **knobs: Any,
    ) -> Eviction:
        """The one-off eviction alone: score, select and pack the kept tokens."""
        return self._evict(q_prompt, k, v, compression, knobs)[0]

    def _evict(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        compression: float,
        knobs: dict[str, Any],
    ) -> tuple[Eviction, float, int, dict[str, Any]]:
        c, lq, lk, kn = self._start_cache(q_prompt, k, v, compression, knobs)
        if lq > lk:
            raise KernelInputError(
                f"{self.name}: q_prompt has {lq} positions but the prompt has only {lk} keys"
            )
        capacity = snapkv_capacity(lk, c)
        if capacity >= lk:
            return Eviction(k, v, None, dict(NO_EVICTION)), c, lk, kn
        scores = token_scores(q_prompt, k, kn["window"], kn["kernel_size"], self.SCORE)
        keep = self._keep_mask(scores, capacity, kn)
        kk, vv, counts = gather_kept(k, v, keep)
        work = eviction_work(q_prompt, k, kn["window"], kk.shape[2])
        return Eviction(kk, vv, counts, work), c, lk, kn

    def prepare_cache(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        **knobs: Any,
    ) -> KVCache:
        ev, c, lk, kn = self._evict(q_prompt, k, v, compression, knobs)
        common: dict[str, Any] = {
            "n_prompt": lk,
            "requested_compression": c,
            "knobs": kn,
            "eviction": ev.work,
        }
        state: SnapKVCache
        if ev.lengths is None:
            state = SnapKVCache(self.name, k, v, **common)
        elif bool((ev.lengths == ev.k.shape[2]).all()):
            state = SnapKVCache(self.name, ev.k, ev.v, **common)
        else:
            state = RaggedKVCache(self.name, ev.k, ev.v, ev.lengths, **common)
        if ev.lengths is not None:
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
        be = resolve_backend(self.name, backend, q_step.device, state.knobs)
        # Eviction already happened; a step is dense attention over what is left.
        if isinstance(state, RaggedKVCache):
            out = ragged_attention(q_step, state, be)
        else:
            out = decode_attention(q_step, state.k, state.v, state.valid)
        return AttentionResult(
            out,
            state.achieved_compression,
            state.requested_compression,
            state.note,
            study_compression=state.study_compression,
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
