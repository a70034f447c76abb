"""Host-side cost of the sparse attention methods' bookkeeping, per layer call: ATen ops, host
syncs and peak temporary memory.

What is profiled, per method:
- block-sparse, vertical-slash, flexprefill: pattern estimation and the tile index of one layer
  call, `m.plan(m.pattern(q, k, C), L, knobs)` (the attention kernel itself is not included);
- quest: one decode step `m.decode(q_step, cache)`, and its page selection alone
  (`select_pages`, what the Triton path runs in PyTorch before the kernel);
- snapkv, ada-snapkv: one decode step over the evicted cache, and the one-off eviction: the
  method's `evict` where it exposes one, else `prepare_cache` (scoring, top-k and gather).

Counts come from a `TorchDispatchMode` (every ATen op that reaches the dispatcher, views
included, after composite ops are decomposed) and a `TorchFunctionMode` (host reads that never
reach the dispatcher on a CPU tensor: `tolist`, `numpy`; moves between host and device). A
host sync is an op that on a GPU makes the host wait for the device: `_local_scalar_dense`
(`.item()`, `float()`, `int()`, `bool()` of a tensor), any op whose output shape depends on the
data (`nonzero`, `masked_select`, `unique`, indexing with a boolean mask, `repeat_interleave`
without `output_size`), any op whose result is a host value read from the data (`equal`,
`allclose`), `tolist`/`numpy`, and a blocking copy between host and device in either direction
(PyTorch waits for the stream after it; `non_blocking=True` copies are not counted, nor a
Python scalar written into a device tensor). Ops on tensors that live on the host cost no
sync. On a CPU every tensor stands in for a device tensor except host tensors, followed as a
GPU would hold them (`Tracker`): made by a factory without a device (`torch.full(n, x)`), by
`.cpu()`/`.to("cpu")`, or computed from host tensors alone. So a method that keeps a host copy
of what it reads is credited for it, and one that builds a small tensor on the host and moves
it to the device is charged a sync for the move.

Peak temporary bytes: every storage an op returns that is not the storage of one of its
arguments is a new allocation; it is counted from the op until the storage is freed (a weakref
finalizer on the storage). The peak is the largest sum alive at once during the call, the
call's own result included (`retained` is what is still alive when the call returns). Scratch
an op allocates and frees inside itself (inside one CPU matmul or SDPA kernel) is not seen.

The counts do not depend on the device, except where a method takes another path on CUDA
(quest's step runs the Triton kernel there instead of a gather; vertical-slash and flexprefill
score their window and build their tile index with Triton kernels, which `--scores triton`
counts on a CPU); times on a CPU
say nothing about a GPU. The inputs are `benchmarks/attention.py`'s synthetic q, k, v (sinks, local windows,
stripes, diagonals), so the patterns and index widths are those of structured attention.

The run is capped at `--max-gb` of address space above what the process holds at the start
(default: 24 GB or the memory available, whichever is less): a (method, length) that needs more
is skipped with a note instead of swapping the machine or being killed.

    python benchmarks/estimation_profile.py                    # 16K/64K/128K prefill, 128K decode
    python benchmarks/estimation_profile.py --lengths 64K --methods vertical-slash,flexprefill
    python benchmarks/estimation_profile.py --quick --details   # tiny shapes, with sync sites
    python benchmarks/estimation_profile.py --lengths 64K --scores triton   # as a GPU scores
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import importlib.util
import inspect
import math
import resource
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from scalelaw.kernels import get_method

PREFILL = ("block-sparse", "vertical-slash", "flexprefill")
DECODE = ("quest", "snapkv", "ada-snapkv")
METHODS = PREFILL + DECODE
MB = 2**20
GB = 2**30
MEMORY_TRACKING = "dispatch-mode storages (new output storages, weakref finalizers)"

# The targets (per layer call, GPU shape): the estimation's host syncs and launches at
# 64K, and quest's per-step temporaries at 128K.
TARGET_SYNC_LENGTH = 65536
MAX_SYNCS = 2
MAX_OPS = 150
TARGET_QUEST_LENGTH = 131072
MAX_QUEST_TEMP_BYTES = 16 * MB

# Indexing ops sync only when an index is a boolean mask (its nonzero runs inside the op).
_INDEXING = {
    torch.ops.aten.index.Tensor,
    torch.ops.aten.index_put.default,
    torch.ops.aten.index_put_.default,
    torch.ops.aten._index_put_impl_.default,
}
_COPIES = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}
# Host reads that do not reach the dispatcher for CPU tensors (on CUDA they would show as a
# device-to-host copy, counted once here instead).
_HOST_READS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__}
_HERE = Path(__file__).resolve()
_TORCH_DIR = Path(torch.__file__).resolve().parent


@dataclass
class CallProfile:
    """What one call did on the host side."""

    ops: int = 0
    view_ops: int = 0
    syncs: int = 0
    peak_bytes: int = 0
    retained_bytes: int = 0
    seconds: float = 0.0  # under the counting modes; rows report a bare call's instead
    op_counts: Counter[str] = field(default_factory=Counter)
    # "op @ file:line" of the first frame outside torch and this script
    sync_sites: Counter[str] = field(default_factory=Counter)
    _live: dict[int, int] = field(default_factory=dict, repr=False)
    _current: int = 0

    def add_sync(self, what: str) -> None:
        self.syncs += 1
        self.sync_sites[f"{what} @ {call_site()}"] += 1

    def track(self, out: Any, args: Any, kwargs: Any) -> None:
        """Count each storage `out` holds that is new: not the storage of an argument."""
        inputs = {id(s) for s in _storages((args, kwargs))}
        for st in _storages(out):
            key = id(st)
            if key in inputs or key in self._live:
                continue
            n = st.nbytes()
            self._live[key] = n
            self._current += n
            self.peak_bytes = max(self.peak_bytes, self._current)
            weakref.finalize(st, self._freed, key)

    def _freed(self, key: int) -> None:
        self._current -= self._live.pop(key, 0)


class Tracker:
    """Which tensors live on the host, and the call being profiled (None: only track).

    On a GPU that is each tensor's device. On a CPU every tensor stands in for a device tensor
    (`stand_in`) except host tensors: those a factory (`torch.full`, `torch.tensor`, ...) made
    without a device or with the string "cpu", the results of `.cpu()`, `.to("cpu")` or
    `.to(host_tensor)`, and whatever is computed from host tensors alone. A move between host
    and device (`.to(x.device)` of a host tensor, `.cpu()` of a stand-in) is copied as on a GPU
    and counted as a sync unless non-blocking (a blocking copy waits for the stream), and
    reading a host tensor (`int()`, `tolist()`) costs none, so a method that keeps a host copy
    on purpose is credited for it.
    """

    def __init__(self, stand_in: bool) -> None:
        self.stand_in = stand_in
        self.host: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.prof: CallProfile | None = None
        self.quiet = 0  # inside a host read or move already counted

    def is_host(self, t: torch.Tensor) -> bool:
        return t in self.host if self.stand_in else t.device.type == "cpu"

    def mark(self, tree: Any, host: bool) -> None:
        for t in _tensors(tree):
            if host:
                self.host[t] = True
            else:
                self.host.pop(t, None)

    def sync(self, what: str) -> None:
        if self.prof is not None and not self.quiet:
            self.prof.add_sync(what)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with torch.no_grad(), _HostMode(self), _Ops(self):
            yield


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [x for x in tree_leaves(tree) if isinstance(x, torch.Tensor)]


def _storages(tree: Any) -> Iterator[Any]:
    for x in _tensors(tree):
        try:
            yield x.untyped_storage()
        except (RuntimeError, NotImplementedError):  # no storage (meta, sparse)
            continue


def call_site() -> str:
    """The innermost frame outside torch and this script, as path:line (function)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        inside_torch = _TORCH_DIR in path.parents
        if not inside_torch and path != _HERE and "contextlib" not in path.name:
            try:
                shown = path.resolve().relative_to(_HERE.parents[1])
            except ValueError:
                shown = path
            return f"{shown}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "?"


