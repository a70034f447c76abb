"""The decode-time KV cache shared by all decode methods.

After prefill a method builds a cache (`prepare_cache`): dense and quest keep every token,
snapkv and ada-snapkv keep a subset. Generated tokens are appended and always kept. Eviction can
leave different counts per KV head (ada-snapkv); the cache is then padded and `valid` marks the
real slots.
"""

from __future__ import annotations

from typing import Any

import torch

from scalelaw.kernels.base import KernelInputError


class KVCache:
    """Kept keys and values, (B, H_kv, T, D), growing by `append`."""

    def __init__(
        self,
        method: str,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        n_prompt: int,
        valid: torch.Tensor | None = None,
        requested_compression: float = 1.0,
        note: str = "",
        knobs: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self._k = k.contiguous()
        self._v = v.contiguous()
        self._valid = valid
        self._len = k.shape[2]
        self.n_prompt = n_prompt
        self.n_appended = 0
        kept = valid.float().sum(-1).mean().item() if valid is not None else float(k.shape[2])
        self.n_kept_prompt = kept
        self.requested_compression = requested_compression
        self.note = note
        self.knobs = dict(knobs or {})

    @property
    def k(self) -> torch.Tensor:
        return self._k[:, :, : self._len]

    @property
    def v(self) -> torch.Tensor:
        return self._v[:, :, : self._len]

    @property
    def valid(self) -> torch.Tensor | None:
        """(B, H_kv, T) bool mask of real slots, or None when every slot is real."""
        return None if self._valid is None else self._valid[:, :, : self._len]

    @property
    def length(self) -> int:
        """Slots in the cache (including padding when ragged)."""
        return self._len

    @property
    def total_tokens(self) -> int:
        """Tokens of the full sequence so far: prompt plus generated."""
        return self.n_prompt + self.n_appended

    @property
    def achieved_compression(self) -> float:
        """Full sequence length over kept tokens (mean over batch and KV heads)."""
        return self.total_tokens / (self.n_kept_prompt + self.n_appended)

    @property
    def study_compression(self) -> float:
        """C as the reference study counts it: the prompt's length over the prompt tokens kept
        (generated tokens, always kept, left out)."""
        return self.n_prompt / max(self.n_kept_prompt, 1e-9)

    def append(self, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        """Add generated tokens (B, H_kv, T_new, D); they are always kept."""
        b, hkv, _, d = self._k.shape
        for label, t in (("k_new", k_new), ("v_new", v_new)):
            if t.dim() != 4 or t.shape[0] != b or t.shape[1] != hkv or t.shape[3] != d:
                raise KernelInputError(
                    f"{self.method}: {label} must have shape ({b}, {hkv}, T, {d}), "
                    f"got {tuple(t.shape)}"
                )
        if k_new.shape != v_new.shape:
            raise KernelInputError(
                f"{self.method}: k_new and v_new shapes differ: "
                f"{tuple(k_new.shape)} vs {tuple(v_new.shape)}"
            )
        n = k_new.shape[2]
        need = self._len + n
        if need > self._k.shape[2]:
            # Grow geometrically so a long generation does not copy the cache every step.
            cap = max(need, 2 * self._k.shape[2])
            extra = cap - self._k.shape[2]
            pad = self._k.new_zeros(b, hkv, extra, d)
            self._k = torch.cat([self._k, pad], dim=2)
            self._v = torch.cat([self._v, pad.clone()], dim=2)
            if self._valid is not None:
                self._valid = torch.cat([self._valid, self._valid.new_zeros(b, hkv, extra)], dim=2)
        self._k[:, :, self._len : need] = k_new.to(self._k.dtype)
        self._v[:, :, self._len : need] = v_new.to(self._v.dtype)
        if self._valid is not None:
            self._valid[:, :, self._len : need] = True
        old = self._len
        self._len = need
        self.n_appended += n
        self._on_append(old, need)

    def _on_append(self, start: int, end: int) -> None:
        """Hook for caches with metadata over the slots [start, end)."""
