"""Triton sparse prefill: one flash-attention forward driven by per-query-block tile lists.

For each query block the kernel walks a list of key tiles (each `block` keys wide, starting at
any key: block-sparse blocks, flexprefill's block heads, MInference's ranges of vertical-slash
diagonals) and then a list of single key columns (the vertical lines no tile covers), with
online softmax and a causal mask. It computes exactly the cells the `TileIndex` counts, which is
what the PyTorch path computes too. No L x L mask is built: the inputs are tile and column lists.

The kernel takes plain tensors (the fields of a `scalelaw.kernels.tiles.TileIndex`), so it knows
nothing of the methods that build them.

Built for speed on an H100 without hand tuning per shape: a small autotuned set of warps,
pipeline stages and query rows per program; q scaled once into log2 units (exp2); the
causal mask built only on tiles that cross the diagonal; and programs ordered so the query heads
of one KV head run side by side and share its K/V tiles in L2. A program takes at most one
index query block of rows (`query_rows`): a taller program would need the lists of several
blocks, so a 128-row program only runs where the index's block is at least 128.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import triton
import triton.language as tl

from scalelaw.kernels.specs import KernelInputError
from scalelaw.kernels.triton_flash import online_softmax_step, tile_dot

COLUMN_TILE = 64
LOG2E = 1.4426950408889634

# Arguments the autotuner keys on (besides the dtypes of the tensors, which it adds itself).
TUNE_KEY = ["HEAD_D", "LEN_BUCKET", "BLOCK", "HAS_COLS"]

# Candidate rows per program, warps and pipeline stages; `prune_configs` fits them to a launch.
TUNE_CONFIGS = [
    triton.Config({"BLOCK_M": rows}, num_warps=warps, num_stages=stages)
    for rows in (64, 128)
    for warps in (4, 8)
    for stages in (2, 3, 4)
]

# Autotune cannot benchmark under the interpreter (and warps and stages mean nothing there).
INTERPRETER_CONFIG = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=2)


def qk_scale_log2(head_dim: int) -> float:
    """Softmax scale in log2 units: the factor q is multiplied by once, so scores feed exp2."""
    return LOG2E / math.sqrt(head_dim)


def query_rows(block_m: int, block: int) -> int:
    """Query rows one program takes: a config's `block_m`, at most the index's query block."""
    return min(block_m, block)


def length_bucket(length: int) -> int:
    """Lengths that share a tuned config: one per power of two."""
    return triton.next_power_of_2(max(1, length))


def interpreting() -> bool:
    """Whether Triton runs kernels under its CPU interpreter (read as Triton reads it)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")


def prune_configs(
    configs: list[triton.Config], named_args: dict[str, Any], **kwargs: Any
) -> list[triton.Config]:
    """The candidates that fit a launch with key tiles `BLOCK` wide, without duplicates."""
    block = int(kwargs.get("BLOCK", named_args.get("BLOCK", 64)))
    fitted: dict[tuple[int, int, int], triton.Config] = {}
    for c in configs:
        rows = query_rows(int(c.kwargs["BLOCK_M"]), block)
        # As Triton's flash-attention tutorial prunes: a 128 x 128 score tile and its
        # accumulator need the registers of 8 warps.
        if rows * block >= 128 * 128 and c.num_warps < 8:
            continue
        fitted.setdefault(
            (rows, c.num_warps, c.num_stages),
            triton.Config({"BLOCK_M": rows}, num_warps=c.num_warps, num_stages=c.num_stages),
        )
    return list(fitted.values())


def launch_config(block: int, interpret: bool | None = None) -> triton.Config | None:
    """The fixed config under the interpreter (rows fitted to `block`); None: autotune picks."""
    if not (interpreting() if interpret is None else interpret):
        return None
    fixed = INTERPRETER_CONFIG
    return triton.Config(
        {"BLOCK_M": query_rows(int(fixed.kwargs["BLOCK_M"]), block)},
        num_warps=fixed.num_warps,
        num_stages=fixed.num_stages,
    )


def prefill_grid(batch: int, heads: int, length: int, rows: int) -> tuple[int]:
    """One program per (batch, query head, `rows` query rows), in `program_coords` order."""
    return (batch * heads * math.ceil(length / rows),)


@triton.jit
def program_coords(pid, HKV, G, NQ):
    """(batch, query head, row block) of program `pid`.

    The G query heads of a KV head come consecutively, so the programs resident together read
    the same K/V tiles and hit in L2. Row blocks go last to first: under a causal mask the late
    blocks walk the most tiles, and starting them first leaves the short ones to fill the tail.
    """
    g = pid % G
    rest = pid // G
    qr = NQ - 1 - rest % NQ
    bk = rest // NQ
    return bk // HKV, (bk % HKV) * G + g, qr


