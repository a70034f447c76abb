"""Cost of one forward pass: prefill FLOPs and decode memory traffic, split by component.

Formulas follow the reference study's cost appendix (DESIGN.md section 7), with two
generalisations that leave its numbers unchanged for the models it studied: the query and output
projections use h * d_h rather than d (they differ for Gemma-3), and sliding-window layers attend
to at most `window` keys. Density rho = 1 / C multiplies only the part a sparse method skips:
the quadratic attention of global layers at prefill, the KV-cache reads of global layers at
decode. Everything the method must do to choose what to skip is counted as `indexing`, with the
method's own knobs (defaults from the method spec, `scalelaw.kernels.specs`, which the kernels
run with too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from scalelaw.errors import ScalelawError
from scalelaw.frontier.architectures import Architecture
from scalelaw.kernels import specs

Phase = Literal["prefill", "decode"]
PHASES: tuple[str, ...] = ("prefill", "decode")

PREFILL_METHODS: tuple[str, ...] = tuple(specs.method_names("prefill"))
DECODE_METHODS: tuple[str, ...] = tuple(specs.method_names("decode"))


class CostError(ScalelawError):
    """Bad input to the cost model."""


@dataclass(frozen=True)
class CostBreakdown:
    """One configuration's cost by component; `unit` is "FLOP" or "byte"."""

    phase: str
    unit: str
    parts: dict[str, float]
    dense_parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    @property
    def dense_total(self) -> float:
        return float(sum(self.dense_parts.values()))

    @property
    def attention_part(self) -> str:
        return "attention" if self.phase == "prefill" else "kv_cache"

    @property
    def attention_share(self) -> float:
        """Share of the dense cost that sparsity can reduce (the quadratic part or the KV reads)."""
        return self.dense_parts[self.attention_part] / self.dense_total

    @property
    def attention_block_share(self) -> float:
        """Share of the dense cost in the whole attention block.

        At prefill this adds the q/k/v/o projections to the quadratic part (how the reference
        study reports its shares); at decode it equals `attention_share`.
        """
        extra = self.dense_parts["projections"] if self.phase == "prefill" else 0.0
        return (self.dense_parts[self.attention_part] + extra) / self.dense_total

    @property
    def speedup(self) -> float:
        """Dense cost over this configuration's cost, indexing included."""
        return self.dense_total / self.total

    @property
    def speedup_limit(self) -> float:
        """The speed-up as C grows without bound: everything but attention still costs."""
        return 1.0 / (1.0 - self.attention_share)

    def to_frame(self) -> pl.DataFrame:
        """One row per part and a total: dense and sparse cost, share of the dense total."""
        names = list(self.parts)
        return pl.DataFrame(
            {
                "part": [*names, "total"],
                "dense": [self.dense_parts[n] for n in names] + [self.dense_total],
                "sparse": [self.parts[n] for n in names] + [self.total],
                "dense_share": [self.dense_parts[n] / self.dense_total for n in names] + [1.0],
            }
        )

    def summary(self) -> dict[str, float | str]:
        """Shares and speed-ups as plain data."""
        return {
            "phase": self.phase,
            "unit": self.unit,
            "attention_share": self.attention_share,
            "attention_block_share": self.attention_block_share,
            "speedup": self.speedup,
            "speedup_bound": self.speedup_bound,
            "speedup_limit": self.speedup_limit,
        }

    @property
    def speedup_bound(self) -> float:
        """Amdahl bound: the speed-up if the sparse part shrank by exactly C and indexing were free."""
        free = self.total - self.parts.get("indexing", 0.0)
        return self.dense_total / free


def _check(arch: Architecture, seq_len: float, compression: float, batch: int) -> None:
    if not seq_len > 0:
        raise CostError(f"seq_len must be > 0, got {seq_len}")
    if not compression >= 1:
        raise CostError(f"compression must be >= 1 (1 means dense), got {compression}")
    if batch < 1:
        raise CostError(f"batch must be >= 1, got {batch}")


def attended_pairs(arch: Architecture, seq_len: float, *, causal_half: bool) -> tuple[float, float]:
    """(query, key) pairs per head of one global and one local layer at full density.

    Without `causal_half` a global layer counts the whole L x L matrix, as the study does.
    """
    L = float(seq_len)
    full = L * (L + 1) / 2 if causal_half else L * L
    if not arch.local_layers or arch.window is None:
        return full, 0.0
    w = float(min(arch.window, L))
    local = w * L - w * (w - 1) / 2 if causal_half else w * L
    return full, local