def sync_reason(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], tr: Tracker
) -> str | None:
    """The op's name when running it on a GPU makes the host wait for the device, else None."""
    name = func.overloadpacket.__name__
    tags = func.tags
    if func in _INDEXING:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        masks = [
            t
            for t in indices or ()
            if isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)
        ]
        return f"{name}[bool mask]" if masks else None
    if func is torch.ops.aten.repeat_interleave.Tensor:
        return None if kwargs.get("output_size") is not None else name
    if torch.Tag.data_dependent_output in tags or torch.Tag.dynamic_output_shape in tags:
        return name
    if func in _COPIES:
        return _copy_sync(func, args, kwargs, tr)
    return None


def _copy_sync(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], tr: Tracker) -> str | None:
    """A blocking copy between host and device: the host waits for the stream to drain."""
    if func is torch.ops.aten.copy_.default:
        dst, src = args[0], args[1]
        blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
        if not isinstance(src, torch.Tensor):
            return None
        src_host, dst_host = tr.is_host(src), tr.is_host(dst)
        if src_host and src.dim() == 0:
            return None  # a scalar the host holds, written into a device tensor (x[i] = 5)
    elif tr.stand_in:  # a stand-in's _to_copy never changes device; _HostMode counts moves
        return None
    else:
        src = args[0]
        dev = kwargs.get("device")
        if dev is None:
            return None
        blocking = not kwargs.get("non_blocking", False)
        src_host, dst_host = src.device.type == "cpu", torch.device(dev).type == "cpu"
    if src_host == dst_host or not blocking:
        return None
    name = func.overloadpacket.__name__
    return f"{name}[{'device to host' if dst_host else 'host to device'}]"


