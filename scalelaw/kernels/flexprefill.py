"""FlexPrefill as the reference study ran it: per-head column and diagonal counts by coverage.

From the attention of the last `window` queries, each head ranks key columns by their mean
attention and diagonals by their summed attention. A head keeps, separately for columns and for
diagonals, the fewest lines whose attention mass reaches the coverage `alpha` (the first line
that crosses it included), and at least `min_budget` lines; the first `sink_columns` columns and
the `local_diagonals` nearest diagonals are among them. The lines run as vertical-slash does
(MInference's tiles), and the achieved compression counts the cells computed.

How C sets the budget: by default (`budget_rule = "study"`) alpha and min_budget are the
reference study's pair for the length and level (`scalelaw.kernels.study_budgets`), and the
compression recorded is what results. With `budget_rule = "exact"` and `alpha` unset, alpha is solved so that the heads' mean
computed cells give 1/C, which maps a grid of C onto the study's alpha sweep; when even alpha = 0
with `min_budget` lines is denser than C, every head keeps the uniform vertical-slash count
instead, as the study's alpha = 0 rows do (their min_budget set to the vertical-slash budget).
With `alpha` set, the counts follow it and `min_budget` whatever C asks.

Query-aware block mode (`tau` > 0, off in the study): a head whose true block attention is
within Jensen-Shannon distance `tau` of the pooled estimate selects key blocks as block-sparse
does at C.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scalelaw.kernels.base import PatternPrefill, PrefillPlan, causal_entries
from scalelaw.kernels.block_sparse import BlockPattern, pooled, select_blocks
from scalelaw.kernels.budgets import choose_blocks_per_row
from scalelaw.kernels.deferred import Deferred, DeferredPlan, DeferredStats
from scalelaw.kernels.reference import last_window_probs
from scalelaw.kernels.specs import SPECS, is_dense
from scalelaw.kernels.study_budgets import flexprefill_budget
from scalelaw.kernels.tiles import LineBounds, lines_cells
from scalelaw.kernels.vertical_slash import (
    VSPattern,
    lines_pattern,
    rank_with_mandatory,
    uniform_count,
    window_scores,
)

# Bisection steps for a solved alpha: 2^-20 is far below any change of one line.
ALPHA_STEPS = 20


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
        logs = p.clamp_min(1e-30).log() - r.clamp_min(1e-30).log()
        return torch.where(p > 0, p * logs, 0).sum(-1)

    jsd = 0.5 * kl(true, mid) + 0.5 * kl(est, mid)
    return jsd.clamp_min(0).sqrt()


def cumulative_mass(scores: torch.Tensor) -> torch.Tensor:
    """(B, H, L) share of the attention mass held by the top 1, 2, ... lines."""
    top = torch.sort(scores, dim=-1, descending=True).values
    return top.cumsum(-1) / top.sum(-1, keepdim=True).clamp_min(1e-30)


def cover_count(mass: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B, H) lines whose cumulative mass stays within alpha, plus the one that crosses it."""
    level = torch.full_like(mass[..., :1], alpha)
    n = torch.searchsorted(mass.contiguous(), level, right=True).squeeze(-1) + 1
    return n.clamp(max=mass.shape[-1])


#: Line pattern, block pattern of block-mode heads, per-head block-mode flags (B, H), stats.
FlexPattern = tuple[VSPattern, BlockPattern | None, torch.Tensor, dict[str, Any]]


