"""Shared pieces of every sparse attention method: results, input checks, the method base class
and the prefill template.

Density is the computed fraction of the causal attention matrix (prefill) or the kept fraction
of the KV cache (decode); compression C = 1 / density.

The pattern-based prefill methods (block-sparse, vertical-slash, flexprefill) share one template,
`PatternPrefill`: estimate a pattern, turn it into a tile list, run the tiles (Triton or
PyTorch, the same cells), and report the compression those cells achieve. A method supplies
only the first two steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from scalelaw.kernels.budgets import causal_entries
from scalelaw.kernels.reference import dense_causal
from scalelaw.kernels.sparse_torch import tile_attention_torch
from scalelaw.kernels.specs import (
    BACKENDS,
    COMPRESSION_TOLERANCE,
    PHASES,
    SPECS,
    KernelInputError,
    MethodSpec,
    get_spec,
    is_dense,
)
from scalelaw.kernels.tiles import TileIndex

__all__ = [
    "BACKENDS",
    "COMPRESSION_TOLERANCE",
    "PHASES",
    "AttentionResult",
    "KernelInputError",
    "PatternPrefill",
    "PrefillPlan",
    "SparseMethod",
    "achieved_from_cells",
    "causal_entries",
    "resolve_backend",
    "run_tiles",
]


@dataclass
class AttentionResult:
    """Output of one prefill or decode call.

    `out` has the shape of the queries. `achieved_compression` is what the method really
    computed (prefill) or read (decode), counted token by token; `note` says why it differs from
    the request when it does by more than 10%. `study_compression` is the C as the reference
    study counts it where that differs (block-sparse: causal block pairs over the pairs kept;
    decode methods: the prompt's length over the prompt tokens kept or read, generated tokens
    left out); None where the two counts agree. `judged_by_study`: whether a label is judged on
    that count (block-sparse, whose GPU kernels compute whole blocks, diagonal ones included)
    rather than on the tokens (the decode methods, where the newest page and the generated
    tokens are really read).
    """

    out: torch.Tensor
    achieved_compression: float
    requested_compression: float = 1.0
    note: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    study_compression: float | None = None
    judged_by_study: bool = False

    @property
    def label_count(self) -> float:
        """The C a requested label is judged on (`reached`, `scalelaw measure`'s label check)."""
        return self.study_counted if self.judged_by_study else self.achieved_compression

    @property
    def study_counted(self) -> float:
        """The C as the reference study counts it (the token count where they agree)."""
        return (
            self.achieved_compression if self.study_compression is None else self.study_compression
        )

    @property
    def reached(self) -> bool:
        return compression_reached(self.requested_compression, self.label_count)


def compression_reached(requested: float, achieved: float) -> bool:
    return abs(achieved - requested) <= COMPRESSION_TOLERANCE * requested


def unreachable_note(name: str, requested: float, achieved: float, why: str) -> str:
    if compression_reached(requested, achieved):
        return ""
    return f"{name}: requested C={requested:g} not reachable, achieved C={achieved:.3g} ({why})"


def check_compression(name: str, compression: float) -> float:
    try:
        c = float(compression)
    except (TypeError, ValueError):
        raise KernelInputError(
            f"{name}: compression must be a number >= 1, got {compression!r}"
        ) from None
    if not math.isfinite(c) or c < 1.0:
        raise KernelInputError(f"{name}: compression must be a finite number >= 1, got {c:g}")
    return c


def check_qkv(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, ...]:
    """Validate (B, H, L, D) queries against (B, H_kv, L_k, D) keys/values; return the sizes."""
    for label, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise KernelInputError(
                f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}"
            )
        if t.dim() != 4:
            raise KernelInputError(
                f"{name}: {label} must have 4 dims (batch, heads, length, head_dim), "
                f"got shape {tuple(t.shape)}"
            )
    if k.shape != v.shape:
        raise KernelInputError(
            f"{name}: k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}"
        )
    b, h, lq, d = q.shape
    bk, hkv, lk, dk = k.shape
    if bk != b:
        raise KernelInputError(f"{name}: batch of q ({b}) and k ({bk}) differ")
    if dk != d:
        raise KernelInputError(f"{name}: head_dim of q ({d}) and k ({dk}) differ")
    if hkv < 1 or h % hkv != 0:
        raise KernelInputError(
            f"{name}: query heads ({h}) must be a multiple of KV heads ({hkv}) for GQA"
        )
    if q.dtype != k.dtype or k.dtype != v.dtype:
        raise KernelInputError(f"{name}: q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise KernelInputError(f"{name}: q, k, v are on different devices")
    if lq == 0 or lk == 0:
        raise KernelInputError(f"{name}: empty sequence (q length {lq}, k length {lk})")
    return b, h, hkv, lq, lk, d


def resolve_backend(
    name: str, backend: str, device: torch.device, knobs: dict[str, Any] | None = None
) -> str:
    """'auto' picks Triton on CUDA tensors and the PyTorch path elsewhere.

    With `knobs`, 'auto' also falls back to PyTorch when the Triton kernel cannot run them (a
    block of 8 tokens, say), so a sweep never stops on a knob; 'triton' then raises.
    """
    if backend not in BACKENDS:
        raise KernelInputError(f"{name}: backend must be one of {BACKENDS}, got {backend!r}")
    problem = None
    if knobs is not None and name in SPECS:
        problem = get_spec(name).triton_problem(knobs)
    if backend == "auto":
        return "triton" if device.type == "cuda" and problem is None else "torch"
    if backend == "triton" and problem is not None:
        raise KernelInputError(f"{name}: {problem}; use backend 'torch' or 'auto'")
    return backend


class SparseMethod:
    """Base class: a named method with knobs (keyword settings with defaults).

    Subclasses set `spec` (from `scalelaw.kernels.specs`, which gives the name, phases,
    description, budget rule and knobs) and implement `prefill` or `prepare_cache` / `decode`.
    """

    spec: ClassVar[MethodSpec]
    name: ClassVar[str] = ""
    phases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    budget_rule: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    KNOB_HELP: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is not None:
            cls.name = spec.name
            cls.phases = spec.phases
            cls.description = spec.description
            cls.budget_rule = spec.budget_rule
            cls.DEFAULTS = spec.defaults()
            cls.KNOB_HELP = spec.knob_help()

    def __init__(self, phase: str | None = None, **knobs: Any) -> None:
        if phase is None:
            phase = self.phases[0]
        if phase not in self.phases:
            raise KernelInputError(
                f"method {self.name!r} has no {phase!r} phase; it supports {list(self.phases)}"
            )
        self.phase = phase
        self._knobs = self._merge(dict(self.DEFAULTS), knobs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(phase={self.phase!r}, knobs={self._knobs})"

    def knobs(self) -> dict[str, Any]:
        """The settings this instance uses when a call does not override them."""
        return dict(self._knobs)

    def _merge(self, base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        return self.spec.resolve(overrides, base)

    def _call_knobs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return self._merge(dict(self._knobs), overrides)

    def _start_prefill(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        compression: float,
        backend: str,
        knobs: dict[str, Any],
    ) -> tuple[float, int, int, int, str, dict[str, Any]]:
        """Validate a prefill call; returns (C, batch, heads, length, backend, knobs)."""
        c = check_compression(self.name, compression)
        b, h, _, lq, lk, _ = check_qkv(self.name, q, k, v)
        if lq != lk:
            raise KernelInputError(
                f"{self.name}: prefill needs q and k of equal length, got {lq} and {lk}"
            )
        kn = self._call_knobs(knobs)
        return c, b, h, lq, resolve_backend(self.name, backend, q.device, kn), kn

    def _start_cache(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        compression: float,
        knobs: dict[str, Any],
    ) -> tuple[float, int, int, dict[str, Any]]:
        """Validate a `prepare_cache` call; returns (C, prompt queries, prompt keys, knobs)."""
        c = check_compression(self.name, compression)
        _, _, _, lq, lk, _ = check_qkv(self.name, q_prompt, k, v)
        return c, lq, lk, self._call_knobs(knobs)

    def _dense_when_all_kept(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, c: float, backend: str
    ) -> AttentionResult | None:
        """At C = 1 every causal entry is kept, so the torch path skips the estimation.

        Triton still runs all blocks: that is what its C = 1 timing measures.
        """
        if is_dense(c) and backend == "torch":
            return AttentionResult(dense_causal(q, k, v), 1.0, c)
        return None

    def _result(
        self,
        out: torch.Tensor,
        requested: float,
        achieved: float,
        why: str,
        stats: dict[str, Any] | None = None,
        study: float | None = None,
        judged_by_study: bool = False,
    ) -> AttentionResult:
        """The output with its compression (token-exact, and as the study counts it where that
        differs), noting why a requested C was out of reach."""
        result = AttentionResult(out, achieved, requested, "", stats or {}, study, judged_by_study)
        result.note = unreachable_note(self.name, requested, result.label_count, why)
        return result

    def _need_phase(self, phase: str) -> None:
        if phase not in self.phases:
            raise KernelInputError(
                f"method {self.name!r} is a {'/'.join(self.phases)} method; it has no {phase} call"
            )

    def prefill(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        backend: str = "auto",
        **knobs: Any,
    ) -> AttentionResult:
        self._need_phase("prefill")
        raise NotImplementedError

    def prepare_cache(
        self,
        q_prompt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        **knobs: Any,
    ) -> Any:
        self._need_phase("decode")
        raise NotImplementedError

    def decode(self, q_step: torch.Tensor, state: Any, *, backend: str = "auto") -> AttentionResult:
        self._need_phase("decode")
        raise NotImplementedError


def run_tiles(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: TileIndex, backend: str
) -> torch.Tensor:
    """The tile list run by the Triton kernel or by the PyTorch path (the same cells)."""
    tensors = (index.starts, index.counts, index.cols, index.col_counts)
    if backend == "triton":
        # deferred: triton (absent off Linux; the PyTorch path must not need it)
        from scalelaw.kernels.triton_prefill import tile_attention

        return tile_attention(q, k, v, *tensors, index.block)
    return tile_attention_torch(q, k, v, *tensors, index.block)


def achieved_from_cells(length: int, rows: int, cells: float) -> float:
    """C of `cells` computed over `rows` (batch x heads) causal matrices of `length`.

    A pattern that computes as many cells as the causal matrix has entries is dense: whole
    diagonal tiles make it compute a little more than the triangle, which is still C = 1.
    """
    return max(1.0, causal_entries(length) * rows / cells)


@dataclass
class PrefillPlan:
    """What a prefill method computes: its tiles, the cells they count per (batch, head) (the
    achieved C), why a request may be out of reach, and the method's stats."""

    index: TileIndex
    cells: torch.Tensor
    why: str
    stats: dict[str, Any] = field(default_factory=dict)
    # C in block pairs, as the study counts block-sparse: labels are judged on it where set
    study_compression: float | None = None


class PatternPrefill[P](SparseMethod):
    """Template of the pattern-based prefill methods: pattern -> execute -> achieved.

    Subclasses implement `pattern` (the estimation step, also timed alone by the benchmark) and
    `plan` (the pattern as tiles and counted cells); `prefill` runs the rest the same way for all.
    """

    def pattern(self, q: torch.Tensor, k: torch.Tensor, compression: float, **knobs: Any) -> P:
        raise NotImplementedError

    def plan(self, pattern: P, length: int, knobs: dict[str, Any]) -> PrefillPlan:
        raise NotImplementedError

    def prefill(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        compression: float = 1.0,
        backend: str = "auto",
        **knobs: Any,
    ) -> AttentionResult:
        c, b, h, lq, be, kn = self._start_prefill(q, k, v, compression, backend, knobs)
        if (dense := self._dense_when_all_kept(q, k, v, c, be)) is not None:
            return dense
        plan = self.plan(self.pattern(q, k, c, **knobs), lq, kn)
        out = run_tiles(q, k, v, plan.index, be)
        achieved = achieved_from_cells(lq, b * h, float(plan.cells.sum()))
        study = plan.study_compression
        result = self._result(out, c, achieved, plan.why, plan.stats, study, study is not None)
        if result.note and kn.get("budget_rule") == "study":
            # the study's budget names a level; what it achieves is the measurement, not a miss
            result.note = (
                f"{self.name}: the study's budget for level C={c:g} achieved C={achieved:.3g} "
                f"({plan.why}); budget_rule='exact' solves for C instead"
            )
        return result
