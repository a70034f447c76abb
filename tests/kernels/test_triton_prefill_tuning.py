"""The tuned sparse prefill kernel: launch configs, program order, q pre-scaling, odd shapes.

Runs under the CPU interpreter when there is no GPU (conftest sets TRITON_INTERPRET), so shapes
are small; bf16 is left to the GPU tests in test_triton.py. Shapes are chosen to be awkward: a
length that no block divides, a 7:1 GQA group, two sequences in the batch, and key tiles wider
than a program's query rows.
"""

from __future__ import annotations

import itertools
import math

import pytest

torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

import triton.language as tl  # noqa: E402
from torch import Tensor  # noqa: E402

from scalelaw.kernels import triton_prefill as tp  # noqa: E402
from scalelaw.kernels.reference import dense_causal  # noqa: E402
from scalelaw.kernels.sparse_torch import tile_attention_torch  # noqa: E402
from scalelaw.kernels.tiles import TileIndex, lines_index  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# On a GPU fp32 tl.dot runs in tf32, which rounds like fp16.
TOL = {torch.float32: 3e-3 if DEVICE == "cuda" else 1e-4, torch.float16: 3e-3}
B, H, HKV, LENGTH, D = 2, 7, 1, 200, 32


def make_qkv(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, n, LENGTH, D, generator=g) for n in (H, HKV, HKV))
    return (t.to(device=DEVICE, dtype=dtype) for t in (q, k, v))


def block_sparse_index(bs, seed=0):
    """First block, diagonal block and up to two random blocks between, per query block."""
    g = torch.Generator().manual_seed(seed)
    nb = math.ceil(LENGTH / bs)
    index = torch.zeros(B, H, nb, 4, dtype=torch.long)
    counts = torch.zeros(B, H, nb, dtype=torch.long)
    for b, h, m in itertools.product(range(B), range(H), range(nb)):
        middle = torch.randperm(max(0, m - 1), generator=g)[:2] + 1
        kept = sorted({0, m, *middle.tolist()})
        index[b, h, m, : len(kept)] = torch.tensor(kept)
        counts[b, h, m] = len(kept)
    return TileIndex.from_blocks(index, counts, bs, LENGTH)


def vertical_slash_index(bs, seed=0):
    """Recent diagonals plus scattered ones (unaligned tiles) and scattered single columns."""
    g = torch.Generator().manual_seed(seed)
    diag = torch.stack(
        [
            torch.cat([torch.arange(4), torch.randperm(LENGTH - 4, generator=g) + 4])
            for _ in range(B * H)
        ]
    ).reshape(B, H, LENGTH)
    col = torch.stack([torch.randperm(LENGTH, generator=g) for _ in range(B * H)])
    n = torch.full((B, H), 7)
    return lines_index(col.reshape(B, H, LENGTH), diag, n, n, LENGTH, bs)


