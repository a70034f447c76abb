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
from collections.abc import Callable
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
# Steps of that bisection decided together from one read of a ladder of 2^LADDER_STEPS + 1
# levels; the rest run on the device.
LADDER_STEPS = 4

Counts = tuple[torch.Tensor, torch.Tensor]


def _solve_alpha(
    counts_at: Callable[[float | torch.Tensor, int], Counts],
    cells_at: Callable[[torch.Tensor, torch.Tensor, LineBounds], torch.Tensor],
    target: float,
    floor: int,
    least: LineBounds,
    length: int,
) -> tuple[torch.Tensor, LineBounds] | None:
    """The coverage alpha whose mean cells come closest to `target` in log ratio, as
    ALPHA_STEPS of bisection on [0, 1] find it (a 0-d tensor, not read), with bounds on the
    counts it gives; None when alpha = 0 is already denser than the target. `least`: the
    counts at alpha = 0 when each head's top line holds some mass (the floor, or the
    mandatory lines).

    Two reads of the device however many steps. The first reads the widest counts at the
    ladder's levels j / 2^LADDER_STEPS, which size the index walks, and the cells at alpha = 0
    (sized by `least`, used when the counts there turn out no wider): denser than C ends the
    search there. The second reads the cells at the other levels, which decides the
    bisection's first LADDER_STEPS steps at once (cells grow with alpha, so the bracket is the
    first level that reaches the target and the one below it). The remaining steps run on the
    device inside the bracket, as wide as its top level's counts. Every level visited is one
    the host's loop, a read per step, would visit, so the alpha chosen is the same.
    """
    rungs = 2**LADDER_STEPS
    levels = [j / rungs for j in range(rungs + 1)]
    counts = [counts_at(a, floor) for a in levels]
    widest = [torch.stack([c.max(), d.max(), d.min()]).double() for c, d in counts]
    read = torch.cat([*widest, cells_at(*counts[0], least)[None]]).tolist()
    bounds = [
        LineBounds(max(1, int(c)), max(1, int(d)), int(m) >= length)
        for c, d, m in zip(read[0:-1:3], read[1:-1:3], read[2:-1:3], strict=True)
    ]
    exact_at_zero = bounds[0].columns <= least.columns and bounds[0].diagonals <= least.diagonals
    if exact_at_zero and read[-1] > target:
        return None
    # the host's bisection never evaluates alpha = 1 (the densest counts): when every interior
    # level stays below the target, the bracket's top is 1 whatever its cells
    inner = zip(counts[:rungs], bounds[:rungs], strict=True)
    cells = torch.stack([cells_at(c, d, b) for (c, d), b in inner])
    at_level = cells.tolist()
    if at_level[0] > target:
        return None
    top = next((j for j in range(1, rungs) if at_level[j] >= target), rungs)
    # the bracket's top bounds every count inside it; none of them is known to keep every
    # diagonal, so the walk runs (the causal shortcut needs every head to keep them all)
    wide = LineBounds(bounds[top].columns, bounds[top].diagonals, False)
    dev = cells.device
    # filled on the device: a tensor made from a host number would be a copy to it
    lo = torch.full((), levels[top - 1], dtype=torch.float64, device=dev)
    hi = torch.full((), levels[top], dtype=torch.float64, device=dev)
    for _ in range(ALPHA_STEPS - LADDER_STEPS):
        mid = (lo + hi) / 2
        below = cells_at(*counts_at(mid, floor), wide) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    # the side whose cells are closer to the target in log ratio
    ratio = torch.stack([cells_at(*counts_at(x, floor), wide) for x in (lo, hi)]) / target
    closer_low = ratio[0].log().abs() < ratio[1].log().abs()
    return torch.where(closer_low, lo, hi), wide


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


def cover_count(mass: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """(B, H) lines whose cumulative mass stays within alpha, plus the one that crosses it
    (alpha a number, or a 0-d tensor on the device that is not read)."""
    if isinstance(alpha, torch.Tensor):
        level = alpha.to(mass.dtype).expand_as(mass[..., :1]).contiguous()
    else:
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

        def counts_at(alpha: float | torch.Tensor, floor: int) -> tuple[torch.Tensor, torch.Tensor]:
            n_col = cover_count(col_mass, alpha).clamp(max(floor, kn["sink_columns"]), length)
            n_diag = cover_count(diag_mass, alpha).clamp(max(floor, kn["local_diagonals"]), length)
            return n_col, n_diag

        def cells_at(n_col: torch.Tensor, n_diag: torch.Tensor, bounds: LineBounds) -> torch.Tensor:
            """Mean cells over the line heads, a 0-d tensor: nothing is read."""
            cells = lines_cells(col_order, diag_order, n_col, n_diag, length, bs, bounds)
            return torch.where(lines, cells, 0.0).sum() / lines.sum()

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
        else:
            # alpha = 0 covers one line (a head's top line holds some mass), so every head
            # keeps the floor or its mandatory lines
            least = LineBounds(
                min(length, max(floor, kn["sink_columns"])),
                min(length, max(floor, kn["local_diagonals"])),
                False,
            )
            found = _solve_alpha(counts_at, cells_at, target, floor, least, length)
            if found is None:
                # min_budget lines alone are denser than C: the study's alpha = 0 rows
                alpha = 0.0
                n_min = max(kn["sink_columns"], kn["local_diagonals"])
                floor = uniform_count(col_order, diag_order, length, compression, n_min, bs)
                n_col, n_diag = counts_at(alpha, floor)
                # alpha = 0 covers one line (a head's top line holds some mass), so every head
                # keeps the floor: the index's widths are known without a read
                bounds = LineBounds(
                    min(length, max(floor, kn["sink_columns"])),
                    min(length, max(floor, kn["local_diagonals"])),
                    False,
                )
            else:
                solved, bounds = found
                alpha = Deferred(lambda: float(solved))
                n_col, n_diag = counts_at(solved, floor)
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
            alpha=alpha
            if isinstance(alpha, Deferred)
            else float(alpha if alpha is not None else 1.0),
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
