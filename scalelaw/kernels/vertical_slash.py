"""Vertical-slash prefill: top key columns and top diagonals per head, run as MInference runs them.

The pattern is estimated from the attention of the last `window` queries to every key (a
window x L slice, never L x L): column scores sum over those queries, diagonal scores sum along
each offset i - j. The first `sink_columns` columns and the `local_diagonals` nearest diagonals
are always kept; equal numbers n of columns and diagonals are kept per head.

The kernel computes what the reference study's kernel (MInference) computes: each kept diagonal
becomes a `block_size`-wide key range per query block, ranges merge into runs of whole tiles, and
a kept column is computed only where no tile covers it (`scalelaw.kernels.tiles`). The achieved
compression counts those cells (block x block per tile, block per column), and n is chosen so
that they come closest to L(L+1)/2C (`budget_rule = "exact"`) or n is the reference study's
count for the length and level (`"study"`, the default; `scalelaw.kernels.study_budgets`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from scalelaw.kernels.base import PatternPrefill, PrefillPlan, causal_entries
from scalelaw.kernels.deferred import Deferred, DeferredPlan, DeferredStats
from scalelaw.kernels.reference import CHUNK_ELEMENTS, last_window_probs
from scalelaw.kernels.specs import SPECS, is_dense
from scalelaw.kernels.study_budgets import vertical_slash_budget
from scalelaw.kernels.tiles import LineBounds, TileIndex, lines_cells, lines_index


def window_scores(
    q: torch.Tensor, k: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and diagonal scores (B, H, L) from the last `window` queries, per KV-head group:
    by the Triton kernels on CUDA (`scalelaw.kernels.triton_scores`), else by
    `window_scores_torch`."""
    if q.is_cuda and _triton_scores():
        from scalelaw.kernels.triton_scores import window_scores_triton  # deferred: triton

        return window_scores_triton(q, k, window)
    return window_scores_torch(q, k, window)


