"""Tile lists: what a sparse prefill kernel computes, and MInference's vertical-slash index.

A `TileIndex` holds, per (batch, head, query block), the first key column of every key tile the
kernel computes (tiles are `block` keys wide and need not be aligned to blocks) and the single
key columns it computes outside those tiles. Both the PyTorch path and the Triton kernel take
it, so they compute the same cells, and `cells()` counts them.

Vertical-slash patterns become tiles as MInference's index does (the kernel the reference
study ran): for query block m (rows up to e = (m + 1) * block) a kept diagonal o < e becomes
the key range [s - block, s) with s = max(e - o, block); ranges are walked left to right and a
range that starts inside the tiles laid so far extends them by one tile, otherwise it opens a
new run of tiles; a kept column counts only where no tile covers it.

That walk is sequential, but its breaks depend only on where the current run is anchored
modulo the block, and the relative positions of the diagonals are the same in every query
block. So per head the runs are found once for every anchor phase, chained, and summed by
pointer doubling; each query block then only looks up where its walk enters the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scalelaw.kernels.reference import CHUNK_ELEMENTS

# Slot value past every real tile start: sorts last and covers nothing.
_FAR = torch.iinfo(torch.int32).max


@dataclass
class TileIndex:
    """Tiles and single columns per query block.

    `starts` (B, H, nb, K) and `cols` (B, H, nb, V) are ascending and valid up to `counts` and
    `col_counts` (B, H, nb).
    """

    starts: torch.Tensor
    counts: torch.Tensor
    cols: torch.Tensor
    col_counts: torch.Tensor
    block: int
    length: int

    @property
    def n_blocks(self) -> int:
        return self.starts.shape[2]

    def cells(self) -> torch.Tensor:
        """Cells the kernel computes per (batch, head): block x block per tile, block per column."""
        tiles = self.counts.double().sum(-1)
        cols = self.col_counts.double().sum(-1)
        return self.block * (self.block * tiles + cols)

    @classmethod
    def from_blocks(
        cls, index: torch.Tensor, counts: torch.Tensor, block: int, length: int
    ) -> TileIndex:
        """Aligned key blocks (block indices per query block) as tiles, with no single columns."""
        b, h, nb, _ = index.shape
        empty = torch.zeros(b, h, nb, 0, dtype=torch.int32, device=index.device)
        return cls(
            (index.long() * block).to(torch.int32),
            counts.to(torch.int32),
            empty,
            torch.zeros_like(counts, dtype=torch.int32),
            block,
            length,
        )

    @classmethod
    def causal(
        cls, batch: int, heads: int, length: int, block: int, device: torch.device
    ) -> TileIndex:
        """Every tile up to the diagonal: what a dense causal kernel computes."""
        nb = math.ceil(length / block)
        kb = torch.arange(nb, device=device)
        index = kb.expand(batch, heads, nb, nb).contiguous()
        counts = (kb + 1).expand(batch, heads, nb).contiguous()
        return cls.from_blocks(index, counts, block, length)

    def choose(self, other: TileIndex, use_other: torch.Tensor) -> TileIndex:
        """Per (batch, head) this index or `other` (`use_other` (B, H) bool); same block size."""
        if other.block != self.block:
            raise ValueError("tile indexes of different block sizes cannot be combined")

        def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            width = max(a.shape[-1], b.shape[-1])
            a = torch.nn.functional.pad(a, (0, width - a.shape[-1]))
            b = torch.nn.functional.pad(b, (0, width - b.shape[-1]))
            return torch.where(use_other[:, :, None, None], b, a)

        sel = use_other[:, :, None]
        return TileIndex(
            pick(self.starts, other.starts),
            torch.where(sel, other.counts, self.counts),
            pick(self.cols, other.cols),
            torch.where(sel, other.col_counts, self.col_counts),
            self.block,
            self.length,
        )

    def block_rows(self, m0: int, m1: int, kend: int) -> torch.Tensor:
        """Keys computed by query blocks m0..m1-1: (B, H, m1 - m0, kend) bool (for oracles)."""
        b, h = self.starts.shape[:2]
        dev = self.starts.device
        n = m1 - m0
        diff = torch.zeros(b, h, n, kend + self.block + 1, dtype=torch.int32, device=dev)
        st = self.starts[:, :, m0:m1].long()
        ok = torch.arange(st.shape[-1], device=dev) < self.counts[:, :, m0:m1, None]
        st = torch.where(ok, st.clamp(max=kend), torch.full_like(st, kend + self.block))
        diff.scatter_add_(-1, st, ok.to(torch.int32))
        diff.scatter_add_(-1, (st + self.block).clamp(max=kend + self.block), -ok.to(torch.int32))
        mask = diff.cumsum(-1)[..., :kend] > 0
        cols = self.cols[:, :, m0:m1].long()
        cok = torch.arange(cols.shape[-1], device=dev) < self.col_counts[:, :, m0:m1, None]
        cols = torch.where(cok & (cols < kend), cols, torch.full_like(cols, kend))
        full = torch.nn.functional.pad(mask, (0, 1))
        full.scatter_(-1, cols, True)
        return full[..., :kend] | mask

    def keep_fn(self) -> object:
        """A keep function for `reference.masked_causal` (rows in any chunking)."""
        bs = self.block

        def keep(s: int, e: int, kend: int) -> torch.Tensor:
            m0, m1 = s // bs, (e - 1) // bs + 1
            rows = self.block_rows(m0, m1, kend).repeat_interleave(bs, dim=2)
            return rows[:, :, s - m0 * bs : e - m0 * bs]

        return keep


def _ceil_div(a: torch.Tensor, b: int) -> torch.Tensor:
    return -torch.div(-a, b, rounding_mode="floor")


@dataclass
class _Walk:
    """MInference's walk over one set of rows (flattened batch x heads)."""

    x: torch.Tensor  # (R, n) -offset of each kept diagonal, ascending; pads (x = 1) at the end
    chain: torch.Tensor  # (R, n + 1) tiles from a run opened at element k to the end; [n] = 0
    jumps: list[torch.Tensor]  # (R, n + 1) the run start 2^j runs ahead of a run start
    head: torch.Tensor  # (R, nb) tiles of the run anchored at key 0 (clamped ranges), or 0
    enter: torch.Tensor  # (R, nb) element where the block's walk joins the shared chain
    tiles: torch.Tensor  # (R, nb) tiles per query block


