"""FlexPrefill: a per-head budget set by cumulative attention mass, with block-mode heads.

Per head, the attention of the last `window` queries is compared (Jensen-Shannon distance, over
key blocks) with the estimate from the mean of those queries against mean-pooled key blocks.
Where the two agree (distance < `tau`) the head's pattern is query-specific enough for pooled
estimation, and it selects key blocks as block-sparse does. The other heads keep vertical-slash
lines: a head keeps the fewest lines whose column and diagonal attention mass reaches the
coverage `alpha`, and at least `min_budget` lines. The request C fixes the total: `alpha` is
solved so that the vertical-slash heads reach 1/C on average; when the uniform budget at that C
is below `min_budget`, every head keeps that uniform budget (the study's alpha = 0 setting).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from scalelaw.kernels.base import (
    AttentionResult,
    KernelInputError,
    SparseMethod,
    causal_entries,
)
from scalelaw.kernels.block_sparse import (
    BlockPattern,
    choose_blocks_per_row,
    pooled,
    select_blocks,
)
from scalelaw.kernels.reference import dense_causal, last_window_probs
from scalelaw.kernels.sparse_torch import block_sparse_torch, vertical_slash_torch
from scalelaw.kernels.vertical_slash import (
    VSPattern,
    coverage,
    keep_masks,
    rank_with_mandatory,
    uniform_count,
    window_scores,
)


def js_distance(q: torch.Tensor, k: torch.Tensor, window: int, bs: int) -> torch.Tensor:
    """(B, H) Jensen-Shannon distance between true and pooled-estimate block attention."""
    b, h, length, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    w = min(window, length)
    nb = math.ceil(length / bs)
    probs = last_window_probs(q, k, w)  # (B, H, w, L)
    pad = nb * bs - length
    true = torch.nn.functional.pad(probs.mean(2), (0, pad)).reshape(b, h, nb, bs).sum(-1)
    qm = q[:, :, length - w :].float().mean(2).reshape(b, hkv, g, 1, d)
    kp = pooled(k, bs).unsqueeze(2)  # (B, Hkv, 1, nb, D)
    est = torch.softmax(torch.matmul(qm, kp.transpose(-1, -2)) / math.sqrt(d), dim=-1)
    est = est.reshape(b, h, nb)
    mid = (true + est) / 2

    def kl(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.where(p > 0, p * (p.clamp_min(1e-30).log() - r.clamp_min(1e-30).log()), 0).sum(
            -1
        )

    jsd = 0.5 * kl(true, mid) + 0.5 * kl(est, mid)
    return jsd.clamp_min(0).sqrt()


def lines_for_mass(
    cols: torch.Tensor,
    diags: torch.Tensor,
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
) -> torch.Tensor:
    """(B, H, L) cumulative mass of the top n lines (mean of column and diagonal shares)."""
    cm = cols.gather(-1, col_order)
    dm = diags.gather(-1, diag_order)
    cm = cm.cumsum(-1) / cm.sum(-1, keepdim=True).clamp_min(1e-30)
    dm = dm.cumsum(-1) / dm.sum(-1, keepdim=True).clamp_min(1e-30)
    return (cm + dm) / 2


class FlexPrefill(SparseMethod):
    name = "flexprefill"
    phases = ("prefill",)
    description = (
        "per-head budgets by cumulative attention mass (coverage alpha, at least min_budget "
        "lines); heads whose pooled estimate is reliable switch to block selection"
    )
    budget_rule = (
        "vertical-slash heads: alpha is solved so their mean density is 1/C, each head keeping "
        "max(min_budget, lines for mass alpha); uniform lines when the C budget is below "
        "min_budget; block-mode heads: as block-sparse at C"
    )
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "window": 128,
        "block_size": 64,
        "tau": 0.1,
        "min_budget": 512,
        "sink_columns": 4,
        "local_diagonals": 64,
    }
    KNOB_HELP: ClassVar[dict[str, str]] = {
        "window": "last queries used to estimate each head's pattern",
        "block_size": "block of block-mode heads (and GPU tile size)",
        "tau": "Jensen-Shannon distance below which a head uses block selection (0 = never)",
        "min_budget": "fewest columns (= diagonals) a vertical-slash head keeps",
        "sink_columns": "first key columns always kept",
        "local_diagonals": "nearest diagonals always kept",
    }

    def pattern(
        self, q: torch.Tensor, k: torch.Tensor, compression: float, **knobs: Any
    ) -> tuple[VSPattern, BlockPattern | None, torch.Tensor, dict[str, Any]]:
        """Vertical-slash pattern, block pattern, per-head block-mode flags (B, H), stats."""
        kn = self._call_knobs(knobs)
        if kn["local_diagonals"] < 1:
            raise KernelInputError("flexprefill: local_diagonals must be >= 1 (the diagonal)")
        length = q.shape[2]
        bs = kn["block_size"]
        block_mode = js_distance(q, k, kn["window"], bs) < kn["tau"]
        cols, diags = window_scores(q, k, kn["window"])
        col_order = rank_with_mandatory(cols, kn["sink_columns"])
        diag_order = rank_with_mandatory(diags, kn["local_diagonals"])
        n_min = max(kn["sink_columns"], kn["local_diagonals"])
        n_uniform = uniform_count(col_order, diag_order, length, compression, n_min)
        floor = max(n_min, min(kn["min_budget"], n_uniform))
        counts = torch.full(cols.shape[:2], n_uniform, device=q.device)
        alpha = 0.0
        vs_heads = ~block_mode
        if floor < n_uniform and bool(vs_heads.any()):
            mass = lines_for_mass(cols, diags, col_order, diag_order)
            target = causal_entries(length) / compression

            def counts_at(a: float) -> torch.Tensor:
                need = torch.searchsorted(mass, torch.full_like(mass[..., :1], a)).squeeze(-1) + 1
                return need.clamp(min=floor, max=length)

            def mean_cov(a: float) -> float:
                cov = coverage(col_order, diag_order, counts_at(a), length)
                return float(cov[vs_heads].mean())

            lo, hi = 0.0, 1.0
            for _ in range(30):
                mid = (lo + hi) / 2
                if mean_cov(mid) < target:
                    lo = mid
                else:
                    hi = mid
            alpha = hi
            counts = counts_at(alpha)
        vs = VSPattern(
            keep_masks(col_order, counts),
            keep_masks(diag_order, counts),
            coverage(col_order, diag_order, counts, length),
        )
        blocks = None
        per_row = 0
        if bool(block_mode.any()):
            per_row = choose_blocks_per_row(length, bs, compression, 2)
            blocks = select_blocks(q, k, bs, per_row, 1, 1)
        stats = {
            "alpha": alpha,
            "block_heads": int(block_mode.sum()),
            "blocks_per_row": per_row,
            "mean_lines": float(counts.double()[vs_heads].mean()) if bool(vs_heads.any()) else 0.0,
        }
        return vs, blocks, block_mode, stats

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
        vs, blocks, block_mode, stats = self.pattern(q, k, c, **knobs)
        entries = vs.entries
        if blocks is not None:
            entries = torch.where(block_mode, blocks.computed_entries(), entries)
        if be == "triton":
            from scalelaw.kernels.triton_prefill import flexprefill_attention

            out = flexprefill_attention(q, k, v, vs, blocks, block_mode, kn["block_size"])
        elif bool((entries >= causal_entries(lq)).all()):
            out = dense_causal(q, k, v)
        else:
            out = vertical_slash_torch(q, k, v, vs.col_keep, vs.diag_keep, heads=~block_mode)
            if blocks is not None:
                # Only the block-mode heads, each with its own copy of its KV head.
                bi, hi = torch.nonzero(block_mode, as_tuple=True)
                g = h // k.shape[1]
                sub = block_sparse_torch(
                    q[bi, hi][None],
                    k[bi, hi // g][None],
                    v[bi, hi // g][None],
                    blocks.index[bi, hi][None],
                    blocks.counts[bi, hi][None],
                    blocks.block_size,
                )
                out[bi, hi] = sub[0]
        achieved = causal_entries(lq) * b * h / float(entries.sum())
        parts = [f"L={lq}"]
        if stats["block_heads"]:
            parts.append(
                f"{stats['block_heads']} block-mode heads keep {stats['blocks_per_row']} "
                f"of {math.ceil(lq / kn['block_size'])} blocks per row"
            )
        if stats["block_heads"] < b * h:
            parts.append(f"vertical-slash heads keep {stats['mean_lines']:.0f} lines on average")
        why = ", ".join(parts)
        return self._result(out, c, achieved, why, stats)
