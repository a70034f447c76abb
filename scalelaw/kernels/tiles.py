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

`lines_index` builds the index in a number of ATen ops that does not depend on the data, and
without reading the device: its tensors are as wide as `LineBounds` (known on the host) allow,
every query block's walk is marked along the chain by pointer doubling, and the tiles and the
columns outside them are compacted by sorting. Only chunks of rows, sized from the bounds to cap
the temporaries, repeat ops. On CUDA the same lists come from two Triton kernels
(`scalelaw.kernels.triton_scores.lines_index_triton`), one program per (row, query block) as
MInference's own index kernel runs: no grids, no chunks, one launch each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scalelaw.kernels.reference import CHUNK_ELEMENTS
from scalelaw.kernels.reference import FAR as _FAR


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
        return self.counts.shape[2]

    def cells(self) -> torch.Tensor:
        """Cells the kernel computes per (batch, head): block x block per tile, block per column."""
        per_block = torch.add(self.col_counts, self.counts, alpha=self.block)
        return self.block * per_block.double().sum(-1)

    def _lists(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tile and column lists as built (no read of the device)."""
        return self.starts, self.cols

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
        (starts, cols), (other_starts, other_cols) = self._lists(), other._lists()
        padded = isinstance(self, PaddedTileIndex) or isinstance(other, PaddedTileIndex)
        return (PaddedTileIndex if padded else TileIndex)(
            pick(starts, other_starts),
            torch.where(sel, other.counts, self.counts),
            pick(cols, other_cols),
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


class PaddedTileIndex(TileIndex):
    """A `TileIndex` whose lists are as wide as host-known bounds allow, built without reading
    the device. Read on the host, where reading the counts costs nothing, the lists come
    trimmed to the widest query block, so the PyTorch attention path does not compute the
    padding; on a GPU they stay as built (the kernel stops at the counts)."""

    _starts: torch.Tensor
    _cols: torch.Tensor
    _trimmed_starts: torch.Tensor | None
    _trimmed_cols: torch.Tensor | None

    @property  # type: ignore[override]
    def starts(self) -> torch.Tensor:
        if self._trimmed_starts is None:
            self._trimmed_starts = self._trim(self._starts, self.counts, 1)
        return self._trimmed_starts

    @starts.setter
    def starts(self, t: torch.Tensor) -> None:
        self._starts = t
        self._trimmed_starts = None

    @property  # type: ignore[override]
    def cols(self) -> torch.Tensor:
        if self._trimmed_cols is None:
            self._trimmed_cols = self._trim(self._cols, self.col_counts, 0)
        return self._trimmed_cols

    @cols.setter
    def cols(self, t: torch.Tensor) -> None:
        self._cols = t
        self._trimmed_cols = None

    def _lists(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._starts, self._cols

    @staticmethod
    def _trim(lists: torch.Tensor, counts: torch.Tensor, least: int) -> torch.Tensor:
        if lists.device.type != "cpu":
            return lists
        width = max(least, int(counts.max())) if counts.numel() else least
        return lists[..., : min(width, lists.shape[-1])]


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
        # sized from the shape, not from a slice of pos: with one diagonal pos is empty
        nxt = torch.cat(
            [pos.cummin(-1).values.flip(-1).long(), pos.new_full((*pos.shape[:-1], 1), n).long()],
            -1,
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


@dataclass(frozen=True)
class LineBounds:
    """The most columns and diagonals any head keeps, known on the host: the index's widths.

    Sizing the index tensors from these, rather than from counts only the device holds, is what
    lets the index be built without the host waiting for the device.
    """

    columns: int
    diagonals: int
    every_diagonal: bool  # every head keeps every diagonal: the causal tile list

    @classmethod
    def uniform(cls, n: int, length: int) -> LineBounds:
        """n columns and n diagonals in every head (a count the host chose)."""
        n = max(1, min(n, length))
        return cls(n, n, n >= length)

    @classmethod
    def read(cls, n_col: torch.Tensor, n_diag: torch.Tensor, length: int) -> LineBounds:
        """Bounds of per-head counts the device holds: one read from the device."""
        most_col, most_diag, least_diag = torch.stack(
            [n_col.max(), n_diag.max(), n_diag.min()]
        ).tolist()
        return cls(
            max(1, min(int(most_col), length)),
            max(1, min(int(most_diag), length)),
            int(least_diag) >= length,
        )


def _top_lines(
    order: torch.Tensor, n: torch.Tensor, descending: bool, width: int, fill: int | None = None
) -> torch.Tensor:
    """The first n[r] entries of each ranking, sorted, `width` wide; pads after them (`fill`,
    by default -1 descending or `length` ascending)."""
    top = order[..., :width].long()
    real = torch.arange(top.shape[-1], device=order.device) < n[..., None]
    if fill is None:
        fill = -1 if descending else order.shape[-1]
    top = torch.where(real, top, fill)
    return torch.sort(top, dim=-1, descending=descending).values


def _walk_top_diagonals(
    diag_order: torch.Tensor, n_diag: torch.Tensor, length: int, bs: int, width: int, jumps: bool
) -> _Walk:
    """The walk over the top n_diag diagonals of each (B, H), one row per (batch, head)."""
    offs = _top_lines(diag_order, n_diag, True, width).flatten(0, 1)
    return _walk(offs, n_diag.reshape(-1).long(), length, bs, jumps)


def lines_cells(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    n_col: torch.Tensor,
    n_diag: torch.Tensor,
    length: int,
    bs: int,
    bounds: LineBounds | None = None,
) -> torch.Tensor:
    """Cells per (B, H) of the top n_col columns and n_diag diagonals: tiles exactly, columns at
    most (a column counted in every query block past its own, as if no tile covered it)."""
    b, h, _ = col_order.shape
    if bounds is None:
        bounds = LineBounds.read(n_col, n_diag, length)
    walk = _walk_top_diagonals(diag_order, n_diag, length, bs, bounds.diagonals, jumps=False)
    tiles = walk.tiles.double().sum(-1).reshape(b, h)
    cols = _top_lines(col_order, n_col, False, bounds.columns)
    nb = math.ceil(length / bs)
    later = (nb - 1 - torch.div(cols, bs, rounding_mode="floor")).clamp(min=0)
    later = torch.where(cols < length, later, 0)
    return bs * (bs * tiles + later.double().sum(-1))


def _chunks(total: int, per: int) -> list[tuple[int, int]]:
    step = max(1, per)
    return [(s, min(total, s + step)) for s in range(0, total, step)]


def _part(t: torch.Tensor, s: int, e: int) -> torch.Tensor:
    """Rows s:e of t (t itself when they are all of them: no op to dispatch)."""
    return t if s == 0 and e == t.shape[0] else t[s:e]


def _top_x(diag_order: torch.Tensor, n_diag: torch.Tensor, width: int, bs: int) -> torch.Tensor:
    """(R, width + 1) minus the kept offsets of each (batch, head), ascending. Pads (2 bs)
    follow them, at least one: past every kept diagonal by two tiles, so a run always ends
    there, and a walk that reaches the pads stays on them."""
    top = diag_order[..., : width + 1]
    real = torch.arange(top.shape[-1], device=diag_order.device) < n_diag[..., None]
    x = torch.where(real, -top, 2 * bs).flatten(0, 1)
    if x.shape[-1] <= width:  # every diagonal kept somewhere: room for the pad
        x = torch.nn.functional.pad(x, (0, 1), value=2 * bs)
    return torch.sort(x, dim=-1).values


def _run_ends(x: torch.Tensor, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a run opened at each diagonal ends, the next run's first diagonal (R, 1, n), and
    where a run anchored at key 0 of a query block ends (R, n, phase 0). The last element is a
    pad and stays where it is.

    A run anchored at phase p of the block numbers the tile of each diagonal's range as
    ceil((x - p) / bs); it breaks where that number jumps by 2 or more. The first break after
    element k is found by counting breaks up to k and looking that count up.
    """
    r_all, n = x.shape
    plus1 = torch.arange(1, bs + 1, device=x.device)[:, None]
    ends, zeros = [], []
    for s, e in _chunks(r_all, CHUNK_ELEMENTS // (4 * bs * n)):
        xs = _part(x, s, e)
        tile = torch.div(xs[:, None, :] - plus1, bs, rounding_mode="floor")  # ceil - 1
        brk = tile - torch.nn.functional.pad(tile, (1, -1), value=_FAR) >= 2
        seen = brk.cumsum(-1)
        nxt = torch.searchsorted(seen, seen, right=True).clamp(max=n - 1)  # first break after k
        ends.append(nxt.gather(1, torch.remainder(xs, bs)[:, None, :]))  # at k's own phase
        zeros.append(nxt[:, 0])
    if len(ends) == 1:
        return ends[0], zeros[0]
    return torch.cat(ends), torch.cat(zeros)


def _tiles(x: torch.Tensor, length: int, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MInference's tiles of the diagonals `x` (`_top_x`): starts (R, nb, W), ascending and
    padded with _FAR, and counts (R, nb). W = min(kept, nb) bounds every query block's tiles
    (each comes from a kept diagonal, and they do not overlap).

    Query block m (keys up to e) keeps the diagonals with o < e. Those with e - bs < o < e all
    clamp to the range [0, bs): one run anchored at key 0, which a first unclamped range ending
    by 2 bs extends, up to its phase-0 break. After that the walk runs along the shared chain
    of runs (`_run_ends`) from where it enters it; every run on it is found by marking the
    entry and doubling along the chain (2^j runs ahead at round j). In a run anchored at the
    key a, a diagonal adds a tile exactly when its range ends past the tiles laid so far, at
    the first multiple of bs from a that covers it.
    """
    r_all, n = x.shape
    dev = x.device
    nb = math.ceil(length / bs)
    width = max(1, min(n - 1, nb))
    end, end0 = _run_ends(x, bs)
    # minus the query blocks' ends e (as x), and the x of a range [0, bs): o = e - bs
    minus_e = torch.arange(-bs, -nb * bs - 1, -bs, device=dev).expand(r_all, nb).contiguous()
    edge = minus_e + bs
    first = torch.searchsorted(x, minus_e, right=True)  # first diagonal with o < e
    unclamped = torch.searchsorted(x, edge)  # first with o <= e - bs
    clamped = first < unclamped
    at = unclamped.clamp(max=n - 1)
    # the first unclamped range ends within [bs, 2 bs]: it extends the clamped run
    reach = x.gather(1, at) - edge
    joins = clamped & (torch.div(reach, bs + 1, rounding_mode="floor") == 0)
    enter = torch.where(joins, end0.gather(1, at), unclamped)
    # before it enters the chain a walk is in the clamped run, anchored at key 0
    virtual = torch.arange(0, -nb * bs, -bs, dtype=torch.int32, device=dev).view(nb, 1, 1)
    x32 = x.int()
    real = x32 <= 0
    rounds = max(0, math.ceil(math.log2(width)))
    chunks = _chunks(r_all, (CHUNK_ELEMENTS // 4) // (nb * n))
    starts = (
        None if len(chunks) == 1 else torch.empty(r_all, nb, width, dtype=torch.int32, device=dev)
    )
    counts = []
    for s, e in chunks:
        rows = e - s
        shift = torch.arange(0, rows * n, n, device=dev)[:, None]
        jump = (_part(end, s, e) + shift[:, None]).flatten()
        # marks (nb, rows x n): the run starts on each query block's walk
        marks = torch.zeros(nb, rows * n, dtype=torch.int32, device=dev)
        marks.scatter_(1, (_part(enter, s, e) + shift).T, 1)
        for j in range(rounds):
            marks = marks.index_add(1, jump, marks)
            if j + 1 < rounds:
                jump = jump[jump]
        on = marks.view(nb, rows, n) > 0
        xs = _part(x32, s, e)
        anchor = torch.where(on, xs, virtual).cummax(-1).values  # x of the run's first range
        # the tile that covers each range: 0 for the clamped ones, negative left of the block
        start = xs - virtual + torch.remainder(anchor - xs, bs)
        # a new tile where the range ends past the tiles laid so far (the first clamped range
        # lays the clamped run's first tile)
        new = on | (start > torch.nn.functional.pad(start, (1, -1), value=-1).clamp(min=-1))
        new &= _part(real, s, e)
        counts.append(new.sum(-1).T.to(torch.int32))
        laid = torch.sort(torch.where(new, start, _FAR).permute(1, 0, 2), dim=-1).values
        if starts is None:
            starts = laid[..., :width].contiguous()
        else:
            starts[s:e] = laid[..., :width]
    assert starts is not None
    return starts, counts[0] if len(counts) == 1 else torch.cat(counts)


def _single_columns(
    cols: torch.Tensor, starts: torch.Tensor, bs: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept columns outside every tile, per query block: lists (R, nb, V) and counts (R, nb).

    `cols` (R, V) int32 ascending, pads _FAR; `starts` (R, nb, W) as `_tiles` gives them. A
    column c is covered when a tile starts in (c - bs, c]. The lists are padded with _FAR.
    """
    r_all, v = cols.shape
    nb = starts.shape[1]
    dev = cols.device
    e_m = torch.arange(bs, nb * bs + 1, bs, device=dev, dtype=torch.int32)[:, None]
    chunks = _chunks(r_all, (CHUNK_ELEMENTS // 4) // (nb * v))
    lists = None if len(chunks) == 1 else torch.empty(r_all, nb, v, dtype=torch.int32, device=dev)
    counts = []
    for s, e in chunks:
        vals = _part(cols, s, e)[:, None, :].expand(e - s, nb, v).contiguous()
        st = _part(starts, s, e)
        upto = torch.searchsorted(st, vals, right=True, out_int32=True)
        below = torch.searchsorted(st, vals - bs, right=True, out_int32=True)
        counted = (upto == below) & (vals < e_m)
        counts.append(counted.sum(-1, dtype=torch.int32))
        kept = torch.sort(torch.where(counted, vals, _FAR), dim=-1).values
        if lists is None:
            lists = kept
        else:
            lists[s:e] = kept
    assert lists is not None
    return lists, counts[0] if len(counts) == 1 else torch.cat(counts)


def _triton_index(t: torch.Tensor) -> bool:
    """Whether the index of lines on `t`'s device is built by the Triton kernels: on CUDA,
    where Triton is installed."""
    if not t.is_cuda:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def lines_index(
    col_order: torch.Tensor,
    diag_order: torch.Tensor,
    n_col: torch.Tensor,
    n_diag: torch.Tensor,
    length: int,
    bs: int,
    bounds: LineBounds | None = None,
) -> TileIndex:
    """MInference's index of the top n_col columns and n_diag diagonals per (B, H).

    The index tensors are as wide as `bounds` allows (without them, one read of the counts). On
    CUDA the Triton kernels build the lists, else the PyTorch build here (the kernels' reference).
    """
    b, h, _ = col_order.shape
    if bounds is None:
        bounds = LineBounds.read(n_col, n_diag, length)
    x = _top_x(diag_order, n_diag, bounds.diagonals, bs)
    cols = _top_lines(col_order, n_col, False, bounds.columns, fill=_FAR).int().flatten(0, 1)
    if _triton_index(x):
        # deferred: triton (absent off CUDA; the PyTorch build below must not need it)
        from scalelaw.kernels.triton_scores import lines_index_triton

        starts, counts, col_lists, col_counts = lines_index_triton(x, cols, length, bs)
    else:
        starts, counts = _tiles(x, length, bs)
        col_lists, col_counts = _single_columns(cols, starts, bs)
    nb = starts.shape[1]
    return PaddedTileIndex(
        starts.reshape(b, h, nb, -1),
        counts.reshape(b, h, nb),
        col_lists.reshape(b, h, nb, -1),
        col_counts.reshape(b, h, nb),
        bs,
        length,
    )