def _walk(offsets: torch.Tensor, n_real: torch.Tensor, length: int, bs: int, jumps: bool) -> _Walk:
    """Runs of tiles per query block for the kept diagonals `offsets` (R, n), descending."""
    r_all, n = offsets.shape
    dev = offsets.device
    k_idx = torch.arange(n, device=dev)
    real = k_idx < n_real[:, None]
    x = torch.where(real, -offsets.long(), torch.ones_like(offsets, dtype=torch.long))
    x = x.contiguous()
    phase = torch.arange(bs, device=dev)
    end = torch.empty(r_all, n, dtype=torch.long, device=dev)
    end0 = torch.empty_like(end)
    step = max(1, CHUNK_ELEMENTS // (4 * max(1, bs * n)))
    for s in range(0, r_all, step):
        e = min(r_all, s + step)
        # Tile number of each diagonal's range for a run anchored at each phase: a run breaks
        # where that number jumps by 2 or more (the range starts past the tiles laid so far).
        t = _ceil_div(x[s:e, None, :].int() - phase[None, :, None].int(), bs)
        brk = (t[..., 1:] - t[..., :-1]) >= 2
        brk |= (k_idx[1:] >= n_real[s:e, None])[:, None, :]
        # first break after each element, as a suffix minimum over reversed positions
        pos = torch.where(brk, k_idx[1:].int(), n).flip(-1)
        nxt = torch.cat(
            [pos.cummin(-1).values.flip(-1).long(), torch.full_like(pos[..., :1], n).long()], -1
        )
        phi = torch.remainder(x[s:e], bs)
        end[s:e] = nxt.gather(1, phi[:, None, :]).squeeze(1)
        end0[s:e] = nxt[:, 0, :]
    end = torch.where(real, end, n)
    last = x.gather(1, (end - 1).clamp(min=0))
    run = torch.where(real, 1 + _ceil_div(last - x, bs), 0)
    chain = torch.cat([run, torch.zeros_like(run[:, :1])], -1)
    nx = torch.cat([end, torch.full_like(end[:, :1], n)], -1)
    table = [nx]
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):
        chain = chain + chain.gather(1, nx)
        nx = nx.gather(1, nx)
        if jumps:
            table.append(nx)

    nb = math.ceil(length / bs)
    e_m = (torch.arange(nb, device=dev) + 1) * bs
    e_rows = e_m.expand(r_all, nb).contiguous()
    first = torch.searchsorted(x, -e_rows, right=True)  # first diagonal with o < e
    unclamped = torch.searchsorted(x, bs - e_rows)  # first with o <= e - bs
    clamped = first < unclamped
    at = unclamped.clamp(max=n - 1)
    joins = clamped & (unclamped < n_real[:, None]) & (e_rows + x.gather(1, at) <= 2 * bs)
    stop = end0.gather(1, at)
    far = x.gather(1, (stop - 1).clamp(min=0))
    head = torch.where(
        clamped,
        torch.where(joins, _ceil_div(e_rows + far, bs), torch.ones_like(e_rows)),
        torch.zeros_like(e_rows),
    )
    enter = torch.where(joins, stop, unclamped)
    tiles = head + chain.gather(1, enter)
    return _Walk(x, chain, table if jumps else [], head, enter, tiles)


def _top_lines(order: torch.Tensor, n: torch.Tensor, descending: bool) -> torch.Tensor:
    """The first n[r] entries of each ranking, sorted; pads (-1, or `length`) after them."""
    nmax = max(1, int(n.max()))
    top = order[..., :nmax].long()
    real = torch.arange(nmax, device=order.device) < n[..., None]
    fill = -1 if descending else order.shape[-1]
    top = torch.where(real, top, torch.full_like(top, fill))
    return torch.sort(top, dim=-1, descending=descending).values