def _triton_scores() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def window_scores_torch(
    q: torch.Tensor, k: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference window scores: the last `window` queries' softmax over every key, summed
    per key column and per diagonal offset i - j. Chunked over KV heads to bound the
    (window x L) fp32 probabilities in memory."""
    b, h, length, _ = q.shape
    hkv = k.shape[1]
    g = h // hkv
    w = min(window, length)
    rows = torch.arange(length - w, length, device=q.device)[:, None]
    offs = (rows - torch.arange(length, device=q.device)[None, :]).clamp(min=0).reshape(-1)
    step = max(1, CHUNK_ELEMENTS // max(1, b * g * w * length))
    cols, diags = [], []
    for s in range(0, hkv, step):
        e = min(hkv, s + step)
        qs = q if (s, e) == (0, hkv) else q[:, s * g : e * g]
        ks = k if (s, e) == (0, hkv) else k[:, s:e]
        probs = last_window_probs(qs, ks, w)  # (B, hg, w, L)
        cols.append(probs.sum(2))
        flat = probs.view(b, (e - s) * g, w * length)
        diag = torch.zeros(b, (e - s) * g, length, dtype=torch.float32, device=q.device)
        diags.append(diag.scatter_add_(-1, offs.expand_as(flat), flat))
    if len(cols) == 1:
        return cols[0], diags[0]
    return torch.cat(cols, 1), torch.cat(diags, 1)


def rank_with_mandatory(scores: torch.Tensor, n_forced: int) -> torch.Tensor:
    """Indices sorted by descending score, the first `n_forced` indices placed first."""
    forced = torch.arange(scores.shape[-1], device=scores.device) < n_forced
    return torch.argsort(
        scores.masked_fill(forced, float("inf")), dim=-1, descending=True, stable=True
    )


def uniform_count(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    length: int,
    compression: float,
    n_min: int,
    bs: int,
) -> int:
    """The common n of columns and diagonals whose mean computed cells come closest to
    L(L+1)/2C in log ratio (at least n_min).

    The search grows n geometrically before bisecting: a count costs in proportion to n, so a
    sparse request never pays for evaluating dense ones. The host reads the device once per
    `GROWTH_PROBES` growth steps and once at the end: the growth steps of a group are queued
    together, and the bisection runs on the device, as wide as the count that ended the growth
    (known on the host by then), for as many steps as the host's bisection would take at most.
    Every count it visits, and so the count chosen, is the one the host's search (one read a
    step) visits.
    """
    if is_dense(compression):
        return length  # every line: the tiles then cover the whole causal triangle
    target = causal_entries(length) / compression
    lo = max(1, min(n_min, length))
    probes = [lo]
    while probes[-1] < length:
        probes.append(min(length, 2 * probes[-1]))
    for first in range(0, len(probes), GROWTH_PROBES):
        group = probes[first : first + GROWTH_PROBES]
        means = torch.stack(
            [_mean_cells(col_order, diag_order, p, p, length, bs) for p in group]
        ).tolist()
        crossed = [i for i, cells in enumerate(means) if cells >= target]
        if crossed:
            at = first + crossed[0]
            break
    else:
        return length  # even every line stays sparser than C
    if at == 0:
        return lo
    below, hi = probes[at - 1], probes[at]
    return _bisect_count(col_order, diag_order, length, bs, target, below, hi)


# Growth steps queued between reads: widths grow 16-fold within a group, so a group costs at
# most about twice its widest count, and a count up to 16 times the floor needs one group.
GROWTH_PROBES = 5


def _mean_cells(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    n: int | torch.Tensor,
    width: int,
    length: int,
    bs: int,
) -> torch.Tensor:
    """Mean cells over (B, H) of n columns and n diagonals per head (n a count on the device,
    at most `width`), as a 0-d float64 tensor: nothing is read."""
    b, h = col_order.shape[:2]
    if isinstance(n, int):
        counts = torch.full((b, h), n, device=col_order.device)
    else:
        counts = n.expand(b, h)
    bounds = LineBounds.uniform(width, length)
    return lines_cells(col_order, diag_order, counts, counts, length, bs, bounds).mean()


def _bisect_count(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    length: int,
    bs: int,
    target: float,
    below: int,
    hi: int,
) -> int:
    """The least n in (below, hi] whose cells reach `target` (cells(below) < target <= cells(hi)),
    found by bisection on the device, or n - 1 where that is closer in log ratio: one read.

    The bisection halves [a, z] to one count in at most ceil(log2(hi - below)) steps; a step
    after it has ended leaves a and z as they are, so that number of steps, known on the host,
    visits what the host's loop visits.
    """
    dev = col_order.device
    a = torch.full((), below + 1, device=dev)
    z = torch.full((), hi, device=dev)
    for _ in range((hi - below - 1).bit_length()):
        mid = torch.div(a + z, 2, rounding_mode="floor")
        reached = _mean_cells(col_order, diag_order, mid, hi, length, bs) >= target
        searching = a < z
        z = torch.where(searching & reached, mid, z)
        a = torch.where(searching & ~reached, mid + 1, a)
    before = _mean_cells(col_order, diag_order, a - 1, hi, length, bs)
    at = _mean_cells(col_order, diag_order, a, hi, length, bs)
    n, cells_before, cells_at = torch.stack([a.double(), before, at]).tolist()
    # the side closer in log ratio, compared on the host as the host's search compares them
    if abs(math.log(cells_before / target)) < abs(math.log(cells_at / target)):
        return int(n) - 1
    return int(n)


def keep_masks(order: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return ranks < n[..., None]


@dataclass
class VSPattern:
    """The tiles of kept columns and diagonals per (batch, head), and the kept lines as
    (B, H, L) bool masks (built when first read: the kernel needs only the tiles)."""

    index: TileIndex
    lines: int | None = None  # columns (= diagonals) per head, where the host chose one count
    masks: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, repr=False)

    @cached_property
    def _keep(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.masks is None:
            raise ValueError("this pattern was built without its line masks")
        return self.masks()

    @property
    def col_keep(self) -> torch.Tensor:
        return self._keep[0]

    @property
    def diag_keep(self) -> torch.Tensor:
        return self._keep[1]

    @property
    def entries(self) -> torch.Tensor:
        """Cells the kernel computes per (B, H)."""
        return self.index.cells()

    def keep_fn(self) -> Any:
        return self.index.keep_fn()


def lines_pattern(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    n_col: torch.Tensor,
    n_diag: torch.Tensor,
    length: int,
    bs: int,
    bounds: LineBounds | None = None,
    lines: int | None = None,
) -> VSPattern:
    """The pattern of the top n_col columns and n_diag diagonals; `bounds` bound the counts on
    the host (without them, one read of the counts sizes the index)."""
    if bounds is None:
        bounds = LineBounds.read(n_col, n_diag, length)
    if bounds.every_diagonal:
        # every diagonal: each query block's run covers all keys up to its diagonal, the
        # columns add nothing, and the index is the causal one (built without the walk)
        b, h = n_diag.shape
        index = TileIndex.causal(b, h, length, bs, col_order.device)
    else:
        index = lines_index(col_order, diag_order, n_col, n_diag, length, bs, bounds)

    def masks() -> tuple[torch.Tensor, torch.Tensor]:
        return keep_masks(col_order, n_col), keep_masks(diag_order, n_diag)

    return VSPattern(index, lines, masks)


class VerticalSlash(PatternPrefill[VSPattern]):
    spec = SPECS["vertical-slash"]

    def pattern(
        self, q: torch.Tensor, k: torch.Tensor, compression: float, **knobs: Any
    ) -> VSPattern:
        kn = self._call_knobs(knobs)
        length = q.shape[2]
        cols, diags = window_scores(q, k, kn["window"])
        col_order = rank_with_mandatory(cols, kn["sink_columns"])
        diag_order = rank_with_mandatory(diags, kn["local_diagonals"])
        n_min = max(kn["sink_columns"], kn["local_diagonals"])
        if kn["budget_rule"] == "study" and not is_dense(compression):
            at = kn["budget_length"] or length
            n = min(length, max(n_min, vertical_slash_budget(at, compression).lines))
        else:
            n = uniform_count(col_order, diag_order, length, compression, n_min, kn["block_size"])
        counts = torch.full(cols.shape[:2], n, device=q.device)
        bounds = LineBounds.uniform(n, length)
        return lines_pattern(
            col_order, diag_order, counts, counts, length, kn["block_size"], bounds, lines=n
        )

    def plan(self, pattern: VSPattern, length: int, knobs: dict[str, Any]) -> PrefillPlan:
        # the text and stats read the device only when read, after the kernel is queued
        lines = pattern.lines
        n = Deferred(lambda: int(pattern.col_keep[0, 0].sum())) if lines is None else None
        counts = pattern.index.counts
        tiles = Deferred(lambda: float(counts.double().mean()))
        rule = knobs.get("budget_rule", "exact")

        def why() -> str:
            count = lines if n is None else n.value
            return (
                f"L={length}, {count} columns and diagonals per head ({rule} budget, at least "
                f"{max(knobs['sink_columns'], knobs['local_diagonals'])}), {tiles.value:.1f} "
                f"tiles of {knobs['block_size']} per query block"
            )

        stats = DeferredStats(lines_per_head=lines if n is None else n, tiles_per_row=tiles)
        return DeferredPlan(pattern.index, pattern.entries, why, stats)
