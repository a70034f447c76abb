"""Time every sparse attention method against dense attention measured in the same run.

Prefill: each method (pattern estimation included, and also timed apart) against torch SDPA
dense causal attention; block-sparse also against FlexAttention given the identical block mask.
Decode: one step of each method against one dense SDPA step over the full cache. Prints a table
of speedups and writes a CSV that `scalelaw frontier --cost latency` reads (columns in
docs/performance.md).

    python benchmarks/attention.py                           # GPU: L 16K-128K, C 1/5/10/20
    python benchmarks/attention.py --device cpu --quick      # tiny CPU check, same table
"""

from __future__ import annotations

import argparse
import csv
import gc
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from scalelaw.kernels import get_method
from scalelaw.kernels.base import resolve_backend
from scalelaw.kernels.block_sparse import run_block_pattern

PREFILL = ("block-sparse", "vertical-slash", "flexprefill")
DECODE = ("quest", "snapkv", "ada-snapkv")
COLUMNS = [
    "method",
    "phase",
    "seq_len",
    "compression",
    "achieved_compression",
    "ms",
    "estimation_ms",
    "baseline_ms",
    "speedup",
    "kernel_ms",
    "flex_ms",
    "speedup_vs_flex",
    "backend",
    "dtype",
    "batch",
    "heads",
    "kv_heads",
    "head_dim",
    "block_size",
    "device",
    "torch",
    "triton",
    "note",
]


