"""Quest decode: read only the top pages of the full cache at every step.

Each page of `page_size` tokens keeps the elementwise min and max of its keys. A page's score
for a query is sum_d max(q_d * min_d, q_d * max_d) (an upper bound of q . k inside the page),
summed over the query heads of a GQA group so a KV head reads one set of pages (as the reference
study's code does since its 13 June 2025 revision, `share_pages`). As in the study, a step reads
`budget` pages chosen among the earlier pages plus the page holding the newest token.
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


class QuestCache(KVCache):
    """Full cache plus per-page key min/max (B, H_kv, pages, D) and the page budget."""

    page_size: int = 16
    budget: int | None = None  # pages besides the newest; None reads every page

    def init_pages(self, page_size: int, budget: int | None) -> None:
        self.page_size = page_size
        self.budget = budget
        b, hkv, _, d = self._k.shape
        self.page_min = self._k.new_zeros(b, hkv, 0, d, dtype=torch.float32)
        self.page_max = self.page_min.clone()
        self._on_append(0, self.length)

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

    def _on_append(self, start: int, end: int) -> None:
        ps = self.page_size
        first = start // ps
        pages = math.ceil(end / ps)
        keys = self._k[:, :, first * ps : end].float()
        n = keys.shape[2]
        pad = (pages - first) * ps - n
        if pad:
            fill = keys.new_full((*keys.shape[:2], pad, keys.shape[3]), float("nan"))
            keys = torch.cat([keys, fill], dim=2)
        keys = keys.reshape(*keys.shape[:2], pages - first, ps, keys.shape[3])
        # NaN padding is ignored by the nan-aware reductions; a full page has no NaN.
        mins = torch.where(torch.isnan(keys), float("inf"), keys).amin(3)
        maxs = torch.where(torch.isnan(keys), float("-inf"), keys).amax(3)
        self.page_min = torch.cat([self.page_min[:, :, :first], mins], dim=2)
        self.page_max = torch.cat([self.page_max[:, :, :first], maxs], dim=2)


def page_scores(
    q_step: torch.Tensor, page_min: torch.Tensor, page_max: torch.Tensor
) -> torch.Tensor:
    """(B, H_kv, pages): upper bound of q . k per page, summed over each GQA group."""
    b, h, _, d = q_step.shape
    hkv = page_min.shape[1]
    qg = q_step.float().reshape(b, hkv, h // hkv, 1, d)
    lo = qg * page_min.unsqueeze(2)
    hi = qg * page_max.unsqueeze(2)
    return torch.maximum(lo, hi).sum(-1).sum(2)


def select_pages(q_step: torch.Tensor, state: QuestCache) -> torch.Tensor:
    """Indices (B, H_kv, budget + 1) of the pages to read, ascending: the top `budget` earlier
    pages and the newest page."""
    n_pages = state.n_pages
    newest = n_pages - 1
    earlier = min(state.budget if state.budget is not None else newest, newest)
    b, hkv = state.page_min.shape[:2]
    last = torch.full((b, hkv, 1), newest, dtype=torch.long, device=q_step.device)
    if earlier == 0:
        return last
    scores = page_scores(q_step, state.page_min[:, :, :newest], state.page_max[:, :, :newest])
    top = torch.topk(scores, earlier, dim=-1).indices
    return torch.sort(torch.cat([top, last], dim=-1), dim=-1).values


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
        pages = select_pages(q_step, state)
        if be == "triton":
            from scalelaw.kernels.triton_decode import paged_decode_attention

            out = paged_decode_attention(
                q_step, state.k, state.v, pages, state.page_size, state.length
            )
        else:
            ks, vs, valid = gather_pages(state, pages)
            out = decode_attention(q_step, ks, vs, valid)
        c = state.requested_compression
        achieved = state.achieved_compression
        why = (
            f"cache of {state.length} tokens, {pages.shape[-1] - 1} pages of {state.page_size} "
            "plus the newest"
        )
        return self._result(out, c, achieved, why, {"pages_read": pages.shape[-1]})
