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


def test_cells_of_one_kept_diagonal_and_one_column(minference):
    # the count searches ask for the cells of the floor, which can be one line per head: the
    # walk's break table was then built empty and the cells failed
    walk, _ = minference
    length, bs = 300, 16
    ones = torch.ones(1, 2, dtype=torch.long)
    c, d, _, _ = random_lines(3, 1, 2, length, n_diag=ones)
    cells = tiles.lines_cells(c, d, ones, ones, length, bs, LineBounds.uniform(1, length))
    for h in range(2):
        want = walk(d[0, h, :1].tolist(), c[0, h, :1].tolist(), length, bs)
        # lines_cells counts a column in every query block past its own (an upper bound)
        tiles_only = sum(bs * bs * len(t) for t, _ in want)
        column_blocks = -(-length // bs) - 1 - c[0, h, 0].item() // bs
        assert cells[0, h].item() == tiles_only + bs * column_blocks


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


# --- the Triton index kernels (CPU interpreter here, GPU when present) -------------------------

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize(
    ("seed", "b", "heads", "length", "bs"),
    [
        (0, 2, 7, 100, 16),  # batch 2, 7 heads of one KV group, L not a multiple of the block
        (1, 1, 3, 97, 8),
        (2, 2, 2, 70, 4),  # 4-wide blocks: long runs of tiles
    ],
)
def test_triton_index_matches_the_pytorch_build(seed, b, heads, length, bs):
    pytest.importorskip("triton")
    from scalelaw.kernels.triton_scores import lines_index_triton

    c, d, n_col, n_diag = random_lines(seed, b, heads, length)
    bounds = tiles.LineBounds.read(n_col, n_diag, length)
    x = tiles._top_x(d, n_diag, bounds.diagonals, bs)
    cols = tiles._top_lines(c, n_col, False, bounds.columns, fill=tiles._FAR).int().flatten(0, 1)
    starts, counts = tiles._tiles(x, length, bs)
    want = (starts, counts, *tiles._single_columns(cols, starts, bs))
    got = lines_index_triton(x.to(DEVICE), cols.to(DEVICE), length, bs)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.int32 and torch.equal(g.cpu(), w.to(torch.int32))


def test_lines_index_takes_the_kernels_on_cuda_only(monkeypatch):
    pytest.importorskip("triton")
    import scalelaw.kernels.triton_scores as ts

    calls = []
    real = ts.lines_index_triton
    monkeypatch.setattr(ts, "lines_index_triton", lambda *a: calls.append(a) or real(*a))
    c, d, n_col, n_diag = random_lines(4, 1, 2, 48)
    tiles.lines_index(c, d, n_col, n_diag, 48, 8)
    assert calls == []
    monkeypatch.setattr(tiles, "_triton_index", lambda t: True)
    tiles.lines_index(c, d, n_col, n_diag, 48, 8)
    assert len(calls) == 1


def test_flexprefill_index_by_the_kernels_equals_the_pytorch_one(benchmark_script, monkeypatch):
    pytest.importorskip("triton")
    # a whole layer call on structured attention (sinks, stripes, diagonals: per-head counts
    # that differ) at GQA 7:1, batch 2, L not a multiple of the block: the same tiles, columns
    # and cells whichever builds the index
    from scalelaw.kernels import get_method

    length = 150
    q, k, _ = benchmark_script("attention").synthetic_inputs(
        2, 7, 1, length, 16, dtype=torch.float32, device=torch.device(DEVICE), seed=3
    )
    m = get_method(
        "flexprefill", block_size=8, window=32, alpha=0.8, min_budget=4, local_diagonals=4
    )
    kn = m.knobs()

    def plan():
        return m.plan(m.pattern(q, k, 4.0), length, kn)

    monkeypatch.setattr(tiles, "_triton_index", lambda t: False)
    want = plan()
    monkeypatch.setattr(tiles, "_triton_index", lambda t: True)
    got = plan()
    for part in ("starts", "counts", "cols", "col_counts"):
        assert torch.equal(getattr(got.index, part).cpu(), getattr(want.index, part).cpu()), part
    assert torch.equal(got.cells.cpu(), want.cells.cpu())
    assert int(want.index.col_counts.sum()) > 0 and int(want.index.counts.min()) >= 1
