"""Quest decode: read only the top pages of the full cache at every step.

Each page of `page_size` tokens keeps the elementwise min and max of its keys. A page's score
for a query is sum_d max(q_d * min_d, q_d * max_d) (an upper bound of q . k inside the page),
summed over the query heads of a GQA group so a KV head reads one set of pages (as the reference
study's code does since its 13 June 2025 revision, `share_pages`). As in the study, a step reads
`budget` pages chosen among the earlier pages plus the page holding the newest token.

The bound is computed as (sum over the group of q+) . max + (sum over the group of q-) . min:
the same value (max(q a, q b) with a <= b is q b for q >= 0 and q a otherwise), as two
matrix-vector products over the metadata, kept in the cache's dtype and read once per step (one
Triton kernel on a GPU; bounded chunks in PyTorch), with no (pages x head_dim) temporary per
query head. Scores differ from the elementwise sum only by fp32 rounding: equal pages still
score equally and `torch.topk` breaks exact ties as before, but two pages within rounding of
each other may rank differently.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scalelaw.kernels.base import AttentionResult, SparseMethod, resolve_backend
from scalelaw.kernels.budgets import quest_budget_pages, quest_tokens_read
from scalelaw.kernels.cache import KVCache
from scalelaw.kernels.dense import check_decode_query
from scalelaw.kernels.reference import decode_attention
from scalelaw.kernels.specs import SPECS

# Metadata elements the PyTorch scoring multiplies in fp32 at once (2 MB), and cache elements of K
# (and of V) the PyTorch attention gathers at once (1 MB each in bf16): a step's temporaries stay
# bounded however long the cache.
SCORE_CHUNK_ELEMENTS = 1 << 19
GATHER_CHUNK_ELEMENTS = 1 << 19


class QuestCache(KVCache):
    """Full cache plus per-page key min/max (B, H_kv, pages, D), in the cache's dtype."""

    page_size: int = 16
    budget: int | None = None  # pages besides the newest; None reads every page

    def init_pages(self, page_size: int, budget: int | None) -> None:
        self.page_size = page_size
        self.budget = budget
        b, hkv, cap, d = self._k.shape
        # sized like the K buffer and grown with it, so an append writes one page in place
        self._page_min = self._k.new_empty(b, hkv, math.ceil(cap / page_size), d)
        self._page_max = torch.empty_like(self._page_min)
        self._on_append(0, self.length)

    @property
    def page_min(self) -> torch.Tensor:
        return self._page_min[:, :, : self.n_pages]

    @property
    def page_max(self) -> torch.Tensor:
        return self._page_max[:, :, : self.n_pages]

    @property
    def n_pages(self) -> int:
        return math.ceil(self.length / self.page_size)

    @property
    def reads_everything(self) -> bool:
        return self.budget is None or self.budget >= self.n_pages - 1

    @property
    def n_read_now(self) -> int:
        """Tokens one step reads: the budget's pages plus the newest page."""
        return quest_tokens_read(self.length, self.budget, self.page_size)

    @property
    def achieved_compression(self) -> float:
        # Quest keeps the whole cache; what it saves is reads, so report the read fraction.
        return self.length / self.n_read_now

    @property
    def study_compression(self) -> float:
        """C as the reference study counts it: the prompt's length over the token budget (the
        budget's pages; the newest page and generated tokens left out)."""
        if self.budget is None:
            return 1.0
        return self.n_prompt / max(1, min(self.n_prompt, self.budget * self.page_size))

    def _on_append(self, start: int, end: int) -> None:
        ps = self.page_size
        first, full, pages = start // ps, end // ps, math.ceil(end / ps)
        cap = self._page_min.shape[2]
        if pages > cap:
            b, hkv, _, d = self._page_min.shape
            cap = max(pages, math.ceil(self._k.shape[2] / ps))
            for name in ("_page_min", "_page_max"):
                new = self._k.new_empty(b, hkv, cap, d)
                new[:, :, :first] = getattr(self, name)[:, :, :first]
                setattr(self, name, new)
        if full > first:
            keys = self._k[:, :, first * ps : full * ps].unflatten(2, (full - first, ps))
            self._page_min[:, :, first:full] = keys.amin(3)
            self._page_max[:, :, first:full] = keys.amax(3)
        if pages > full:
            tail = self._k[:, :, full * ps : end]
            self._page_min[:, :, full] = tail.amin(2)
            self._page_max[:, :, full] = tail.amax(2)