class _Ops(TorchDispatchMode):
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tr = self.tracker
        inputs = _tensors((args, kwargs))
        if tr.stand_in and func is torch.ops.aten.lift_fresh.default:
            tr.mark(inputs, host=True)  # Python data (a scalar written by indexing, say)
        on_host = bool(inputs) and all(tr.is_host(t) for t in inputs)
        if tr.stand_in and on_host:
            for t in _tensors(out):
                tr.host[t] = True
        p = tr.prof
        if p is None:
            return out
        p.ops += 1
        p.op_counts[func.overloadpacket.__name__] += 1
        if func.is_view:
            p.view_ops += 1
        if not tr.quiet and not on_host and (reason := sync_reason(func, args, kwargs, tr)):
            p.add_sync(reason)
        p.track(out, args, kwargs)
        return out


_FACTORIES = {
    torch.arange, torch.as_tensor, torch.empty, torch.eye, torch.full, torch.linspace,
    torch.ones, torch.rand, torch.randint, torch.randn, torch.randperm, torch.scalar_tensor,
    torch.tensor, torch.zeros,
}  # fmt: skip


def _host_device(d: Any, tr: Tracker) -> bool | None:
    """Whether a device argument means the host (a stand-in run: only the string "cpu" does;
    a torch.device is the device the inputs are on), None when it names no device."""
    if isinstance(d, torch.Tensor):
        return tr.is_host(d)
    if isinstance(d, str):
        return torch.device(d).type == "cpu"
    if isinstance(d, torch.device):
        return d.type == "cpu" and not tr.stand_in
    return None


def _destination(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], tr: Tracker) -> Any:
    """For a move (`.cpu()`, `.cuda()`, `.to(...)`): whether it goes to the host; else None."""
    if func is torch.Tensor.cpu:
        return True
    if func is torch.Tensor.cuda:
        return False
    if func is not torch.Tensor.to:
        return None
    for a in (*args[1:], kwargs.get("device"), kwargs.get("other")):
        if (where := _host_device(a, tr)) is not None:
            return where
    return None