def _walk_top_diagonals(
    diag_order: torch.Tensor, n_diag: torch.Tensor, length: int, bs: int, jumps: bool
) -> _Walk:
    """The walk over the top n_diag diagonals of each (B, H), one row per (batch, head)."""
    offs = _top_lines(diag_order, n_diag, True).flatten(0, 1)
    return _walk(offs, n_diag.reshape(-1).long(), length, bs, jumps)


def lines_cells(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    n_col: torch.Tensor,
    n_diag: torch.Tensor,
    length: int,
    bs: int,
) -> torch.Tensor:
    """Cells per (B, H) of the top n_col columns and n_diag diagonals: tiles exactly, columns at
    most (a column counted in every query block past its own, as if no tile covered it)."""
    b, h, _ = col_order.shape
    walk = _walk_top_diagonals(diag_order, n_diag, length, bs, jumps=False)
    tiles = walk.tiles.double().sum(-1).reshape(b, h)
    cols = _top_lines(col_order, n_col, False)
    nb = math.ceil(length / bs)
    later = (nb - 1 - torch.div(cols, bs, rounding_mode="floor")).clamp(min=0)
    later = torch.where(cols < length, later, 0)
    return bs * (bs * tiles + later.double().sum(-1))


def lines_index(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    n_col: torch.Tensor,
    n_diag: torch.Tensor,
    length: int,
    bs: int,
) -> TileIndex:
    """MInference's index of the top n_col columns and n_diag diagonals per (B, H)."""
    b, h, _ = col_order.shape
    dev = col_order.device
    walk = _walk_top_diagonals(diag_order, n_diag, length, bs, jumps=True)
    r_all, nb = walk.tiles.shape
    width = max(1, int(walk.tiles.max()))
    e_m = (torch.arange(nb, device=dev) + 1) * bs
    slot = torch.arange(width, device=dev)
    # index tensors are int32 (what the kernel reads): at long L and low C they are the bulk
    starts = torch.empty(r_all, nb, width, dtype=torch.int32, device=dev)
    step = max(1, CHUNK_ELEMENTS // (4 * nb * width))
    for s in range(0, r_all, step):
        e = min(r_all, s + step)
        head = walk.head[s:e, :, None]
        chain = walk.chain[s:e]
        enter = walk.enter[s:e]
        total = chain.gather(1, enter)[:, :, None]  # tiles on the chain from `enter`
        q = slot - head  # slot number along the chain
        g = enter[:, :, None].expand(-1, -1, width).reshape(e - s, -1)
        qf = q.reshape(e - s, -1)
        tf = total.expand(-1, -1, width).reshape(e - s, -1)
        # Binary lifting: the last run start on the chain with at most q tiles before it.
        for table in reversed(walk.jumps):
            cand = table[s:e].gather(1, g)
            ok = tf - chain.gather(1, cand) <= qf
            g = torch.where(ok, cand, g)
        before = (tf - chain.gather(1, g)).reshape(q.shape)
        xg = walk.x[s:e].gather(1, g.clamp(max=walk.x.shape[1] - 1)).reshape(q.shape)
        on_chain = e_m[None, :, None] + xg - bs + (q - before) * bs
        st = torch.where(slot < head, slot * bs, on_chain)
        starts[s:e] = torch.where(slot < walk.tiles[s:e, :, None], st, _FAR)

    cols = _top_lines(col_order, n_col, False).reshape(r_all, -1)
    nv = cols.shape[-1]
    col_counts = torch.empty(r_all, nb, dtype=torch.long, device=dev)
    kept: list[torch.Tensor] = []
    step = max(1, CHUNK_ELEMENTS // (4 * nb * max(nv, width)))
    for s in range(0, r_all, step):
        e = min(r_all, s + step)
        st = starts[s:e].reshape(-1, width).long()
        vals = cols[s:e, None, :].expand(-1, nb, -1).reshape(-1, nv).contiguous()
        idx = torch.searchsorted(st, vals, right=True) - 1
        covered = (idx >= 0) & (vals < st.gather(1, idx.clamp(min=0)) + bs)
        real = (cols[s:e, None, :] < e_m[:, None]) & (cols[s:e, None, :] < length)
        counted = ~covered.reshape(e - s, nb, nv) & real
        col_counts[s:e] = counted.sum(-1)
        wide = int(col_counts[s:e].max())
        order = torch.argsort((~counted).to(torch.int8), dim=-1, stable=True)[..., :wide]
        kept.append(cols[s:e, None, :].expand(-1, nb, -1).gather(-1, order).to(torch.int32))
    nvmax = int(col_counts.max()) if col_counts.numel() else 0
    col_lists = torch.zeros(r_all, nb, nvmax, dtype=torch.int32, device=dev)
    at = 0
    for part in kept:
        col_lists[at : at + part.shape[0], :, : part.shape[-1]] = part
        at += part.shape[0]
    return TileIndex(
        starts.reshape(b, h, nb, width),
        walk.tiles.to(torch.int32).reshape(b, h, nb),
        col_lists.reshape(b, h, nb, nvmax),
        col_counts.to(torch.int32).reshape(b, h, nb),
        bs,
        length,
    )