def method_knobs(method: str, knobs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's own knobs out of `knobs` (others ignored), whole numbers made ints."""
    spec = specs.get_spec(method)
    out: dict[str, Any] = {}
    for knob in spec.knobs:
        if knobs is None or knob.name not in knobs:
            continue
        value = knobs[knob.name]
        if knob.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[knob.name] = value
    try:
        return spec.resolve(out)
    except specs.KernelInputError as exc:
        raise CostError(str(exc)) from None


def indexing_flops(
    arch: Architecture,
    seq_len: float,
    method: str,
    *,
    causal_half: bool = False,
    knobs: Mapping[str, Any] | None = None,
) -> float:
    """FLOPs one sequence spends choosing what to compute, summed over global layers."""
    if method not in PREFILL_METHODS:
        raise CostError(
            f"no prefill indexing cost for method '{method}'; "
            f"choose from {', '.join(PREFILL_METHODS)}"
        )
    per_layer = specs.indexing_flops(
        method,
        method_knobs(method, knobs),
        seq_len,
        arch.heads,
        arch.kv_heads,
        arch.head_dim,
        causal_half=causal_half,
    )
    return arch.global_layers * per_layer


def prefill_flops(
    arch: Architecture,
    seq_len: float,
    compression: float = 1.0,
    *,
    batch: int = 1,
    causal_half: bool = False,
    method: str = "dense",
    knobs: Mapping[str, Any] | None = None,
) -> CostBreakdown:
    """FLOPs to prefill `batch` sequences of `seq_len` tokens at compression ratio C."""
    _check(arch, seq_len, compression, batch)
    L, d, n = float(seq_len), arch.hidden, arch.layers
    h, dh = arch.heads, arch.head_dim
    glob, loc = attended_pairs(arch, L, causal_half=causal_half)
    per_pair = 4 * h * dh + 3 * h  # q.k and p.v (2 FLOPs per multiply-add) plus softmax

    def parts(rho: float, with_index: bool) -> dict[str, float]:
        attn = per_pair * (arch.global_layers * rho * glob + arch.local_layers * loc)
        out = {
            "attention": attn,
            "projections": n * 2 * L * d * (2 * arch.q_dim + 2 * arch.kv_dim),
            "mlp": n * (6 * L * d * arch.mlp + 2 * L * arch.mlp),
            "embeddings_logits": 2 * L * d + 2 * L * d * arch.vocab,
            "indexing": (
                indexing_flops(arch, L, method, causal_half=causal_half, knobs=knobs)
                if with_index
                else 0.0
            ),
        }
        return {key: batch * value for key, value in out.items()}

    sparse = compression > 1 and method != "dense"
    return CostBreakdown(
        "prefill",
        "FLOP",
        parts(1.0 / compression, sparse),
        parts(1.0, False),
    )


def decode_bytes(
    arch: Architecture,
    seq_len: float,
    compression: float = 1.0,
    *,
    batch: int = 1,
    bytes_per_element: float = 2.0,
    method: str = "dense",
    knobs: Mapping[str, Any] | None = None,
) -> CostBreakdown:
    """Bytes read from memory for one decode step of `batch` sequences with `seq_len` cached tokens.

    Weights are read once per step whatever the batch; each sequence reads its own KV cache.
    """
    _check(arch, seq_len, compression, batch)
    if method not in DECODE_METHODS:
        raise CostError(
            f"unknown decode method '{method}'; choose from {', '.join(DECODE_METHODS)}"
        )
    L, d, n = float(seq_len), arch.hidden, arch.layers
    local_len = float(min(arch.window, L)) if arch.window else 0.0
    # quest reads a per-page min and max key for every page of every global layer
    index = arch.global_layers * specs.indexing_elements(
        method, method_knobs(method, knobs), L, arch.kv_heads, arch.head_dim
    )

    def parts(rho: float, with_index: bool) -> dict[str, float]:
        kv = 2 * arch.kv_dim * (arch.global_layers * rho * L + arch.local_layers * local_len)
        out = {
            "kv_cache": batch * kv,
            "projections": n * (2 * d * arch.q_dim + 2 * d * arch.kv_dim),
            "mlp": n * 3 * d * arch.mlp,
            "embeddings_logits": d * arch.vocab + d,
            "indexing": batch * index if with_index else 0.0,
        }
        return {key: bytes_per_element * value for key, value in out.items()}

    sparse = compression > 1 and method != "dense"
    return CostBreakdown("decode", "byte", parts(1.0 / compression, sparse), parts(1.0, False))


def cost(
    arch: Architecture,
    phase: str,
    seq_len: float,
    compression: float = 1.0,
    *,
    batch: int = 1,
    bytes_per_element: float = 2.0,
    causal_half: bool = False,
    method: str | None = None,
    knobs: Mapping[str, Any] | None = None,
) -> CostBreakdown:
    """Prefill FLOPs or decode bytes; `method=None` means no indexing cost (density alone)."""
    if phase == "prefill":
        return prefill_flops(
            arch,
            seq_len,
            compression,
            batch=batch,
            causal_half=causal_half,
            method=method or "dense",
            knobs=knobs,
        )
    if phase == "decode":
        return decode_bytes(
            arch,
            seq_len,
            compression,
            batch=batch,
            bytes_per_element=bytes_per_element,
            method=method or "dense",
            knobs=knobs,
        )
    raise CostError(f"unknown phase '{phase}'; choose prefill or decode")
