"""Vertical-slash prefill: top key columns and top diagonals per head.

The pattern is estimated from the attention of the last `window` queries to every key (a
window x L slice, never L x L): column scores sum over those queries, diagonal scores sum along
each offset i - j. The first `sink_columns` columns and the `local_diagonals` nearest diagonals
are always kept; equal numbers n of columns and diagonals are kept per head, n chosen so that the
exact number of covered causal entries (columns + diagonals - their crossings) gives 1/C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from scalelaw.kernels.base import (
    AttentionResult,
    KernelInputError,
    SparseMethod,
    causal_entries,
)
from scalelaw.kernels.reference import CHUNK_ELEMENTS, dense_causal, last_window_probs
from scalelaw.kernels.sparse_torch import vertical_slash_torch


def window_scores(
    q: torch.Tensor, k: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and diagonal scores (B, H, L) from the last `window` queries, per KV-head group."""
    b, h, length, _ = q.shape
    hkv = k.shape[1]
    g = h // hkv
    w = min(window, length)
    cols = torch.zeros(b, h, length, dtype=torch.float32, device=q.device)
    diags = torch.zeros_like(cols)
    rows = torch.arange(length - w, length, device=q.device)[:, None]
    offs = (rows - torch.arange(length, device=q.device)[None, :]).clamp(min=0).reshape(-1)
    step = max(1, CHUNK_ELEMENTS // max(1, b * g * w * length))
    for s in range(0, hkv, step):
        e = min(hkv, s + step)
        probs = last_window_probs(q[:, s * g : e * g], k[:, s:e], w)  # (B, hg, w, L)
        cols[:, s * g : e * g] = probs.sum(2)
        flat = probs.reshape(b, (e - s) * g, w * length)
        diags[:, s * g : e * g].scatter_add_(-1, offs.expand_as(flat), flat)
    return cols, diags


def rank_with_mandatory(scores: torch.Tensor, n_forced: int) -> torch.Tensor:
    """Indices sorted by descending score, the first `n_forced` indices placed first."""
    forced = torch.arange(scores.shape[-1], device=scores.device) < n_forced
    return torch.argsort(
        scores.masked_fill(forced, float("inf")), dim=-1, descending=True, stable=True
    )


def coverage(
    col_order: torch.Tensor, diag_order: torch.Tensor, n: torch.Tensor, length: int
) -> torch.Tensor:
    """Causal entries covered by the top n[b, h] columns and diagonals: (B, H) float64."""
    nmax = max(1, int(n.max()))
    valid = torch.arange(nmax, device=n.device) < n[..., None]
    cols = col_order[..., :nmax]
    diags = diag_order[..., :nmax]
    along = (length - cols).double() * valid + (length - diags).double() * valid
    # Column j and diagonal o cross at row j + o when that row exists.
    diag_sorted = torch.sort(torch.where(valid, diags, torch.full_like(diags, length)), -1).values
    limit = (length - 1 - cols).contiguous()
    crossings = torch.searchsorted(diag_sorted.contiguous(), limit, right=True)
    crossings = (crossings.double() * valid).sum(-1)
    return along.sum(-1) - crossings


def uniform_count(
    col_order: torch.Tensor, diag_order: torch.Tensor, length: int, compression: float, n_min: int
) -> int:
    """Smallest common n whose mean density reaches 1/C, or n - 1 when closer in log ratio."""
    b, h = col_order.shape[:2]
    target = causal_entries(length) / compression

    def mean_cov(n: int) -> float:
        full = torch.full((b, h), n, device=col_order.device)
        return float(coverage(col_order, diag_order, full, length).mean())

    lo, hi = max(1, min(n_min, length)), length
    while lo < hi:
        mid = (lo + hi) // 2
        if mean_cov(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    if lo > max(1, n_min):
        above, below = mean_cov(lo), mean_cov(lo - 1)
        if abs(torch.log(torch.tensor(below / target))) < abs(
            torch.log(torch.tensor(above / target))
        ):
            return lo - 1
    return lo


@dataclass
class VSPattern:
    """Kept columns and diagonals per (batch, head) as (B, H, L) bool masks."""

    col_keep: torch.Tensor
    diag_keep: torch.Tensor
    entries: torch.Tensor  # (B, H) computed causal entries

    def keep_fn(self) -> Any:
        def keep(s: int, e: int, kend: int) -> torch.Tensor:
            pos = torch.arange(kend, device=self.col_keep.device)
            offs = (pos[s:e, None] - pos[None, :kend]).clamp(min=0)
            return self.col_keep[:, :, None, :kend] | self.diag_keep[:, :, offs]

        return keep


def keep_masks(order: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return ranks < n[..., None]


def run_vs_pattern(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pat: VSPattern, backend: str, block: int
) -> torch.Tensor:
    if backend == "triton":
        from scalelaw.kernels.triton_prefill import vertical_slash_attention

        return vertical_slash_attention(q, k, v, pat.col_keep, pat.diag_keep, block)
    if bool((pat.entries >= causal_entries(q.shape[2])).all()):
        return dense_causal(q, k, v)
    return vertical_slash_torch(q, k, v, pat.col_keep, pat.diag_keep)


class VerticalSlash(SparseMethod):
    name = "vertical-slash"
    phases = ("prefill",)
    description = (
        "top key columns and top diagonals per head, scored by the last window of queries; "
        "first columns and nearest diagonals always kept"
    )
    budget_rule = (
        "equal numbers n of columns and diagonals per head; n is chosen so that the exact count "
        "of covered causal entries (columns + diagonals - crossings) is closest to 1/C"
    )
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "window": 256,
        "sink_columns": 4,
        "local_diagonals": 64,
        "block_size": 64,
    }
    KNOB_HELP: ClassVar[dict[str, str]] = {
        "window": "last queries whose attention scores the pattern (256; 512 for retrieval)",
        "sink_columns": "first key columns always kept",
        "local_diagonals": "diagonals nearest the main one always kept (offsets 0..n-1)",
        "block_size": "tile size of the GPU kernel (does not change the pattern)",
    }

    def pattern(
        self, q: torch.Tensor, k: torch.Tensor, compression: float, **knobs: Any
    ) -> VSPattern:
        kn = self._call_knobs(knobs)
        if kn["local_diagonals"] < 1:
            raise KernelInputError("vertical-slash: local_diagonals must be >= 1 (the diagonal)")
        length = q.shape[2]
        cols, diags = window_scores(q, k, kn["window"])
        col_order = rank_with_mandatory(cols, kn["sink_columns"])
        diag_order = rank_with_mandatory(diags, kn["local_diagonals"])
        n_min = max(kn["sink_columns"], kn["local_diagonals"])
        n = uniform_count(col_order, diag_order, length, compression, n_min)
        counts = torch.full(cols.shape[:2], n, device=q.device)
        return VSPattern(
            keep_masks(col_order, counts),
            keep_masks(diag_order, counts),
            coverage(col_order, diag_order, counts, length),
        )

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
        c, b, h, lq, be, kn = self._start_prefill(q, k, v, compression, backend, knobs)
        if (dense := self._dense_when_all_kept(q, k, v, c, be)) is not None:
            return dense
        pat = self.pattern(q, k, c, **knobs)
        out = run_vs_pattern(q, k, v, pat, be, kn["block_size"])
        achieved = causal_entries(lq) * b * h / float(pat.entries.sum())
        n = int(pat.col_keep[0, 0].sum())
        why = f"L={lq}, {n} columns and diagonals per head, at least {max(kn['sink_columns'], kn['local_diagonals'])}"
        return self._result(out, c, achieved, why, {"lines_per_head": n})
