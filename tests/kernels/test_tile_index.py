"""MInference's vertical-slash index built without reading the device: against the walk done
block by block in plain Python (conftest's `minference`), in row chunks, at widths padded to
host-known bounds, and with the stats a plan reads only when asked."""

from __future__ import annotations

import json
import random

import pytest

torch = pytest.importorskip("torch")

import scalelaw.kernels.tiles as tiles  # noqa: E402
from scalelaw.kernels.deferred import Deferred, DeferredStats  # noqa: E402
from scalelaw.kernels.tiles import LineBounds, TileIndex, lines_index  # noqa: E402


def random_lines(seed, b, heads, length, n_diag=None):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    diag_orders, col_orders = [], []
    for _ in range(b * heads):
        diags = list(range(length))
        rng.shuffle(diags)
        diags.remove(0)
        diag_orders.append([0, *diags])  # the main diagonal first, as the methods rank it
        col_orders.append(torch.randperm(length, generator=g).tolist())
    d = torch.tensor(diag_orders).reshape(b, heads, length)
    c = torch.tensor(col_orders).reshape(b, heads, length)
    if n_diag is None:
        n_diag = torch.randint(1, length + 1, (b, heads), generator=g)
    n_col = torch.randint(1, length + 1, (b, heads), generator=g)
    return c, d, n_col, n_diag


def assert_walked(index, c, d, n_col, n_diag, length, bs, walk):
    b, heads = n_diag.shape
    for i in range(b):
        for h in range(heads):
            want = walk(
                d[i, h, : n_diag[i, h]].tolist(), c[i, h, : n_col[i, h]].tolist(), length, bs
            )
            for m, (tile_starts, single) in enumerate(want):
                assert index.starts[i, h, m, : index.counts[i, h, m]].tolist() == tile_starts
                assert index.cols[i, h, m, : index.col_counts[i, h, m]].tolist() == single
            cells = sum(bs * bs * len(t) + bs * len(s) for t, s in want)
            assert index.cells()[i, h].item() == cells


@pytest.mark.parametrize("seed", range(4))
def test_index_in_row_chunks_matches_the_walk(minference, monkeypatch, seed):
    # a few thousand elements a chunk: the walk's grid and the column lists take several
    monkeypatch.setattr(tiles, "CHUNK_ELEMENTS", 1 << 12)
    walk, _ = minference
    length, bs = [(150, 16), (97, 8), (256, 32), (70, 4)][seed]
    c, d, n_col, n_diag = random_lines(seed, 2, 3, length)
    index = lines_index(c, d, n_col, n_diag, length, bs)
    assert_walked(index, c, d, n_col, n_diag, length, bs, walk)


def test_one_kept_diagonal_per_head(minference):
    walk, _ = minference
    length, bs = 64, 4
    c, d, n_col, n_diag = random_lines(7, 1, 2, length, n_diag=torch.ones(1, 2, dtype=torch.long))
    index = lines_index(c, d, n_col, n_diag, length, bs)
    assert_walked(index, c, d, n_col, n_diag, length, bs, walk)


def test_padded_widths_read_trimmed_on_the_host(minference):
    walk, _ = minference
    length, bs = 200, 16
    c, d, n_col, n_diag = random_lines(3, 1, 3, length)
    exact = lines_index(c, d, n_col, n_diag, length, bs)
    wide = lines_index(c, d, n_col, n_diag, length, bs, LineBounds(length, length, False))
    raw_starts, raw_cols = wide._lists()
    nb = -(-length // bs)
    assert raw_starts.shape[-1] == nb and raw_cols.shape[-1] == length  # as the bounds allow
    # read on the host: as wide as the widest query block, as an exact read would make them
    assert wide.starts.shape == exact.starts.shape
    assert wide.starts.shape[-1] == max(1, int(wide.counts.max()))
    assert wide.cols.shape[-1] == int(wide.col_counts.max())
    assert torch.equal(wide.counts, exact.counts) and torch.equal(wide.cells(), exact.cells())
    assert_walked(wide, c, d, n_col, n_diag, length, bs, walk)


def test_choosing_keeps_a_padded_index_padded():
    length, bs = 96, 16
    c, d, n_col, n_diag = random_lines(1, 1, 2, length)
    lines = lines_index(c, d, n_col, n_diag, length, bs, LineBounds(length, length, False))
    blocks = TileIndex.causal(1, 2, length, bs, torch.device("cpu"))
    mixed = lines.choose(blocks, torch.tensor([[True, False]]))
    assert isinstance(mixed, tiles.PaddedTileIndex)
    assert torch.equal(mixed.counts[0, 0], blocks.counts[0, 0])
    assert torch.equal(mixed.counts[0, 1], lines.counts[0, 1])
    assert mixed.starts.shape[-1] == int(mixed.counts.max())


def test_deferred_stats_read_their_values_once_and_only_when_read():
    reads = []

    def value():
        reads.append(1)
        return 2.5

    stats = DeferredStats(lines=4, tiles=Deferred(value))
    assert len(stats) == 2 and "tiles" in stats and list(stats) == ["lines", "tiles"]
    assert reads == []  # length, membership and keys leave the device alone
    assert stats["tiles"] == 2.5 and dict(stats) == {"lines": 4, "tiles": 2.5}
    assert json.loads(json.dumps(stats)) == {"lines": 4, "tiles": 2.5}
    assert {**stats} == stats == {"lines": 4, "tiles": 2.5}
    assert reads == [1]
