"""Time every sparse attention method against dense attention measured in the same run.

Prefill: each method (pattern estimation included, and also timed apart) against torch SDPA
dense causal attention; block-sparse also against FlexAttention given the identical block mask.
Block-sparse runs at every `--block-sparse-sizes` (default 16, the block the accuracy runs and
the study use, and 64 and 128, what GPU kernels want); vertical-slash and flexprefill at
`--block-size`. Decode: one step of each method against one dense SDPA step over the full cache;
for snapkv and ada-snapkv, where the method exposes its eviction (`evict`), the one-off eviction
time and the number of decode steps after which it has paid for itself. The dense baseline is
the fastest SDPA backend that runs (or the one `--sdpa-backend` names), recorded on every row.

Inputs (`--inputs`):
- `synthetic` (the default): generated q, k, v whose attention has the structure real attention
  has: attention sinks, local windows, a few vertical stripes and one diagonal per KV head, so
  the patterns the methods pick and the compression they reach resemble a model's rather than
  random noise's (`synthetic_inputs`);
- `model`: the q, k, v one layer of a real model attends with on a generated task prompt
  (`--model`, default SmolLM2-135M, or the tiny random `tiny-llama` when it is not installed;
  `--model-layer`, default the middle layer; `--task`). The heads, KV heads and head dim are
  the model's. The prompt is generated once, as long as the longest L asked for (at least 1024
  tokens, at most the model's context length, 8192 for SmolLM2), and the model runs up to that
  layer only. An L up to the prompt's length takes its first L positions. Longer L repeats the
  n captured positions: copy j is the captured q and k rotated by j x n more positions with the
  model's rotary frequencies (what the same tokens placed j x n later would give) and the same
  v. Attention across copies is that of a repeated text (each copy's sinks recur as vertical
  stripes every n tokens), not that of a longer document;
- `random`: torch.randn q, k, v (diffuse attention, no structure).

`--check-compression` builds only the patterns (PyTorch, no timing) on synthetic inputs and
prints, per prefill method, length and C, the compression achieved, and for vertical-slash the
dense tiles over the tiles computed.

Every row is appended to the CSV as soon as it is measured, and a row that raises is written as
a failed row with the error, so one failure loses nothing. The CSV is
`benchmarks/results/attention-<gpu name>.csv` (`attention-cpu.csv` on a CPU) unless `--out`
names another; `--quick` writes no CSV unless `--out` is given. `scalelaw frontier --cost
latency` reads the CSV (columns in docs/performance.md).

    python benchmarks/attention.py                           # GPU: L 16K-128K, C 1/5/10/20
    python benchmarks/attention.py --device cpu --quick      # tiny CPU check, same table
    python benchmarks/attention.py --check-compression       # achieved C only, CPU, no timing
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import inspect
import math
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from scalelaw.kernels import get_method
from scalelaw.kernels.base import (
    achieved_from_cells,
    compression_reached,
    resolve_backend,
    run_tiles,
    unreachable_note,
)
from scalelaw.kernels.budgets import causal_entries
from scalelaw.kernels.specs import BUDGET_RULES, SPECS, reachable

PREFILL = ("block-sparse", "vertical-slash", "flexprefill")
DECODE = ("quest", "snapkv", "ada-snapkv")
#: The block size accuracy runs use for block-sparse (the study's 16x16 blocks).
ACCURACY_BLOCK_SIZE = int(SPECS["block-sparse"].defaults()["block_size"])  # type: ignore[arg-type]
RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = [
    "method",
    "phase",
    "seq_len",
    "compression",
    "achieved_compression",
    "study_compression",
    "ms",
    "estimation_ms",
    "baseline_ms",
    "speedup",
    "tflops",
    "kernel_ms",
    "flex_ms",
    "speedup_vs_flex",
    "eviction_ms",
    "break_even_tokens",
    "backend",
    "sdpa_backend",
    "inputs",
    "dtype",
    "batch",
    "heads",
    "kv_heads",
    "head_dim",
    "block_size",
    "device",
    "torch",
    "triton",
    "status",
    "run",
    "note",
]
SDPA_BACKENDS = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}


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


# Logit sizes of the synthetic inputs' patterns (the random part has a spread of about 0.25).
LOCAL_LOGIT, SINK_LOGIT, STRIPE_LOGIT, SLASH_LOGIT = 10.0, 8.0, 6.0, 7.0


def rotate(x: torch.Tensor, pos: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + F) of x (..., L, 2F) by pos * theta (as rotary embeddings)."""
    half = theta.shape[0]
    angle = pos[:, None].float() * theta
    cos, sin = angle.cos(), angle.sin()
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def synthetic_inputs(
    batch: int,
    heads: int,
    kv_heads: int,
    length: int,
    head_dim: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v whose attention has sinks, local windows, vertical stripes and diagonals.

    Channels are split by role, each pattern shared by the query heads of a KV head. Rotary
    channels carry one vector in queries and keys, rotated by position, so scores peak on the
    main diagonal and fade within about a hundred tokens (local windows). A second rotary group
    rotates the keys by their position plus an offset, which puts a band of high scores on the
    diagonal at that offset (one offset per KV head). Content channels carry a direction every query shares with the
    first keys (sinks) and a few random keys (vertical stripes). The patterns' logits are 6 to
    10 above the random part, so they hold most of the attention mass, as in trained models.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    group = heads // kv_heads
    scale = math.sqrt(head_dim)
    local_pairs = max(1, head_dim // 4)
    slash_pairs = max(1, head_dim // 8)
    content = head_dim - 2 * (local_pairs + slash_pairs)
    pos = torch.arange(length, device=device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    def unit(*shape: int) -> torch.Tensor:
        x = randn(*shape)
        return x / x.norm(dim=-1, keepdim=True)

    def per_head(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(group, dim=1)

    q = 0.5 * randn(batch, heads, length, head_dim)
    k = 0.5 * randn(batch, kv_heads, length, head_dim)
    v = randn(batch, kv_heads, length, head_dim)
    # local windows: frequencies down to 1/256 rad per token
    theta = 256.0 ** (-torch.arange(local_pairs, device=device) / max(1, local_pairs - 1))
    u = unit(batch, kv_heads, 1, 2 * local_pairs) * math.sqrt(LOCAL_LOGIT * scale)
    u = u.expand(-1, -1, length, -1)
    lo = slice(0, 2 * local_pairs)
    q[..., lo] += per_head(rotate(u, pos, theta))
    k[..., lo] += rotate(u, pos, theta)
    # diagonals: keys rotated as if `offset` tokens later; bands about 30 tokens wide
    theta = 32.0 ** (-torch.arange(slash_pairs, device=device) / max(1, slash_pairs - 1))
    w = unit(batch, kv_heads, 1, 2 * slash_pairs) * math.sqrt(SLASH_LOGIT * scale)
    w = w.expand(-1, -1, length, -1)
    sl = slice(2 * local_pairs, 2 * (local_pairs + slash_pairs))
    q[..., sl] += per_head(rotate(w, pos, theta))
    # one diagonal per KV head (more would add their tails to every score)
    for h in range(kv_heads):
        offset = (length // 7, length // 3, length // 2)[h % 3]
        k[:, h, :, sl] += rotate(w[:, h], pos + offset, theta)
    # sinks and vertical stripes: a direction every query shares with a few keys
    if content > 0:
        c = unit(batch, kv_heads, 1, content)
        co = slice(head_dim - content, head_dim)
        q[..., co] += per_head(2 * c).expand(-1, -1, length, -1)
        k[:, :, : min(4, length), co] += SINK_LOGIT * scale / 2 * c
        stripes = torch.randperm(length, generator=g)[: max(1, length // 2048 + 4)].to(device)
        k[:, :, stripes, co] += STRIPE_LOGIT * scale / 2 * c
    return q.to(dtype), k.to(dtype), v.to(dtype)


class ModelInputs:
    """q, k, v of one layer of a real model on a generated task prompt, at any length.

    The model runs once, at the longest length asked for (at most its context length); shorter
    lengths take the first positions (causal attention of a prefix does not depend on what
    follows), longer ones repeat the captured positions with rotary embeddings shifted (module
    docstring).
    """

    FALLBACK = "tiny-llama"

    def __init__(
        self, spec: str, layer: int | None, task: str, length: int, device: torch.device, seed: int
    ) -> None:
        from scalelaw.measure.models import ModelError, load_model, model_context
        from scalelaw.measure.sparse import capture_attention
        from scalelaw.measure.tasks import get_task

        dtype = "auto" if device.type == "cuda" else "float32"
        try:
            model = load_model(spec, dtype=dtype, device=str(device), seed=seed)
        except ModelError:
            if spec != "smollm2-135m":
                raise
            spec = self.FALLBACK
            model = load_model(spec, dtype=dtype, device=str(device), seed=seed)
        cfg = model.model.config
        n_layers = int(cfg.num_hidden_layers)
        self.layer = n_layers // 2 if layer is None else layer
        if not 0 <= self.layer < n_layers:
            raise SystemExit(f"--model-layer must be in [0, {n_layers - 1}] for {spec}")
        context = model_context(spec) or length
        n = min(length, context)
        # a task prompt needs some hundred tokens; shorter lengths take the prefix of one
        target = min(context, max(n, 1024))
        sample = get_task(task).generate(model.count_tokens, target=target, seed=seed, index=0)
        ids = torch.tensor([model.encode(sample.prompt)[:n]], device=model.device)
        with torch.inference_mode(), capture_attention(self.layer) as cap:
            model.model(ids)
        if cap.q is None or cap.k is None or cap.v is None:
            raise RuntimeError(f"{spec}: layer {self.layer} did not run")
        self.q, self.k, self.v = cap.q, cap.k, cap.v
        rotary = getattr(getattr(model.model, "model", None), "rotary_emb", None)
        inv_freq = getattr(rotary, "inv_freq", None)
        self.theta = None if inv_freq is None else inv_freq.detach().float().to(device)
        self.spec = spec
        self.label = f"model:{spec}:layer{self.layer}"
        self.heads, self.kv_heads = self.q.shape[1], self.k.shape[1]
        self.head_dim = self.q.shape[-1]
        del model

    def __call__(
        self, length: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.q.shape[2]
        if length <= n:
            q, k, v = (t[:, :, :length].to(dtype).contiguous() for t in (self.q, self.k, self.v))
            return q, k, v
        if self.theta is None:
            raise RuntimeError(f"{self.spec} has no rotary frequencies to extend {n} positions")
        copies = math.ceil(length / n)
        qs, ks = [], []
        for j in range(copies):
            shift = torch.full((n,), j * n, device=self.q.device)
            # RoPE of position p + s is RoPE of p rotated by s: shift the rotated vectors
            qs.append(rotate(self.q.float(), shift, self.theta))
            ks.append(rotate(self.k.float(), shift, self.theta))
        q = torch.cat(qs, dim=2)[:, :, :length]
        k = torch.cat(ks, dim=2)[:, :, :length]
        v = self.v.repeat(1, 1, copies, 1)[:, :, :length]
        return q.to(dtype).contiguous(), k.to(dtype).contiguous(), v.to(dtype).contiguous()


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


def flex_options(block: int) -> dict[str, Any]:
    """FlexAttention's tiles pinned to the mask's block (`kernel_options`, where this torch
    takes them), so it runs the blocks the mask holds rather than tiles of its own choosing."""
    from torch.nn.attention.flex_attention import flex_attention

    if "kernel_options" not in inspect.signature(flex_attention).parameters:
        return {}
    return {"kernel_options": {"BLOCK_M": block, "BLOCK_N": block}}


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


@contextlib.contextmanager
def sdpa_backend(name: str) -> Iterator[None]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[name])]):
        yield


class RowWriter:
    """Appends rows to the CSV as they come, one header per file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header != COLUMNS:
                raise SystemExit(
                    f"{path}: holds other columns than this benchmark writes; "
                    "choose another --out or move the file away"
                )
        else:
            with path.open("w", newline="") as f:
                csv.DictWriter(f, fieldnames=COLUMNS).writeheader()

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)


def error_text(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of memory"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


class Bench:
    """One benchmark run: the timer, the shape and versions stamped on every row, the rows."""

    def __init__(self, args: argparse.Namespace, writer: RowWriter | None = None) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.ms = timer(self.device, args.repeats)
        self.writer = writer
        self.model_inputs: ModelInputs | None = None
        inputs = args.inputs
        if inputs == "model":
            mi = ModelInputs(
                args.model, args.model_layer, args.task, max(args.lengths), self.device, args.seed
            )
            # the model's shape replaces --heads, --kv-heads and --head-dim on every row
            args.heads, args.kv_heads, args.head_dim = mi.heads, mi.kv_heads, mi.head_dim
            self.model_inputs, inputs = mi, mi.label
        self.rows: list[dict[str, Any]] = []
        self.shape = {
            "batch": 1,
            "heads": args.heads,
            "kv_heads": args.kv_heads,
            "head_dim": args.head_dim,
            "dtype": args.dtype,
            "block_size": args.block_size,
            "inputs": inputs,
            "run": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
        r["status"] = "ok"
        r.update(kw)
        self.rows.append(r)
        return r

    def emit(self, r: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.write(r)

    @contextlib.contextmanager
    def measuring(self, **kw: Any) -> Iterator[dict[str, Any]]:
        """A row that is written when the block ends, as failed with the error if it raised."""
        r = self.row(**kw)
        try:
            yield r
        except Exception as exc:  # every failure becomes a row; the run goes on
            r["status"] = "failed"
            r["note"] = error_text(exc)
        finally:
            self.emit(r)
            self.free()

    def inputs(self, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.args
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
        if self.model_inputs is not None:
            return self.model_inputs(length, dtype)
        if a.inputs == "synthetic":
            return synthetic_inputs(
                1, a.heads, a.kv_heads, length, a.head_dim,
                dtype=dtype, device=self.device, seed=a.seed,
            )  # fmt: skip
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

    def tflops(self, phase: str, length: int, achieved: float, ms: float) -> float:
        """Useful TFLOP/s: 4 x heads x head_dim per computed (query, key) pair."""
        pairs = causal_entries(length) if phase == "prefill" else length
        flops = 4.0 * self.args.heads * self.args.head_dim * pairs / achieved
        return flops / (ms * 1e-3) / 1e12

    def sdpa(self, call: Callable[[], Any]) -> tuple[str, float]:
        """(backend, ms) of the dense baseline: the named backend, or the fastest that runs."""
        choice = self.args.sdpa_backend
        if choice != "fastest":
            names = [choice]
        elif self.device.type == "cuda":
            names = ["cudnn", "flash", "efficient"]
        else:
            names = ["flash"]
        best: tuple[str, float] | None = None
        errors = []
        for name in names:
            try:
                with sdpa_backend(name):
                    ms = self.ms(call)
            except Exception as exc:
                errors.append(f"{name}: {error_text(exc)}")
                self.free()
                continue
            if best is None or ms < best[1]:
                best = (name, ms)
        if best is None and choice == "fastest":
            with sdpa_backend("math"):
                best = ("math", self.ms(call))
        if best is None:
            raise RuntimeError("; ".join(errors))
        return best

    def baseline(self, phase: str, length: int, call: Callable[[], Any]) -> dict[str, Any]:
        """The dense SDPA row every speed-up of its phase and length is measured against."""
        common: dict[str, Any] = {"phase": phase, "seq_len": length, "baseline_ms": ""}
        with self.measuring(
            method="dense",
            compression=1,
            achieved_compression=1.0,
            backend="sdpa",
            block_size="",
            **common,
        ) as r:
            backend, base = self.sdpa(call)
            r.update(
                ms=base,
                baseline_ms=base,
                estimation_ms=0.0,
                speedup=1.0,
                sdpa_backend=backend,
                tflops=self.tflops(phase, length, 1.0, base),
            )
            common.update(baseline_ms=base, sdpa_backend=backend)
        return common

    def finish(self, r: dict[str, Any], phase: str, length: int, ms: float, res: Any) -> None:
        base = r["baseline_ms"]
        r.update(
            ms=ms,
            achieved_compression=res.achieved_compression,
            study_compression=getattr(res, "study_counted", res.achieved_compression),
            speedup=base / ms if base != "" else "",
            tflops=self.tflops(phase, length, res.achieved_compression, ms),
            note=res.note,
        )

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        length = q.shape[2]
        gqa = q.shape[1] != k.shape[1]
        common = self.baseline(
            "prefill",
            length,
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa),
        )
        for name in (m for m in PREFILL if m in self.args.methods):
            sizes = self.args.block_sparse_sizes if name == "block-sparse" else None
            for bs in sizes or [self.args.block_size]:
                for c in self.args.compressions:
                    with self.measuring(method=name, compression=c, block_size=bs, **common) as r:
                        self.prefill_row(r, name, bs, c, q, k, v)

    def prefill_row(
        self,
        r: dict[str, Any],
        name: str,
        bs: int,
        c: float,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
    ) -> None:
        ms = self.ms
        m = bench_method(name, self.args.budget_rule, block_size=bs)
        be = resolve_backend(name, self.args.backend, self.device, m.knobs())
        r["backend"] = be
        res = m.prefill(q, k, v, compression=c, backend=be)
        total = ms(lambda: m.prefill(q, k, v, compression=c, backend=be))
        self.finish(r, "prefill", q.shape[2], total, res)
        r["estimation_ms"] = ms(lambda: m.pattern(q, k, c))
        if name == "block-sparse":
            self.against_flex(r, m.pattern(q, k, c), q, k, v, be)

    def against_flex(
        self,
        r: dict[str, Any],
        pat: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        backend: str,
    ) -> None:
        """Kernel time alone (given the pattern) and FlexAttention on the identical mask."""
        tiles = pat.tiles()
        kern = self.ms(lambda: run_tiles(q, k, v, tiles, backend))
        r["kernel_ms"] = kern
        only = self.args.flex_block_sizes
        if self.flex is None or (only is not None and pat.block_size not in only):
            return
        flex = self.flex
        mask = flex_block_mask(pat, q.shape[2], self.device)
        gqa = q.shape[1] != k.shape[1]
        opts = flex_options(pat.block_size)
        fms = self.ms(lambda: flex(q, k, v, block_mask=mask, enable_gqa=gqa, **opts))
        r["flex_ms"] = fms
        r["speedup_vs_flex"] = fms / kern

    def decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        from scalelaw.kernels.quest import select_pages

        length, ms = q.shape[2], self.ms
        q1 = q[:, :, -1:].contiguous()
        gqa = q.shape[1] != k.shape[1]
        common = self.baseline(
            "decode",
            length,
            lambda: F.scaled_dot_product_attention(q1, k, v, enable_gqa=gqa),
        )
        for name in (m for m in DECODE if m in self.args.methods):
            for c in self.args.compressions:
                with self.measuring(method=name, compression=c, block_size="", **common) as r:
                    m = bench_method(name, self.args.budget_rule)
                    kn = m.knobs()
                    be = resolve_backend(name, self.args.backend, self.device, kn)
                    r["backend"] = be
                    r["block_size"] = kn.get("page_size", "")  # quest's page; none for snapkv
                    t0 = time.perf_counter()
                    state = m.prepare_cache(q, k, v, compression=c)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    prep = (time.perf_counter() - t0) * 1e3
                    step = ms(lambda: m.decode(q1, state, backend=be))  # noqa: B023
                    self.finish(r, "decode", length, step, m.decode(q1, state, backend=be))
                    # Quest selects pages every step; SnapKV evicts once after prefill.
                    r["estimation_ms"] = (
                        ms(lambda: select_pages(q1, state)) if name == "quest" else prep  # noqa: B023
                    )
                    evict = eviction_step(m)
                    if evict is not None:
                        ev = ms(lambda: evict(q, k, v, compression=c))  # noqa: B023
                        r["eviction_ms"] = ev
                        r["break_even_tokens"] = break_even(ev, r["baseline_ms"], step)


def eviction_step(method: Any) -> Callable[..., Any] | None:
    """The method's one-off eviction as a call of its own (`evict(q_prompt, k, v,
    compression=C)`), or None where the method does not expose one."""
    fn = getattr(method, "evict", None)
    return fn if callable(fn) else None


def break_even(eviction_ms: float, dense_ms: Any, step_ms: float) -> float:
    """Decode steps after which the eviction has paid for itself: eviction time over what
    each step saves against dense; inf where a step saves nothing."""
    if not isinstance(dense_ms, int | float) or dense_ms - step_ms <= 0:
        return math.inf
    return eviction_ms / (dense_ms - step_ms)


def device_slug(device: torch.device) -> str:
    """`nvidia-h100-80gb-hbm3` for an H100, `cpu` on a CPU: the results file's suffix."""
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cuda"


def default_out(device: torch.device) -> Path:
    return RESULTS / f"attention-{device_slug(device)}.csv"


def run(args: argparse.Namespace, writer: RowWriter | None = None) -> list[dict[str, Any]]:
    bench = Bench(args, writer)
    for length in args.lengths:
        try:
            q, k, v = bench.inputs(length)
        except Exception as exc:  # no inputs at this length: one failed row per phase
            for phase in args.phases:
                r = bench.row(method="dense", phase=phase, seq_len=length, compression=1)
                r.update(status="failed", note=f"inputs: {error_text(exc)}")
                bench.emit(r)
            bench.free()
            continue
        if "prefill" in args.phases:
            bench.prefill(q, k, v)
        if "decode" in args.phases:
            bench.decode(q, k, v)
        del q, k, v
        bench.free()
    return bench.rows


CHECK_LENGTHS = (4096, 16384)
CHECK_COMPRESSIONS = (2.0, 5.0, 10.0, 20.0)


def bench_method(name: str, budget_rule: str, **knobs: Any) -> Any:
    """A method with `budget_rule` where it has one: the benchmark times each method at the C
    it is asked for ("exact"), unless told to time the study's budgets ("study")."""
    if "budget_rule" in SPECS[name].defaults():
        knobs["budget_rule"] = budget_rule
    return get_method(name, **knobs)


def check_compression(
    lengths: tuple[int, ...] = CHECK_LENGTHS,
    compressions: tuple[float, ...] = CHECK_COMPRESSIONS,
    *,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 64,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Achieved C of every prefill method (the study's knobs) on synthetic inputs, from the
    pattern and its tiles alone: nothing is attended or timed.

    For vertical-slash also the dense tiles (what a causal kernel of the same block computes)
    over the tiles computed, single columns counted as 1/block of a tile.
    """
    rows = []
    for length in lengths:
        q, k, _ = synthetic_inputs(
            1, heads, kv_heads, length, head_dim,
            dtype=torch.float32, device=torch.device("cpu"), seed=seed,
        )  # fmt: skip
        for name in PREFILL:
            m = bench_method(name, "exact")
            kn = m.knobs()
            c_max = reachable(name, kn, length)[1]
            for c in compressions:
                plan = m.plan(m.pattern(q, k, c), length, kn)
                achieved = achieved_from_cells(length, heads, float(plan.cells.sum()))
                row: dict[str, Any] = {
                    "method": name,
                    "seq_len": length,
                    "compression": c,
                    "achieved": achieved,
                    "reached": compression_reached(c, achieved),
                    "c_max": c_max,
                    "tile_ratio": None,
                    "note": unreachable_note(name, c, achieved, plan.why),
                }
                if name == "vertical-slash":
                    ix, bs = plan.index, plan.index.block
                    nb = ix.n_blocks
                    tiles = float(ix.counts.double().sum() + ix.col_counts.double().sum() / bs)
                    row["tile_ratio"] = heads * nb * (nb + 1) / 2 / tiles
                rows.append(row)
    return rows


def print_check(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'method':15} {'L':>6} {'C':>4} {'C got':>6} {'within 10%':>10} {'C max':>6} "
        f"{'dense/computed tiles':>20}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = "" if r["tile_ratio"] is None else f"{r['tile_ratio']:.2f}"
        print(
            f"{r['method']:15} {r['seq_len']:>6} {r['compression']:>4g} {r['achieved']:>6.2f} "
            f"{'yes' if r['reached'] else 'no':>10} {r['c_max']:>6.3g} {ratio:>20}"
            + (f"  ({r['note']})" if r["note"] else "")
        )


def fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, int | float) and not isinstance(x, bool) else str(x)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'phase':8} {'method':15} {'L':>7} {'C':>5} {'C got':>6} {'ms':>10} {'est ms':>9} "
        f"{'dense ms':>10} {'speedup':>8} {'TFLOP/s':>8} {'flex ms':>9} {'vs flex':>8} "
        f"{'block':>5} {'evict ms':>9} {'break-even':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        note = r["note"] if r["status"] == "ok" else f"FAILED: {r['note']}"
        print(
            f"{r['phase']:8} {r['method']:15} {r['seq_len']:>7} {fmt(r['compression'], 'g'):>5} "
            f"{fmt(r['achieved_compression'], '.2f'):>6} {fmt(r['ms'], '.3f'):>10} "
            f"{fmt(r['estimation_ms'], '.3f'):>9} {fmt(r['baseline_ms'], '.3f'):>10} "
            f"{fmt(r['speedup'], '.2f'):>8} {fmt(r['tflops'], '.3g'):>8} "
            f"{fmt(r['flex_ms'], '.3f'):>9} {fmt(r['speedup_vs_flex'], '.2f'):>8} "
            f"{fmt(r['block_size'], 'd'):>5} {fmt(r['eviction_ms'], '.3f'):>9} "
            f"{fmt(r['break_even_tokens'], '.0f'):>10}" + (f"  ({note})" if note else "")
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
    p.add_argument(
        "--methods",
        nargs="+",
        default=[*PREFILL, *DECODE],
        choices=[*PREFILL, *DECODE],
        help="methods to time (the dense baseline of each phase always runs)",
    )
    p.add_argument("--heads", type=int, default=28)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument(
        "--block-size", type=int, default=64, help="vertical-slash and flexprefill's block"
    )
    p.add_argument(
        "--block-sparse-sizes",
        type=int,
        nargs="+",
        default=[ACCURACY_BLOCK_SIZE, 64, 128],
        help=f"block-sparse runs at each (default: {ACCURACY_BLOCK_SIZE}, the accuracy runs' "
        "block, and 64 and 128, what GPU kernels want)",
    )
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "triton"])
    p.add_argument(
        "--budget-rule",
        default="exact",
        choices=BUDGET_RULES,
        help="vertical-slash and flexprefill: exact (default) times the budget that hits each C; "
        "study times the study's budget for (L, C), its achieved C in the row",
    )
    p.add_argument(
        "--inputs",
        default="synthetic",
        choices=["synthetic", "model", "random"],
        help="synthetic: sinks, local windows, stripes and diagonals; model: one layer of "
        "--model on a --task prompt; random: torch.randn",
    )
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="--inputs model: a scalelaw model spec (tiny-llama when smollm2-135m is missing)",
    )
    p.add_argument(
        "--model-layer", type=int, default=None, help="--inputs model: layer (default: middle)"
    )
    p.add_argument("--task", default="niah-multikey", help="--inputs model: the prompt's task")
    p.add_argument(
        "--sdpa-backend",
        default="fastest",
        choices=["fastest", *SDPA_BACKENDS],
        help="dense baseline: the fastest SDPA backend that runs, or this one",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per point on CPU")
    p.add_argument("--no-flex", action="store_true", help="skip the FlexAttention comparison")
    p.add_argument(
        "--flex-block-sizes",
        type=int,
        nargs="+",
        default=None,
        help="compare with FlexAttention only at these block-sparse block sizes (each size "
        "compiles FlexAttention anew; default: every size)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--check-compression",
        action="store_true",
        help="print the achieved C of every prefill method at L 4K and 16K, C 2/5/10/20 "
        "(synthetic inputs, patterns only, no timing) and exit",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="CSV the rows are appended to as they are measured (default: "
        "benchmarks/results/attention-<gpu name>.csv, attention-cpu.csv on a CPU; none with "
        "--quick)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.lengths = [2048]
        args.compressions = [1, 5, 10]
        args.heads, args.kv_heads, args.head_dim = 8, 2, 64
        args.dtype = "fp32"
        args.block_size = 32
        args.block_sparse_sizes = [ACCURACY_BLOCK_SIZE, 32]
        args.repeats = 3
    if args.heads % args.kv_heads:
        p.error(f"--heads {args.heads} must be a multiple of --kv-heads {args.kv_heads}")
    if any(c < 1 or not math.isfinite(c) for c in args.compressions):
        p.error("--compressions must be finite numbers >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.manual_seed(args.seed)
    if args.check_compression:
        rows = check_compression(seed=args.seed)
        print_check(rows)
        return 0 if all(r["reached"] or r["compression"] > r["c_max"] for r in rows) else 1
    out = args.out
    if out is None and not args.quick:
        out = default_out(torch.device(args.device))
    writer = RowWriter(out) if out is not None else None
    rows = run(args, writer)
    print_table(rows)
    failed = sum(r["status"] != "ok" for r in rows)
    where = (
        f"appended {len(rows)} rows to {out}" if out else "no CSV written (--quick; --out keeps)"
    )
    print(f"\n{where}" + (f" ({failed} failed)" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