class FlexPrefill(PatternPrefill[FlexPattern]):
    spec = SPECS["flexprefill"]

    def pattern(
        self, q: torch.Tensor, k: torch.Tensor, compression: float, **knobs: Any
    ) -> FlexPattern:
        """Line pattern, block pattern, per-head block-mode flags (B, H), stats."""
        kn = self._call_knobs(knobs)
        b, h, length, _ = q.shape
        bs = kn["block_size"]
        if kn["tau"] > 0:
            block_mode = js_distance(q, k, kn["window"], bs) < kn["tau"]
        else:
            block_mode = torch.zeros(b, h, dtype=torch.bool, device=q.device)
        cols, diags = window_scores(q, k, kn["window"])
        col_order = rank_with_mandatory(cols, kn["sink_columns"])
        diag_order = rank_with_mandatory(diags, kn["local_diagonals"])
        col_mass, diag_mass = cumulative_mass(cols), cumulative_mass(diags)
        lines = ~block_mode
        target = causal_entries(length) / compression

        def counts_at(alpha: float, floor: int) -> tuple[torch.Tensor, torch.Tensor]:
            n_col = cover_count(col_mass, alpha).clamp(max(floor, kn["sink_columns"]), length)
            n_diag = cover_count(diag_mass, alpha).clamp(max(floor, kn["local_diagonals"]), length)
            return n_col, n_diag

        def mean_cells(n_col: torch.Tensor, n_diag: torch.Tensor) -> float:
            cells = lines_cells(col_order, diag_order, n_col, n_diag, length, bs)
            # over the line heads without a boolean mask: one read of the device, not two
            return float(torch.where(lines, cells, 0.0).sum() / lines.sum())

        bounds: LineBounds | None = None  # None: read from the counts, once
        floor = kn["min_budget"]
        alpha = kn["alpha"]
        if is_dense(compression):
            # every line: the tiles cover the whole causal triangle, as dense attention does
            floor = length
            n_col, n_diag = counts_at(1.0, floor)
            bounds = LineBounds.uniform(length, length)
        elif alpha is not None:
            n_col, n_diag = counts_at(alpha, floor)
        elif kn["budget_rule"] == "study":
            budget = flexprefill_budget(kn["budget_length"] or length, compression)
            alpha, floor = budget.alpha, budget.min_budget
            n_col, n_diag = counts_at(alpha, floor)
        elif kn["tau"] > 0 and not bool(lines.any()):
            # without block mode every head is a line head: the host knows it without a read
            alpha = 0.0
            n_col, n_diag = counts_at(alpha, floor)
        elif mean_cells(*counts_at(0.0, floor)) > target:
            # min_budget lines alone are denser than C: the study's alpha = 0 rows
            alpha = 0.0
            n_min = max(kn["sink_columns"], kn["local_diagonals"])
            floor = uniform_count(col_order, diag_order, length, compression, n_min, bs)
            n_col, n_diag = counts_at(alpha, floor)
        else:
            lo, hi = 0.0, 1.0
            for _ in range(ALPHA_STEPS):
                mid = (lo + hi) / 2
                if mean_cells(*counts_at(mid, floor)) < target:
                    lo = mid
                else:
                    hi = mid
            # the side whose cells are closer to the target in log ratio
            below, above = mean_cells(*counts_at(lo, floor)), mean_cells(*counts_at(hi, floor))
            alpha = lo if abs(math.log(below / target)) < abs(math.log(above / target)) else hi
            n_col, n_diag = counts_at(alpha, floor)
        vs = lines_pattern(col_order, diag_order, n_col, n_diag, length, bs, bounds)
        blocks = None
        block_heads: int | Deferred = 0
        per_row: int | Deferred = 0
        if kn["tau"] > 0:
            # built whether or not a head turns out to be in block mode: finding out would
            # read the device
            blocks_per_row = choose_blocks_per_row(length, bs, compression, 2)
            blocks = select_blocks(q, k, bs, blocks_per_row, 1, 1)
            block_heads = Deferred(lambda: int(block_mode.sum()))
            per_row = Deferred(lambda: blocks_per_row if int(block_mode.sum()) else 0)

        def mean_of(n: torch.Tensor) -> Deferred:
            def read() -> float:
                return float(n.double()[lines].mean()) if bool(lines.any()) else 0.0

            return Deferred(read)

        stats = DeferredStats(
            alpha=float(alpha if alpha is not None else 1.0),
            min_budget=int(floor),
            block_heads=block_heads,
            blocks_per_row=per_row,
            mean_columns=mean_of(n_col),
            mean_diagonals=mean_of(n_diag),
        )
        return vs, blocks, block_mode, stats

    def plan(self, pattern: FlexPattern, length: int, knobs: dict[str, Any]) -> PrefillPlan:
        vs, blocks, block_mode, stats = pattern
        index = vs.index
        cells = vs.entries
        if blocks is not None:
            index = index.choose(blocks.tiles(), block_mode)
            cells = torch.where(block_mode, blocks.computed_entries(), cells)
        heads = block_mode.numel()

        def why() -> str:
            parts = [f"L={length}"]
            if stats["block_heads"]:
                parts.append(
                    f"{stats['block_heads']} block-mode heads keep {stats['blocks_per_row']} "
                    f"of {math.ceil(length / knobs['block_size'])} blocks per row"
                )
            if stats["block_heads"] < heads:
                parts.append(
                    f"alpha {stats['alpha']:.3g}, at least {stats['min_budget']} lines: "
                    f"{stats['mean_columns']:.0f} columns and {stats['mean_diagonals']:.0f} "
                    "diagonals per head on average"
                )
            return ", ".join(parts)

        return DeferredPlan(index, cells, why, stats)
