"""Block-sparse prefill: top-k key blocks per query block from mean-pooled q and k.

The pattern is a list of key-block indices per query block (the form the Triton kernel reads).
Each query block keeps the same number k of key blocks (the study's `top_chunks`), always
including the first `sink_blocks` blocks and the last `local_blocks` blocks up to the diagonal;
rows with fewer than k causal blocks keep all of theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from scalelaw.kernels.base import PatternPrefill, PrefillPlan
from scalelaw.kernels.budgets import block_pairs_compression, choose_blocks_per_row
from scalelaw.kernels.reference import CHUNK_ELEMENTS
from scalelaw.kernels.specs import SPECS
from scalelaw.kernels.tiles import TileIndex


@dataclass
class BlockPattern:
    """Kept key blocks per query block: `index` (B, H, nb, k) ascending, valid up to `counts`."""

    index: torch.Tensor
    counts: torch.Tensor  # (B, H, nb) int32
    block_size: int
    length: int

    @property
    def n_blocks(self) -> int:
        return self.index.shape[2]

    def block_mask(self) -> torch.Tensor:
        """(B, H, nb, nb) bool; small (blocks, not tokens)."""
        b, h, nb, k = self.index.shape
        valid = torch.arange(k, device=self.index.device) < self.counts[..., None]
        mask = torch.zeros(b, h, nb, nb + 1, dtype=torch.bool, device=self.index.device)
        idx = torch.where(valid, self.index, torch.full_like(self.index, nb))
        mask.scatter_(-1, idx.long(), True)
        return mask[..., :nb]

    def tiles(self) -> TileIndex:
        """The kept blocks as the tile list the kernels run."""
        return TileIndex.from_blocks(self.index, self.counts, self.block_size, self.length)

    def keep_fn(self) -> Any:
        mask = self.block_mask()
        bs = self.block_size

        def keep(s: int, e: int, kend: int) -> torch.Tensor:
            rows = mask[:, :, s // bs : (e - 1) // bs + 1].repeat_interleave(bs, dim=2)
            rows = rows[:, :, s % bs : s % bs + (e - s)]
            return rows.repeat_interleave(bs, dim=3)[..., :kend]

        return keep

    def computed_entries(self) -> torch.Tensor:
        """Causal (query, key) pairs computed per (batch, head): (B, H) float64."""
        bs = self.block_size
        lens = block_lengths(self.length, bs).to(self.index.device)
        # Every kept block left of the diagonal is full; the diagonal block is a triangle.
        counts = self.counts.double()
        per_row = lens * ((counts - 1) * bs + (lens + 1) / 2)
        return per_row.sum(-1)


def block_lengths(length: int, bs: int) -> torch.Tensor:
    nb = math.ceil(length / bs)
    lens = torch.full((nb,), float(bs), dtype=torch.float64)
    lens[-1] = length - (nb - 1) * bs
    return lens


def pooled(x: torch.Tensor, bs: int) -> torch.Tensor:
    """Mean over each block of `bs` positions (last block may be shorter): (B, H, nb, D)."""
    b, h, length, d = x.shape
    nb = math.ceil(length / bs)
    pad = nb * bs - length
    xf = x.float()
    if pad:
        xf = torch.cat([xf, xf.new_zeros(b, h, pad, d)], dim=2)
    sums = xf.reshape(b, h, nb, bs, d).sum(3)
    lens = block_lengths(length, bs).to(device=x.device, dtype=torch.float32)
    return sums / lens[:, None]


def select_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    bs: int,
    per_row: int,
    sink_blocks: int,
    local_blocks: int,
) -> BlockPattern:
    """Top `per_row` key blocks per query block by pooled scores, mandatory blocks first."""
    b, h, length, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    nb = math.ceil(length / bs)
    per_row = min(per_row, nb)
    qp = pooled(q, bs).reshape(b, hkv, g, nb, d)
    kp = pooled(k, bs).unsqueeze(2).transpose(-1, -2)  # (B, Hkv, 1, D, nb)
    index = torch.empty(b, h, nb, per_row, dtype=torch.int32, device=q.device)
    kb = torch.arange(nb, device=q.device)
    rows = max(1, CHUNK_ELEMENTS // max(1, b * h * nb))
    for s in range(0, nb, rows):
        e = min(nb, s + rows)
        qb = torch.arange(s, e, device=q.device)[:, None]
        scores = torch.matmul(qp[:, :, :, s:e], kp).reshape(b, h, e - s, nb)
        forced = (kb[None, :] < sink_blocks) | ((qb - kb[None, :]) < local_blocks)
        scores = scores.masked_fill(forced, float("inf"))
        scores = scores.masked_fill(kb[None, :] > qb, float("-inf"))
        top = torch.topk(scores, per_row, dim=-1).indices
        # Slots beyond a row's causal blocks picked -inf entries: push them to the end.
        top = torch.where(top > qb, torch.full_like(top, nb), top)
        index[:, :, s:e] = torch.sort(top, dim=-1).values.to(torch.int32)
    counts = torch.clamp(torch.arange(1, nb + 1, device=q.device), max=per_row)
    counts = counts.to(torch.int32).expand(b, h, nb).contiguous()
    index = torch.where(index >= nb, torch.zeros_like(index), index)
    return BlockPattern(index, counts, bs, length)


class BlockSparse(PatternPrefill[BlockPattern]):
    spec = SPECS["block-sparse"]

    def pattern(
        self, q: torch.Tensor, k: torch.Tensor, compression: float, **knobs: Any
    ) -> BlockPattern:
        """Choose the blocks only (the estimation step)."""
        kn = self._call_knobs(knobs)
        bs = kn["block_size"]
        length = q.shape[2]
        k_min = kn["sink_blocks"] + kn["local_blocks"]
        per_row = choose_blocks_per_row(length, bs, compression, k_min)
        return select_blocks(q, k, bs, per_row, kn["sink_blocks"], kn["local_blocks"])

    def plan(self, pattern: BlockPattern, length: int, knobs: dict[str, Any]) -> PrefillPlan:
        # token-level causal entries: a kept diagonal block counts as the triangle it computes
        per_row = pattern.index.shape[-1]
        nb = pattern.n_blocks
        why = f"L={length}, block {pattern.block_size}, {per_row} of {nb} blocks per row"
        stats = {"blocks_per_row": per_row, "n_blocks": nb}
        study = block_pairs_compression(nb, per_row)
        return PrefillPlan(pattern.tiles(), pattern.computed_entries(), why, stats, study)