class _HostMode(TorchFunctionMode):
    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        tr = self.tracker
        if func in _HOST_READS:
            src = args[0]
            if not isinstance(src, torch.Tensor) or tr.is_host(src):
                return func(*args, **kwargs)
            tr.sync(func.__name__)
            return self._quietly(func, args, kwargs)
        if not tr.stand_in:  # real devices: the dispatcher sees every copy
            return func(*args, **kwargs)
        if func in _FACTORIES:
            out = func(*args, **kwargs)
            host = _host_device(kwargs.get("device"), tr)
            tr.mark(out, host=host is None or host)
            data = func in (torch.tensor, torch.as_tensor) and not isinstance(args[0], torch.Tensor)
            if host is False and data:
                tr.sync(f"{func.__name__}[host to device]")  # Python data, copied over
            return out
        to_host = _destination(func, args, kwargs, tr)
        src = args[0] if args else None
        if to_host is None or not isinstance(src, torch.Tensor) or tr.is_host(src) == to_host:
            return func(*args, **kwargs)
        if not kwargs.get("non_blocking", False):
            tr.sync(f"{func.__name__}[{'device to host' if to_host else 'host to device'}]")
        out = self._quietly(func, args, kwargs)
        if out is src:  # on a GPU a move copies: the stand-in must not alias its source
            tr.quiet += 1
            try:
                out = src.clone()
            finally:
                tr.quiet -= 1
        tr.mark(out, host=to_host)
        return out

    def _quietly(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.tracker.quiet += 1
        try:
            return func(*args, **kwargs)
        finally:
            self.tracker.quiet -= 1


def profile_call(fn: Callable[[], Any], tracker: Tracker | None = None) -> tuple[Any, CallProfile]:
    """Run `fn()` once under the counting modes; its result and what it did. Without a
    `tracker`, every CPU tensor the call gets stands in for a device tensor."""
    tr = tracker if tracker is not None else Tracker(stand_in=True)
    prof = CallProfile()
    tr.prof = prof
    try:
        with tr.active():
            t0 = time.perf_counter()
            result = fn()
            if _on_cuda(result):
                torch.cuda.synchronize()
            prof.seconds = time.perf_counter() - t0
    finally:
        tr.prof = None
    gc.collect()  # reference cycles inside the call would otherwise count as retained
    prof.retained_bytes = prof._current
    return result, prof


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one bare call: the counting modes cost about a millisecond an op, which
    would swamp a decode step. It also warms up, so the profiled call is a steady-state one."""
    with torch.no_grad():
        t0 = time.perf_counter()
        result = fn()
        if _on_cuda(result):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    del result
    gc.collect()
    return seconds


def _on_cuda(result: Any) -> bool:
    try:
        leaves = tree_leaves(result)
    except Exception:
        return False
    return any(isinstance(t, torch.Tensor) and t.is_cuda for t in leaves)


# --- the memory cap -------------------------------------------------------------------------


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 24 * GB


def default_budget_gb() -> float:
    # A GB short of what is free: a cap above the free memory would let the OOM killer act first.
    return max(1.0, min(24.0, available_bytes() / GB - 1.0))


@contextlib.contextmanager
def memory_cap(budget: int) -> Iterator[None]:
    """Allocations beyond `budget` bytes more than the process maps now fail with a
    RuntimeError (RLIMIT_AS), instead of the machine swapping or the process being killed."""
    if not sys.platform.startswith("linux") or budget <= 0:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + budget
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or (
        "can't allocate memory" in text or "Cannot allocate memory" in text
    )


# --- the profile ------------------------------------------------------------------------------


def _attention_module() -> ModuleType:
    """benchmarks/attention.py (not a package), for its synthetic inputs."""
    for name in ("benchmark_attention", "attention"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "synthetic_inputs"):
            return mod
    spec = importlib.util.spec_from_file_location(
        "benchmark_attention", _HERE.with_name("attention.py")
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Shape:
    heads: int
    kv_heads: int
    head_dim: int
    dtype: str
    device: torch.device
    seed: int
    inputs: str

    def qkv(self, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = DTYPES[self.dtype]
        if self.inputs == "synthetic":
            return _attention_module().synthetic_inputs(
                1, self.heads, self.kv_heads, length, self.head_dim,
                dtype=dtype, device=self.device, seed=self.seed,
            )  # fmt: skip
        g = torch.Generator(device="cpu").manual_seed(self.seed)

        def randn(h: int) -> torch.Tensor:
            return torch.randn(1, h, length, self.head_dim, generator=g).to(self.device, dtype)

        return randn(self.heads), randn(self.kv_heads), randn(self.kv_heads)


COLUMNS = [
    "method",
    "call",
    "phase",
    "seq_len",
    "compression",
    "block_size",
    "ops",
    "view_ops",
    "syncs",
    "peak_temp_bytes",
    "retained_bytes",
    "seconds",
    "target",
    "target_met",
    "sync_ops",
    "status",
    "note",
    "backend",
    "dtype",
    "heads",
    "kv_heads",
    "head_dim",
    "inputs",
    "device",
    "torch",
    "memory_tracking",
]


#: Methods whose line counts follow `budget_rule`.
LINE_METHODS = ("vertical-slash", "flexprefill")


def targets(row: dict[str, Any]) -> list[tuple[str, bool]]:
    """The issue's targets that apply to a row, each with whether the row meets it."""
    out: list[tuple[str, bool]] = []
    if row["status"] != "ok":
        return out
    lines = row["method"] in ("vertical-slash", "flexprefill") and row["phase"] == "prefill"
    if lines and row["seq_len"] == TARGET_SYNC_LENGTH:
        out.append((f"syncs <= {MAX_SYNCS}", row["syncs"] <= MAX_SYNCS))
        out.append((f"ops <= {MAX_OPS}", row["ops"] <= MAX_OPS))
    if row["method"] == "quest" and row["seq_len"] == TARGET_QUEST_LENGTH:
        limit = MAX_QUEST_TEMP_BYTES
        out.append((f"temp <= {limit // MB} MB", row["peak_temp_bytes"] <= limit))
    return out


class Profiler:
    """One run: the shape, the rows, and the calls of every method at every length."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.shape = Shape(
            args.heads, args.kv_heads, args.head_dim, args.dtype, self.device, args.seed,
            args.inputs,
        )  # fmt: skip
        self.rows: list[dict[str, Any]] = []
        # the modes' first use imports and caches for about 2 s: keep that out of the rows
        profile_call(lambda: torch.ones(2, device=self.device) + 1)
        # one for the run: host copies made while a cache is built stay host copies in its steps
        self.tracker = Tracker(stand_in=self.device.type == "cpu")
        self.details: list[tuple[dict[str, Any], CallProfile]] = []
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.stamp = {
            "dtype": args.dtype,
            "heads": args.heads,
            "kv_heads": args.kv_heads,
            "head_dim": args.head_dim,
            "inputs": args.inputs,
            "device": f"{name} x{torch.get_num_threads()} threads"
            if self.device.type == "cpu"
            else name,
            "torch": torch.__version__,
            "memory_tracking": MEMORY_TRACKING,
            "compression": args.compression,
        }

    def method(self, name: str) -> Any:
        knobs: dict[str, Any] = {}
        if name in PREFILL and self.args.block_size is not None:
            knobs["block_size"] = self.args.block_size
        if name in LINE_METHODS and self.args.budget_rule is not None:
            knobs["budget_rule"] = self.args.budget_rule
        if name == "flexprefill" and self.args.min_budget is not None:
            knobs["min_budget"] = self.args.min_budget
        return get_method(name, **knobs)

    def row(self, method: str, call: str, phase: str, length: int, **kw: Any) -> dict[str, Any]:
        r: dict[str, Any] = {c: "" for c in COLUMNS}
        r.update(self.stamp)
        r.update(method=method, call=call, phase=phase, seq_len=length, status="ok")
        r.update(kw)
        return r

    def measure(self, r: dict[str, Any], fn: Callable[[], Any]) -> Any:
        """Profile `fn` into row `r`; a failure becomes the row's status and note."""
        result = None
        try:
            seconds = timed(fn)
            result, prof = profile_call(fn, self.tracker)
            prof.seconds = seconds
        except Exception as exc:
            if out_of_memory(exc):
                r.update(status="skipped", note=f"needs more than --max-gb {self.args.max_gb:g}")
            else:
                first = (str(exc).strip().splitlines() or [""])[0]
                r.update(status="failed", note=f"{type(exc).__name__}: {first}"[:300])
        else:
            r.update(
                ops=prof.ops,
                view_ops=prof.view_ops,
                syncs=prof.syncs,
                peak_temp_bytes=prof.peak_bytes,
                retained_bytes=prof.retained_bytes,
                seconds=prof.seconds,
                sync_ops=";".join(
                    f"{op}:{n}" for op, n in _sync_ops(prof.sync_sites).most_common()
                ),
            )
            self.details.append((r, prof))
        met = targets(r)
        r["target"] = "; ".join(label for label, _ in met)
        r["target_met"] = "" if not met else ("pass" if all(ok for _, ok in met) else "FAIL")
        self.rows.append(r)
        if self.args.progress:
            print(f"  {short(r)}", file=sys.stderr, flush=True)
        return result

    def skip(self, methods: list[str], phase: str, length: int, why: str) -> None:
        for name in methods:
            r = self.row(name, "-", phase, length, status="skipped", note=why)
            self.rows.append(r)
            if self.args.progress:
                print(f"  {short(r)}", file=sys.stderr, flush=True)

    def prefill(self, length: int) -> None:
        names = [m for m in self.args.methods if m in PREFILL]
        if not names:
            return
        c = self.args.compression
        try:
            q, k, _ = self.shape.qkv(length)
        except Exception as exc:
            self.skip(names, "prefill", length, _inputs_note(exc, self.args.max_gb))
            return
        for name in names:
            m = self.method(name)
            kn = m.knobs()
            r = self.row(name, "pattern + plan", "prefill", length, block_size=kn["block_size"])
            if name != "block-sparse":
                r["backend"] = f"{self.args.scores} scores"
            self.measure(r, lambda m=m, kn=kn: m.plan(m.pattern(q, k, c), length, kn))
            gc.collect()

    def decode(self, length: int) -> None:
        names = [m for m in self.args.methods if m in DECODE]
        if not names:
            return
        try:
            q, k, v = self.shape.qkv(length)
        except Exception as exc:
            self.skip(names, "decode", length, _inputs_note(exc, self.args.max_gb))
            return
        for name in names:
            self.decode_method(name, q, k, v)
            gc.collect()

    def decode_method(self, name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        c, length = self.args.compression, k.shape[2]
        q1 = q[:, :, -1:].contiguous()
        m = get_method(name)
        kn = m.knobs()
        be = _backend(name, self.args.backend, self.device, kn)
        extra: dict[str, Any] = {"backend": be}
        if "page_size" in kn:
            extra["block_size"] = kn["page_size"]
        if name != "quest":
            ev = self.row(name, "eviction", "decode", length, **extra)
            evict = getattr(m, "evict", None)
            if callable(evict):
                self.measure(ev, lambda: evict(q, k, v, compression=c))
            else:
                ev["call"] = "eviction (prepare_cache)"
                self.measure(ev, lambda: m.prepare_cache(q, k, v, compression=c))
        try:
            with self.tracker.active():
                state = m.prepare_cache(q, k, v, compression=c)
        except Exception as exc:
            self.skip([name], "decode", length, _inputs_note(exc, self.args.max_gb))
            return
        step = self.row(name, "decode step", "decode", length, **extra)
        self.measure(step, lambda: m.decode(q1, state, backend=be))
        if name != "quest":
            return
        select = _quest_select()
        sel = self.row(name, "page selection", "decode", length, **extra)
        if select is None:
            sel.update(status="skipped", note="scalelaw.kernels.quest has no select_pages")
            self.rows.append(sel)
            return
        kw = {"backend": be} if _takes(select, "backend") else {}
        self.measure(sel, lambda: select(q1, state, **kw))


def _sync_ops(sites: Counter[str]) -> Counter[str]:
    ops: Counter[str] = Counter()
    for site, n in sites.items():
        ops[site.split(" @ ")[0]] += n
    return ops


def _inputs_note(exc: Exception, max_gb: float) -> str:
    if out_of_memory(exc):
        return f"inputs or cache: needs more than --max-gb {max_gb:g}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"inputs or cache: {type(exc).__name__}: {first}"[:300]


def _backend(name: str, backend: str, device: torch.device, knobs: dict[str, Any]) -> str:
    from scalelaw.kernels.base import resolve_backend

    return resolve_backend(name, backend, device, knobs)


def _takes(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _quest_select() -> Callable[..., Any] | None:
    import scalelaw.kernels.quest as quest

    fn = getattr(quest, "select_pages", None)
    return fn if callable(fn) else None


@contextlib.contextmanager
def triton_scores(tracker: Tracker) -> Iterator[None]:
    """Vertical-slash and flexprefill score their window and build their tile index as on a
    GPU: by `window_scores_triton` and `lines_index_triton`, whose own ATen ops (their output
    buffers) are counted, while their five kernel launches are stood in for by the PyTorch
    reference, run uncounted. A launch is no ATen op, and the kernels keep no (window x L)
    probabilities nor (query blocks x lines) grids; under the Triton interpreter the kernels
    themselves would take hours at these lengths."""
    import scalelaw.kernels.flexprefill as flex
    import scalelaw.kernels.tiles as tiles
    import scalelaw.kernels.triton_scores as ts
    import scalelaw.kernels.vertical_slash as vs

    scored: dict[str, Any] = {}  # the reference's scores of the launch in progress

    class StandIn:
        def __init__(self, output: int | None) -> None:
            self.output = output  # 0: column sums, 1: diagonal sums, None: row statistics

        def __getitem__(self, grid: Any) -> Callable[..., None]:
            return self.launch

        def launch(
            self, q: torch.Tensor, k: torch.Tensor, stats: Any, *args: Any, **kw: Any
        ) -> None:
            if self.output is None:
                return
            held, tracker.prof = tracker.prof, None
            try:
                if self.output == 0:
                    scored["scores"] = vs.window_scores_torch(q, k, stats.shape[-1])
                args[0].copy_(scored["scores"][self.output])
                if self.output == 1:
                    scored.clear()
            finally:
                tracker.prof = held

    class IndexStandIn:
        """The index kernels' launches: the PyTorch build of their outputs, uncounted."""

        def __init__(self, part: str) -> None:
            self.part = part  # "tiles" or "columns"

        def __getitem__(self, grid: Any) -> Callable[..., None]:
            return self.launch

        def launch(self, *args: Any, BS: int, **kw: Any) -> None:
            held, tracker.prof = tracker.prof, None
            try:
                if self.part == "tiles":
                    x, starts, counts, _, nb = args[:5]
                    built = tiles._tiles(x, nb * BS, BS)
                    outs = (starts, counts)
                else:
                    cols, starts, _, lists, col_counts = args[:5]
                    built = tiles._single_columns(cols, starts, BS)
                    outs = (lists, col_counts)
                for out, got in zip(outs, built, strict=True):
                    out.copy_(got)
            finally:
                tracker.prof = held

    with (
        _patched([(ts, "_row_stats_kernel")], StandIn(None)),
        _patched([(ts, "_column_sums_kernel")], StandIn(0)),
        _patched([(ts, "_diagonal_sums_kernel")], StandIn(1)),
        _patched([(vs, "window_scores"), (flex, "window_scores")], ts.window_scores_triton),
        _patched([(ts, "_index_tiles_kernel")], IndexStandIn("tiles")),
        _patched([(ts, "_index_columns_kernel")], IndexStandIn("columns")),
        _patched([(tiles, "_triton_index")], lambda t: True),
    ):
        yield


def window_scores(scores: str, prof: Profiler) -> contextlib.AbstractContextManager[None]:
    """The window scores `--scores` asks for, where the device would run the other ones."""
    cuda = prof.device.type == "cuda"
    if scores == "triton" and not cuda:
        return triton_scores(prof.tracker)
    if scores == "torch" and cuda:
        return _torch_scores()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _torch_scores() -> Iterator[None]:
    """The CPU's path on CUDA: window scores and tile index by PyTorch."""
    import scalelaw.kernels.flexprefill as flex
    import scalelaw.kernels.tiles as tiles
    import scalelaw.kernels.vertical_slash as vs

    with (
        _patched([(vs, "window_scores"), (flex, "window_scores")], vs.window_scores_torch),
        _patched([(tiles, "_triton_index")], lambda t: False),
    ):
        yield


@contextlib.contextmanager
def _patched(names: list[tuple[ModuleType, str]], value: Any) -> Iterator[None]:
    saved = [(mod, name, getattr(mod, name)) for mod, name in names]
    for mod, name in names:
        setattr(mod, name, value)
    try:
        yield
    finally:
        for mod, name, old in saved:
            setattr(mod, name, old)


def run(args: argparse.Namespace) -> Profiler:
    prof = Profiler(args)
    with memory_cap(int(args.max_gb * GB)), window_scores(args.scores, prof):
        for length in args.lengths:
            prof.prefill(length)
        for length in args.decode_lengths:
            prof.decode(length)
    return prof


# --- output -----------------------------------------------------------------------------------


def length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def mb(n: Any) -> str:
    return f"{n / MB:.1f}" if isinstance(n, int) else ""


def short(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return f"{r['method']} {r['call']} L={r['seq_len']}: {r['status']} ({r['note']})"
    return (
        f"{r['method']} {r['call']} L={r['seq_len']}: {r['ops']} ops, {r['syncs']} syncs, "
        f"peak {mb(r['peak_temp_bytes'])} MB, {r['seconds']:.2f} s"
    )


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "method", "call", "L", "block", "ops", "views", "syncs", "peak temp MB", "retained MB",
        "CPU s", "target", "result",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ok = r["status"] == "ok"
        cells = [
            r["method"],
            r["call"],
            length_label(r["seq_len"]),
            str(r["block_size"]),
            str(r["ops"]) if ok else "",
            str(r["view_ops"]) if ok else "",
            str(r["syncs"]) if ok else "",
            mb(r["peak_temp_bytes"]),
            mb(r["retained_bytes"]),
            f"{r['seconds']:.2f}" if ok else "",
            r["target"] or "-",
            (r["target_met"] or "-") if ok else f"{r['status']}: {r['note']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(pairs: list[tuple[dict[str, Any], CallProfile]], top: int = 8) -> str:
    out = []
    for r, prof in pairs:
        out.append(f"\n{r['method']} {r['call']} L={length_label(r['seq_len'])}:")
        ops = ", ".join(f"{op} {n}" for op, n in prof.op_counts.most_common(top))
        out.append(f"  top ops: {ops}")
        for site, n in prof.sync_sites.most_common():
            out.append(f"  sync x{n}: {site}")
    return "\n".join(out)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


# --- command line -----------------------------------------------------------------------------


def parse_length(text: str) -> int:
    t = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    value = int(t[:-1] if scale > 1 else t) * scale
    if value < 1:
        raise argparse.ArgumentTypeError(f"length must be >= 1, got {text!r}")
    return value


def parse_lengths(text: str) -> list[int]:
    return [parse_length(x) for x in text.split(",") if x.strip()]


def parse_methods(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown methods {bad}; choose from {list(METHODS)}")
    return names


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", type=parse_methods, default=list(METHODS), help="comma-separated")
    p.add_argument(
        "--lengths", type=parse_lengths, default=[16384, 65536, 131072],
        help="prefill lengths, comma-separated (16K,64K,128K)",
    )  # fmt: skip
    p.add_argument(
        "--decode-lengths", type=parse_lengths, default=[131072],
        help="decode cache lengths, comma-separated (128K)",
    )  # fmt: skip
    p.add_argument("--compression", type=float, default=10.0)
    p.add_argument("--heads", type=int, default=28)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument(
        "--block-size", type=int, default=None,
        help="prefill methods' block size (default: each method's own, block-sparse 16, "
        "vertical-slash and flexprefill 64)",
    )  # fmt: skip
    p.add_argument(
        "--budget-rule", default=None, choices=["study", "exact"],
        help="vertical-slash and flexprefill budget rule (default: the methods' own, study); "
        "exact profiles the per-layer count search",
    )  # fmt: skip
    p.add_argument(
        "--min-budget", type=int, default=None,
        help="flexprefill's min_budget under the exact rule (default: its own); a small one "
        "makes the alpha search run where min_budget lines alone would be denser than C",
    )  # fmt: skip
    p.add_argument("--inputs", default="synthetic", choices=["synthetic", "random"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "triton"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scores", default="auto", choices=["auto", "torch", "triton"],
        help="vertical-slash and flexprefill window scores and tile index: the PyTorch path or "
        "the Triton kernels (auto: what the device runs, Triton on CUDA); triton on a CPU counts "
        "the GPU path, the kernel launches stood in for by the PyTorch path and not counted",
    )  # fmt: skip
    p.add_argument(
        "--max-gb", type=float, default=None,
        help="memory cap above the process's size at the start (default: min(24, available - 1))",
    )  # fmt: skip
    p.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV")
    p.add_argument("--details", action="store_true", help="print top ops and sync sites per row")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress lines")
    p.add_argument(
        "--quick", action="store_true",
        help="tiny shapes (L 1024 prefill, 2048 decode, 4 heads, 2 KV heads, d 32, fp32)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.scores == "auto":
        args.scores = "triton" if torch.device(args.device).type == "cuda" else "torch"
    if args.quick:
        args.lengths, args.decode_lengths = [1024], [2048]
        args.heads, args.kv_heads, args.head_dim, args.dtype = 4, 2, 32, "fp32"
    if args.heads % args.kv_heads:
        p.error(f"--heads {args.heads} must be a multiple of --kv-heads {args.kv_heads}")
    if not math.isfinite(args.compression) or args.compression < 1:
        p.error("--compression must be a finite number >= 1")
    if args.max_gb is None:
        args.max_gb = default_budget_gb()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.manual_seed(args.seed)
    where = "CPU" if args.device == "cpu" else args.device
    print(
        f"# estimation profile: {args.heads} query heads, {args.kv_heads} KV heads, d "
        f"{args.head_dim}, {args.dtype}, batch 1, C = {args.compression:g}, {args.inputs} "
        f"inputs, {where} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
        f"{args.scores} window scores, {args.budget_rule or 'default'} budget rule"
        + (f", flexprefill min_budget {args.min_budget}" if args.min_budget is not None else "")
        + "\n"
        f"# memory cap {args.max_gb:.1f} GB; peak temp = {MEMORY_TRACKING}; MB = 2^20 bytes; "
        "CPU s = wall seconds of one call without the counting modes",
        flush=True,
    )
    prof = run(args)
    rows = prof.rows
    print()
    print(table(rows))
    skipped = [r for r in rows if r["status"] == "skipped"]
    for r in skipped:
        print(
            f"note: {r['method']} {r['call']} at L={length_label(r['seq_len'])} skipped: "
            f"{r['note']}"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"\nprocess peak RSS {rss / GB:.1f} GB (inputs and caches included)")
    if args.details:
        print(details(prof.details))
    if args.csv is not None:
        write_csv(args.csv, rows)
        print(f"wrote {len(rows)} rows to {args.csv}")
    failed = [r for r in rows if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