def timer(device: torch.device, repeats: int) -> Callable[[Callable[[], Any]], float]:
    """Median milliseconds of a call: triton's do_bench on CUDA, wall clock on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        def cuda_ms(fn: Callable[[], Any]) -> float:
            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))

        return cuda_ms

    def cpu_ms(fn: Callable[[], Any]) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return cpu_ms


def flex_block_mask(pattern: Any, length: int, device: torch.device) -> Any:
    """The FlexAttention BlockMask holding exactly the kept blocks of a block-sparse pattern."""
    from torch.nn.attention.flex_attention import BlockMask

    index = pattern.index.long()
    counts = pattern.counts.long()
    nb = index.shape[2]
    qb = torch.arange(nb, device=device)[:, None]
    slot = torch.arange(index.shape[3], device=device)
    kept = slot < counts[..., None]
    off_diag = kept & (index != qb)
    # Off-diagonal kept blocks need no mask ("full"); the diagonal block is causal ("partial").
    order = torch.argsort((~off_diag).to(torch.int8), dim=-1, stable=True)
    full_idx = torch.gather(index, -1, order)
    full_num = off_diag.sum(-1).to(torch.int32)
    # FlexAttention wants index tensors as wide as the number of key blocks.
    full_idx = F.pad(full_idx, (0, nb - full_idx.shape[-1])).to(torch.int32)
    diag_idx = F.pad(qb.expand(*index.shape[:2], nb, 1), (0, nb - 1)).to(torch.int32)
    diag_num = torch.ones(*index.shape[:3], dtype=torch.int32, device=device)

    # The mask function repeats the block pattern: eager FlexAttention ignores the block lists
    # and applies only this function, so both paths then compute the same entries.
    kept = pattern.block_mask()
    bs = pattern.block_size

    def causal(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return (q_idx >= kv_idx) & kept[b, h, q_idx // bs, kv_idx // bs]

    return BlockMask.from_kv_blocks(
        diag_num,
        diag_idx.contiguous(),
        full_num,
        full_idx.contiguous(),
        BLOCK_SIZE=pattern.block_size,
        mask_mod=causal,
    )


def versions(device: torch.device) -> dict[str, str]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu {platform.machine()} x{torch.get_num_threads()} threads"
    return {"device": name, "torch": torch.__version__, "triton": triton_version}


class Bench:
    """One benchmark run: the timer, the shape and versions stamped on every row, the rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.ms = timer(self.device, args.repeats)
        self.backend = resolve_backend("benchmark", args.backend, self.device)
        self.rows: list[dict[str, Any]] = []
        self.shape = {
            "batch": 1,
            "heads": args.heads,
            "kv_heads": args.kv_heads,
            "head_dim": args.head_dim,
            "dtype": args.dtype,
            "block_size": args.block_size,
            **versions(self.device),
        }
        self.flex = None
        if not args.no_flex:
            from torch.nn.attention.flex_attention import flex_attention

            # Compiled on every device: eager FlexAttention materialises the full score matrix.
            self.flex = torch.compile(flex_attention)

    def row(self, **kw: Any) -> dict[str, Any]:
        r = {c: "" for c in COLUMNS}
        r.update(self.shape)
        r.update(kw)
        self.rows.append(r)
        return r

    def inputs(self, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.args
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
        g = torch.Generator(device=self.device).manual_seed(a.seed)
        kw: dict[str, Any] = {"generator": g, "device": self.device, "dtype": dtype}
        q = torch.randn(1, a.heads, length, a.head_dim, **kw)
        k = torch.randn(1, a.kv_heads, length, a.head_dim, **kw)
        v = torch.randn(1, a.kv_heads, length, a.head_dim, **kw)
        return q, k, v

    def free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def baseline_row(self, common: dict[str, Any]) -> None:
        """The dense SDPA row every speed-up of its phase and length is measured against."""
        self.row(
            method="dense",
            compression=1,
            achieved_compression=1.0,
            ms=common["baseline_ms"],
            estimation_ms=0.0,
            speedup=1.0,
            backend="sdpa",
            **common,
        )

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        length, be, ms = q.shape[2], self.backend, self.ms
        gqa = q.shape[1] != k.shape[1]
        base = ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa))
        common = {"phase": "prefill", "seq_len": length, "baseline_ms": base}
        self.baseline_row(common)
        for name in PREFILL:
            m = get_method(name, block_size=self.args.block_size)
            for c in self.args.compressions:
                try:
                    res = m.prefill(q, k, v, compression=c, backend=be)
                    total = ms(lambda: m.prefill(q, k, v, compression=c, backend=be))  # noqa: B023
                    est = ms(lambda: m.pattern(q, k, c))  # noqa: B023
                    r = self.row(
                        method=name,
                        compression=c,
                        ms=total,
                        estimation_ms=est,
                        achieved_compression=res.achieved_compression,
                        speedup=base / total,
                        backend=be,
                        note=res.note,
                        **common,
                    )
                    if name == "block-sparse":
                        self.against_flex(r, m.pattern(q, k, c), q, k, v)
                except torch.OutOfMemoryError:
                    self.row(method=name, compression=c, backend=be, note="out of memory", **common)
                self.free()

    def against_flex(
        self, r: dict[str, Any], pat: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> None:
        """Kernel time alone (given the pattern) and FlexAttention on the identical mask."""
        kern = self.ms(lambda: run_block_pattern(q, k, v, pat, self.backend))
        r["kernel_ms"] = kern
        if self.flex is None:
            return
        flex = self.flex
        mask = flex_block_mask(pat, q.shape[2], self.device)
        gqa = q.shape[1] != k.shape[1]
        fms = self.ms(lambda: flex(q, k, v, block_mask=mask, enable_gqa=gqa))
        r["flex_ms"] = fms
        r["speedup_vs_flex"] = fms / kern

    def decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        from scalelaw.kernels.quest import select_pages

        length, be, ms = q.shape[2], self.backend, self.ms
        dense = get_method("dense", phase="decode")
        q1 = q[:, :, -1:].contiguous()
        full = dense.prepare_cache(q, k, v)
        base = ms(lambda: dense.decode(q1, full, backend=be))
        common = {"phase": "decode", "seq_len": length, "baseline_ms": base}
        self.baseline_row(common)
        for name in DECODE:
            m = get_method(name)
            for c in self.args.compressions:
                t0 = time.perf_counter()
                state = m.prepare_cache(q, k, v, compression=c)
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                prep = (time.perf_counter() - t0) * 1e3
                step = ms(lambda: m.decode(q1, state, backend=be))  # noqa: B023
                # Quest selects pages every step; SnapKV evicts once after prefill.
                est = ms(lambda: select_pages(q1, state)) if name == "quest" else prep  # noqa: B023
                res = m.decode(q1, state, backend=be)
                self.row(
                    method=name,
                    compression=c,
                    ms=step,
                    estimation_ms=est,
                    achieved_compression=res.achieved_compression,
                    speedup=base / step,
                    backend=be,
                    note=res.note,
                    **common,
                )
                self.free()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    bench = Bench(args)
    for length in args.lengths:
        q, k, v = bench.inputs(length)
        if "prefill" in args.phases:
            bench.prefill(q, k, v)
        if "decode" in args.phases:
            bench.decode(q, k, v)
        del q, k, v
        bench.free()
    return bench.rows


def fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, int | float) and not isinstance(x, bool) else str(x)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'phase':8} {'method':15} {'L':>7} {'C':>5} {'C got':>6} {'ms':>10} {'est ms':>9} {'dense ms':>10} {'speedup':>8} {'flex ms':>9} {'vs flex':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['phase']:8} {r['method']:15} {r['seq_len']:>7} {fmt(r['compression'], 'g'):>5} "
            f"{fmt(r['achieved_compression'], '.2f'):>6} {fmt(r['ms'], '.3f'):>10} "
            f"{fmt(r['estimation_ms'], '.3f'):>9} {fmt(r['baseline_ms'], '.3f'):>10} "
            f"{fmt(r['speedup'], '.2f'):>8} {fmt(r['flex_ms'], '.3f'):>9} "
            f"{fmt(r['speedup_vs_flex'], '.2f'):>8}" + (f"  ({r['note']})" if r["note"] else "")
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a CPU check of the harness)")
    p.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768, 65536, 131072])
    p.add_argument("--compressions", type=float, nargs="+", default=[1, 5, 10, 20])
    p.add_argument(
        "--phases", nargs="+", default=["prefill", "decode"], choices=["prefill", "decode"]
    )
    p.add_argument("--heads", type=int, default=28)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "triton"])
    p.add_argument("--repeats", type=int, default=3, help="timed calls per point on CPU")
    p.add_argument("--no-flex", action="store_true", help="skip the FlexAttention comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("attention-timings.csv"))
    args = p.parse_args(argv)
    if args.quick:
        args.lengths = [2048]
        args.compressions = [1, 5, 10]
        args.heads, args.kv_heads, args.head_dim = 8, 2, 64
        args.dtype = "fp32"
        args.block_size = 32
        args.repeats = 3
    if args.heads % args.kv_heads:
        p.error(f"--heads {args.heads} must be a multiple of --kv-heads {args.kv_heads}")
    if any(c < 1 or not math.isfinite(c) for c in args.compressions):
        p.error("--compressions must be finite numbers >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.manual_seed(args.seed)
    rows = run(args)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"\nwrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