def fold_query(q_step: torch.Tensor, hkv: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative parts of q_step (B, H, 1, D) summed over each GQA group:
    two (B, H_kv, D) fp32 tensors."""
    b, h, _, d = q_step.shape
    qg = q_step.reshape(b, hkv, h // hkv, d).float()
    return qg.clamp(min=0).sum(2), qg.clamp(max=0).sum(2)


def page_scores(
    q_step: torch.Tensor,
    page_min: torch.Tensor,
    page_max: torch.Tensor,
    backend: str = "torch",
) -> torch.Tensor:
    """(B, H_kv, pages) fp32: upper bound of q . k per page, summed over each GQA group."""
    if backend == "triton":
        from scalelaw.kernels.triton_decode import page_scores_triton  # deferred: triton

        return page_scores_triton(q_step, page_min, page_max)
    b, hkv, n, d = page_min.shape
    q_pos, q_neg = (t.reshape(b * hkv, 1, d) for t in fold_query(q_step, hkv))
    lo, hi = page_min.reshape(b * hkv, n, d), page_max.reshape(b * hkv, n, d)
    out = torch.empty(b * hkv, n, dtype=torch.float32, device=q_step.device)
    # A product with the fp32 query upcasts the metadata chunk by chunk, so the temporaries
    # stay bounded; a row sum (not a BLAS matvec, whose rounding depends on where a row falls
    # in the blocking) gives equal pages equal scores, so ties break as before.
    step = max(1, SCORE_CHUNK_ELEMENTS // (b * hkv * d))
    for s in range(0, n, step):
        e = min(n, s + step)
        part = (hi[:, s:e] * q_pos).sum(-1)
        part += (lo[:, s:e] * q_neg).sum(-1)
        out[:, s:e] = part
    return out.view(b, hkv, n)


def select_pages(q_step: torch.Tensor, state: QuestCache, backend: str = "auto") -> torch.Tensor:
    """Indices (B, H_kv, budget + 1) of the pages to read, ascending: the top `budget` earlier
    pages and the newest page. `backend` picks how the scores are computed."""
    n_pages = state.n_pages
    newest = n_pages - 1
    earlier = min(state.budget if state.budget is not None else newest, newest)
    b, hkv = state.k.shape[:2]
    dev = q_step.device
    if earlier == newest:
        # every page is read: no scores needed
        return torch.arange(n_pages, device=dev).expand(b, hkv, n_pages).contiguous()
    pages = torch.empty(b, hkv, earlier + 1, dtype=torch.long, device=dev)
    if earlier:
        meta = state.page_min[:, :, :newest], state.page_max[:, :, :newest]
        be = resolve_backend("quest", backend, dev)
        scores = page_scores(q_step, *meta, backend=be)
        # The order comes from the page numbers, not from topk: unsorted top-k skips its own
        # sort on a GPU, and the chosen set (ties included) is the same either way.
        top = torch.topk(scores, earlier, dim=-1, sorted=False).indices
        chosen = torch.zeros(b, hkv, newest, dtype=torch.bool, device=dev)
        chosen.scatter_(-1, top, True)
        # A chosen page's rank among the chosen is its slot; the pages not chosen all land in
        # the newest page's slot, which is written after them.
        slot = chosen.cumsum(-1).sub_(1).masked_fill_(chosen.logical_not(), earlier)
        order = torch.arange(newest, device=dev).expand(b, hkv, newest)
        pages.scatter_(-1, slot, order)
    pages[..., earlier] = newest
    return pages


def gather_pages(
    state: QuestCache, pages: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys, values (B, H_kv, k * page, D) of the chosen pages and a validity mask."""
    ps = state.page_size
    tok = (pages[..., None] * ps + torch.arange(ps, device=pages.device)).flatten(-2)
    valid = tok < state.length
    tok = tok.clamp(max=state.length - 1)
    d = state.k.shape[-1]
    idx = tok[..., None].expand(*tok.shape, d)
    return state.k.gather(2, idx), state.v.gather(2, idx), valid


def attend_pages(q_step: torch.Tensor, state: QuestCache, pages: torch.Tensor) -> torch.Tensor:
    """PyTorch attention of q_step over the chosen pages, gathering a bounded chunk at a time."""
    b, h, _, d = q_step.shape
    hkv = state.k.shape[1]
    ps, length, n = state.page_size, state.length, pages.shape[-1]
    per = max(1, GATHER_CHUNK_ELEMENTS // (b * hkv * ps * d))
    # (B * H_kv, T, D) views: indexing whole rows copies D contiguous values per token, several
    # times faster on a CPU than an elementwise gather
    k_rows = state.k.reshape(b * hkv, length, d)
    v_rows = state.v.reshape(b * hkv, length, d)
    heads = torch.arange(b * hkv, device=pages.device)[:, None]
    within = torch.arange(ps, device=pages.device)
    qf = q_step.reshape(b * hkv, h // hkv, d).float() / math.sqrt(d)
    m = qf.new_full((b * hkv, h // hkv, 1), float("-inf"))
    l_sum = torch.zeros_like(m)
    acc = torch.zeros_like(qf)
    for s in range(0, n, per):
        tok = (pages[..., s : s + per, None] * ps + within).reshape(b * hkv, -1)
        beyond = tok >= length  # only the newest page can be partly filled
        tok = tok.clamp_(max=length - 1)
        scores = torch.bmm(qf, k_rows[heads, tok].float().transpose(1, 2))  # (B H_kv, G, N)
        scores.masked_fill_(beyond[:, None], float("-inf"))
        # every page holds a real token, so each chunk's maximum is finite
        top = torch.maximum(m, scores.amax(-1, keepdim=True))
        p = scores.sub_(top).exp_()
        w = (m - top).exp_()
        l_sum = l_sum * w + p.sum(-1, keepdim=True)
        acc = acc * w + torch.bmm(p, v_rows[heads, tok].float())
        m = top
    return (acc / l_sum).reshape(b, h, 1, d).to(q_step.dtype)


class Quest(SparseMethod):
    spec = SPECS["quest"]

    def prepare_cache(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        **knobs: Any,
    ) -> QuestCache:
        c, _, length, kn = self._start_cache(q_prompt, k, v, compression, knobs)
        state = QuestCache(self.name, k, v, n_prompt=length, requested_compression=c, knobs=kn)
        state.init_pages(kn["page_size"], quest_budget_pages(length, c, kn["page_size"]))
        return state

    def decode(
        self, q_step: torch.Tensor, state: QuestCache, *, backend: str = "auto"
    ) -> AttentionResult:
        check_decode_query(self.name, q_step, state)
        be = resolve_backend(self.name, backend, q_step.device, state.knobs)
        if be == "torch" and state.reads_everything:
            out = decode_attention(q_step, state.k, state.v)
            return AttentionResult(
                out, 1.0, state.requested_compression, "", {"pages_read": state.n_pages}
            )
        pages = select_pages(q_step, state, backend=be)
        if be == "triton":
            from scalelaw.kernels.triton_decode import paged_decode_attention  # deferred: triton

            out = paged_decode_attention(
                q_step, state.k, state.v, pages, state.page_size, state.length
            )
        else:
            out = attend_pages(q_step, state, pages)
        c = state.requested_compression
        achieved = state.achieved_compression
        why = (
            f"cache of {state.length} tokens, {pages.shape[-1] - 1} pages of {state.page_size} "
            "plus the newest"
        )
        stats = {"pages_read": pages.shape[-1]}
        return self._result(out, c, achieved, why, stats, state.study_compression)