@triton.jit
def _sparse_prefill_fwd(
    Q,
    K,
    V,
    Out,
    STARTS,
    CNT,
    COLS,
    CCNT,
    TOUCHED,
    qk_scale,
    L,
    H,
    HKV,
    G,
    NB,
    KMAX,
    NCOL,
    HEAD_D,
    LEN_BUCKET,
    sqb,
    sqh,
    sql,
    skb,
    skh,
    skl,
    svb,
    svh,
    svl,
    sob,
    soh,
    sol,
    BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_C: tl.constexpr,
    HAS_COLS: tl.constexpr,
    COUNT: tl.constexpr,
):
    # LEN_BUCKET only keys the autotuner.
    b, h, qr = program_coords(tl.program_id(0), HKV, G, tl.cdiv(L, BLOCK_M))
    kvh = h // G
    q_lo = qr * BLOCK_M
    # The index's query block holding these rows (BLOCK_M divides BLOCK).
    row = (b * H + h) * NB + q_lo // BLOCK
    offs_m = q_lo + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_b = tl.arange(0, BLOCK)
    row_ok = offs_m < L
    d_ok = offs_d < HEAD_D
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sql + offs_d[None, :],
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    # Scaled once here instead of on every score tile; rounding to the input dtype costs less
    # than the bf16/fp16 rounding of p before the PV product.
    q = (q * qk_scale).to(Q.dtype.element_ty)
    k_base = K + b * skb + kvh * skh
    v_base = V + b * svb + kvh * svh
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    n_tiles = tl.load(CNT + row)
    for j in range(0, n_tiles):
        start = tl.load(STARTS + row * KMAX + j)
        offs_n = start + offs_b
        col_ok = offs_n < L
        s = tile_dot(q, k_base, offs_n, col_ok, offs_d, d_ok, skl)
        # A tile ending at or before the first row is causal for every row and lies inside the
        # sequence, so only the tiles past it build a mask (keys past L are past every real row
        # too; rows past L are never stored).
        if start + BLOCK - 1 > q_lo:
            s = tl.where(offs_m[:, None] >= offs_n[None, :], s, float("-inf"))
        m_i, l_i, acc = online_softmax_step(
            s, m_i, l_i, acc, v_base, offs_n, col_ok, offs_d, d_ok, svl
        )

    n_cols = 0
    if HAS_COLS:
        n_cols = tl.load(CCNT + row)
        offs_c = tl.arange(0, BLOCK_C)
        for c0 in range(0, n_cols, BLOCK_C):
            c_ok = (c0 + offs_c) < n_cols
            cols = tl.load(COLS + row * NCOL + c0 + offs_c, mask=c_ok, other=0)
            s = tile_dot(q, k_base, cols, c_ok, offs_d, d_ok, skl)
            keep = (offs_m[:, None] >= cols[None, :]) & c_ok[None, :]
            s = tl.where(keep, s, float("-inf"))
            m_i, l_i, acc = online_softmax_step(
                s, m_i, l_i, acc, v_base, cols, c_ok, offs_d, d_ok, svl
            )

    if COUNT:
        # what this block's programs computed (each writes the same): tiles and single columns
        tl.store(TOUCHED + row * 2, n_tiles)
        tl.store(TOUCHED + row * 2 + 1, n_cols)

    # Rows past the sequence end may have no scores; keep them finite (they are not stored).
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        Out + b * sob + h * soh + offs_m[:, None] * sol + offs_d[None, :],
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )


_sparse_prefill_tuned = triton.autotune(
    configs=TUNE_CONFIGS,
    key=TUNE_KEY,
    prune_configs_by={"early_config_prune": prune_configs},
)(_sparse_prefill_fwd)


def tile_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    cols: torch.Tensor,
    col_counts: torch.Tensor,
    block: int,
    touched: torch.Tensor | None = None,
    *,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """Causal attention of every query block over its tiles and single columns only.

    Per (batch, head, query block): `starts` (B, H, nb, K) the first key of each `block`-wide
    tile, valid up to `counts` (B, H, nb); `cols` (B, H, nb, V) single key columns, valid up to
    `col_counts`. `touched` (B, H, nb, 2) int32, when given, receives the tiles and columns each
    query block computed (a check that the cells counted are the cells computed). `config`
    fixes the launch (rows per program, warps, stages) instead of the autotuner's choice.
    """
    if block < 16 or block & (block - 1):
        raise KernelInputError(
            f"triton sparse prefill: block size must be a power of two >= 16, got {block}"
        )
    if q.shape[2] != k.shape[2]:
        raise KernelInputError("triton sparse prefill: q and k must have equal length")
    b, h, length, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    nb = math.ceil(length / block)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    kmax, ncol = max(1, starts.shape[-1]), max(1, cols.shape[-1])
    has_cols = cols.numel() > 0
    starts = starts.to(torch.int32).contiguous() if starts.numel() else dummy
    counts = counts.to(torch.int32).contiguous()
    cols = cols.to(torch.int32).contiguous() if has_cols else dummy
    col_counts = col_counts.to(torch.int32).contiguous() if has_cols else dummy
    touch = dummy if touched is None else touched

    args = (
        q,
        k,
        v,
        out,
        starts,
        counts,
        cols,
        col_counts,
        touch,
        qk_scale_log2(d),
        length,
        h,
        hkv,
        g,
        nb,
        kmax,
        ncol,
        d,
        length_bucket(length),
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        out.stride(0),
        out.stride(1),
        out.stride(2),
    )

    consts = {
        "BLOCK": block,
        "BLOCK_D": max(16, triton.next_power_of_2(d)),
        "BLOCK_C": COLUMN_TILE,
        "HAS_COLS": has_cols,
        "COUNT": touched is not None,
    }
    cfg = config if config is not None else launch_config(block)
    if cfg is None:
        _sparse_prefill_tuned[lambda meta: prefill_grid(b, h, length, meta["BLOCK_M"])](
            *args, **consts
        )
        return out
    rows = int(cfg.kwargs["BLOCK_M"])
    if rows < 16 or rows & (rows - 1):
        raise KernelInputError(
            f"triton sparse prefill: rows per program must be a power of two >= 16, got {rows}"
        )
    rows = query_rows(rows, block)
    _sparse_prefill_fwd[prefill_grid(b, h, length, rows)](
        *args,
        **consts,
        BLOCK_M=rows,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out