def unaligned_index(bs):
    """Unaligned tiles ending just before, at and just after the first row of a query block and
    of its second half (the first row of a program taking half a block's rows): the edges of
    the per-tile choice between masking and not."""
    nb = math.ceil(LENGTH / bs)
    starts = torch.zeros(B, H, nb, 2, dtype=torch.long)
    for b, h, m in itertools.product(range(B), range(H), range(nb)):
        p1, p2 = (h + m + b) % 5 - 2, (h + 2 * m) % 5 - 2
        # a tile ending at key e starts at e - bs + 1
        ends = sorted((m * bs + p1, m * bs + bs // 2 + p2))
        starts[b, h, m] = torch.tensor([max(0, e - bs + 1) for e in ends])
    counts = torch.full((B, H, nb), 2)
    empty = torch.zeros(B, H, nb, 0, dtype=torch.int32)
    return TileIndex(starts.int(), counts.int(), empty, torch.zeros_like(counts).int(), bs, LENGTH)


INDEXES = {
    "unaligned": unaligned_index,
    "block-sparse": block_sparse_index,
    "vertical-slash": vertical_slash_index,
    "causal": lambda bs: TileIndex.causal(B, H, LENGTH, bs, torch.device("cpu")),
}


def on_device(ix: TileIndex) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The index tensors, in `tile_attention`'s argument order, where the kernel runs."""
    return (
        ix.starts.to(DEVICE),
        ix.counts.to(DEVICE),
        ix.cols.to(DEVICE),
        ix.col_counts.to(DEVICE),
    )


# (key tile width, rows per program): rows equal to the block, rows below a 128 block (two
# programs per index query block), the 128-row config, and the fixed interpreter config.
LAUNCHES = [
    pytest.param(16, None, id="block16-default"),
    pytest.param(64, 64, id="block64-rows64"),
    pytest.param(128, 64, id="block128-rows64"),
    pytest.param(128, 128, id="block128-rows128"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("bs", "rows"), LAUNCHES)
@pytest.mark.parametrize("kind", list(INDEXES))
def test_kernel_equals_torch_path_at_odd_shapes(kind, bs, rows, dtype):
    q, k, v = make_qkv(dtype)
    ix = INDEXES[kind](bs)
    if kind == "vertical-slash":
        assert int(ix.col_counts.sum()) > 0, "the case must exercise single columns"
    config = None if rows is None else triton.Config({"BLOCK_M": rows}, num_warps=4, num_stages=2)
    touched = torch.zeros(B, H, ix.n_blocks, 2, dtype=torch.int32, device=DEVICE)
    got = tp.tile_attention(q, k, v, *on_device(ix), bs, touched, config=config)
    want = tile_attention_torch(q, k, v, *on_device(ix), bs)
    tol = TOL[dtype]
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
    if kind == "causal":
        dense = dense_causal(q.float(), k.float(), v.float())
        torch.testing.assert_close(got.float(), dense, atol=tol, rtol=tol)
    # every program of a query block reports that block's own lists
    assert torch.equal(touched[..., 0].cpu(), ix.counts.int())
    assert torch.equal(touched[..., 1].cpu(), ix.col_counts.int())


def test_interpreter_uses_the_fixed_config():
    fixed = tp.INTERPRETER_CONFIG
    for block in (16, 64, 128):
        cfg = tp.launch_config(block, interpret=True)
        assert cfg is not None
        assert cfg.kwargs == {"BLOCK_M": min(block, fixed.kwargs["BLOCK_M"])}
        assert (cfg.num_warps, cfg.num_stages) == (fixed.num_warps, fixed.num_stages)
        assert tp.launch_config(block, interpret=False) is None


@pytest.mark.skipif(not tp.interpreting(), reason="checks the launch under the interpreter")
def test_interpreter_launch_never_reaches_the_autotuner(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("autotune cannot run under the interpreter")

    monkeypatch.setattr(tp._sparse_prefill_tuned, "run", refuse)
    q, k, v = make_qkv(torch.float32)
    ix = TileIndex.causal(B, H, LENGTH, 64, torch.device("cpu"))
    out = tp.tile_attention(q, k, v, *on_device(ix), 64)
    torch.testing.assert_close(out, dense_causal(q, k, v), atol=1e-4, rtol=1e-4)


def test_autotune_set_and_key():
    tuned = tp._sparse_prefill_tuned
    assert isinstance(tuned, triton.runtime.Autotuner)
    got = {(c.kwargs["BLOCK_M"], c.num_warps, c.num_stages) for c in tuned.configs}
    assert got == set(itertools.product((64, 128), (4, 8), (2, 3, 4)))
    assert {"HEAD_D", "LEN_BUCKET", "BLOCK"} <= set(tuned.keys)
    assert tp.length_bucket(200) == tp.length_bucket(256) == 256 != tp.length_bucket(257)

    def fitted(block):
        cfgs = tp.prune_configs(tuned.configs, {}, BLOCK=block)
        return {(c.kwargs["BLOCK_M"], c.num_warps, c.num_stages) for c in cfgs}, len(cfgs)

    stages = (2, 3, 4)
    # A program never takes more rows than one index query block has (that block's lists).
    assert fitted(16) == ({(16, w, s) for w in (4, 8) for s in stages}, 6)
    assert fitted(64) == ({(64, w, s) for w in (4, 8) for s in stages}, 6)
    want128 = {(64, w, s) for w in (4, 8) for s in stages} | {(128, 8, s) for s in stages}
    assert fitted(128) == (want128, 9)


@triton.jit
def _probe_coords(OUT, HKV, G, L, BLOCK_M: tl.constexpr):
    pid = tl.program_id(0)
    b, h, qr = tp.program_coords(pid, HKV, G, tl.cdiv(L, BLOCK_M))
    tl.store(OUT + pid * 3, b)
    tl.store(OUT + pid * 3 + 1, h)
    tl.store(OUT + pid * 3 + 2, qr)


@pytest.mark.parametrize(("batch", "heads", "hkv", "rows"), [(2, 7, 1, 64), (2, 8, 2, 128)])
def test_programs_of_one_kv_group_are_adjacent(batch, heads, hkv, rows):
    (n,) = tp.prefill_grid(batch, heads, LENGTH, rows)
    nq = math.ceil(LENGTH / rows)
    assert n == batch * heads * nq
    out = torch.full((n, 3), -1, dtype=torch.int32, device=DEVICE)
    _probe_coords[(n,)](out, hkv, heads // hkv, LENGTH, BLOCK_M=rows)
    coords = [tuple(r) for r in out.cpu().tolist()]
    # every (batch, head, row block) exactly once
    assert sorted(coords) == sorted(itertools.product(range(batch), range(heads), range(nq)))
    g = heads // hkv
    for at in range(0, n, g):
        run = coords[at : at + g]
        # one KV head's query heads in a row, on the same sequence and rows
        assert {(b, qr) for b, _, qr in run} == {run[0][::2]}
        assert [h for _, h, _ in run] == [run[0][1] // g * g + i for i in range(g)]
    # the heavy (late) row blocks of a causal mask start first
    assert coords[0][2] == nq - 1


def test_kernel_scales_q_by_the_log2_softmax_scale(monkeypatch):
    assert tp.qk_scale_log2(64) == pytest.approx(math.log2(math.e) / 8)
    q, k, v = make_qkv(torch.float32, seed=1)
    ix = block_sparse_index(64, seed=1)
    # Whatever factor the kernel is handed multiplies q: half of it is attention of q / 2.
    monkeypatch.setattr(tp, "qk_scale_log2", lambda d: math.log2(math.e) / math.sqrt(d) / 2)
    got = tp.tile_attention(q, k, v, *on_device(ix), 64)
    want = tile_attention_torch(q / 2, k, v, *on_device(ix), 64)
    torch.testing.assert_close(got, want, atol=TOL[torch.float32], rtol=TOL[torch.float32])


def test_rows_per_program_must_be_a_power_of_two():
    from scalelaw.kernels import KernelInputError

    q, k, v = make_qkv(torch.float32)
    ix = TileIndex.causal(B, H, LENGTH, 64, torch.device("cpu"))
    with pytest.raises(KernelInputError, match="power of two >= 16, got 48"):
        tp.tile_attention(
            q, k, v, *on_device(ix), 64, config=triton.Config({"BLOCK_M": 48}, num_warps=4)
        )
