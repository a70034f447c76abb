"""What a measurement costs: the GPU-time model of measuring, the architecture behind a grid's
model spec, and its calibration on the timings of an earlier sweep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaw.errors import ScalelawError
from scalelaw.frontier.architectures import (
    BUILTIN,
    Architecture,
    from_hf_config,
    get_architecture,
)
from scalelaw.frontier.cost import DECODE_METHODS, PREFILL_METHODS, cost
from scalelaw.frontier.planning.errors import PlanError

#: Sustained dense throughput of one GPU while measuring (bf16, H100-class, long prompts).
DEFAULT_FLOPS_PER_S = 400e12
#: Sustained memory bandwidth of one GPU while decoding the answer.
DEFAULT_BYTES_PER_S = 2.5e12


@dataclass(frozen=True)
class MeasureSpeed:
    """The cost model of measuring: prefill FLOPs and decode bytes at sustained rates.

    One sample costs its prefill FLOPs at (L, C) over `flops_per_s` plus, per answer token, the
    bytes one decode step reads over `bytes_per_s`. The rates are per GPU, so a model split over
    several GPUs costs the same GPU-hours.
    """

    flops_per_s: float = DEFAULT_FLOPS_PER_S
    bytes_per_s: float = DEFAULT_BYTES_PER_S
    bytes_per_element: float = 2.0

    def __post_init__(self) -> None:
        if not (self.flops_per_s > 0 and self.bytes_per_s > 0 and self.bytes_per_element > 0):
            raise PlanError("throughput, bandwidth and bytes per element must be positive")

    def seconds_per_sample(
        self,
        arch: Architecture,
        method: str,
        seq_len: float,
        compression: float,
        new_tokens: int,
        knobs: Mapping[str, Any] | None = None,
    ) -> float:
        if method not in PREFILL_METHODS and method not in DECODE_METHODS:
            known = ", ".join(dict.fromkeys((*PREFILL_METHODS, *DECODE_METHODS)))
            raise PlanError(f"method '{method}' has no cost model; known methods: {known}")
        sparse = compression > 1 and method != "dense"
        at_prefill = sparse and method in PREFILL_METHODS
        at_decode = sparse and method in DECODE_METHODS
        prefill = cost(
            arch,
            "prefill",
            seq_len,
            compression if at_prefill else 1.0,
            method=method if at_prefill else None,
            knobs=knobs,
        ).total
        step = cost(
            arch,
            "decode",
            seq_len,
            compression if at_decode else 1.0,
            bytes_per_element=self.bytes_per_element,
            method=method if at_decode else None,
            knobs=knobs,
        ).total
        return prefill / self.flops_per_s + new_tokens * step / self.bytes_per_s


def model_architecture(spec: str) -> Architecture:
    """The architecture behind a model spec of a sweep grid, for the cost model and N.

    A model directory with a `config.json` is read; a hub id or a directory named like one
    (`Qwen/Qwen2.5-7B-Instruct`, `/models/Qwen2.5-7B-Instruct`) maps to the built-in table;
    `smollm2-135m` is SmolLM2-135M.
    """
    s = spec.strip()
    if s.lower() == "smollm2-135m":
        return get_architecture("smollm2", "135M")
    path = Path(s).expanduser()
    if (path / "config.json").is_file():
        return from_hf_config(path / "config.json", size=path.name)
    base = s.rstrip("/").split("/")[-1].lower()
    for arch in BUILTIN:
        if arch.hf_id and base == arch.hf_id.split("/")[-1].lower():
            return arch
    hub = ", ".join(a.hf_id for a in BUILTIN if a.family == "qwen2.5")
    raise PlanError(
        f"model '{spec}': no architecture for the cost model; use a hub id of a built-in model "
        f"({hub}, ...), a model directory with a config.json, or smollm2-135m"
    )


class _Calibration:
    """Seconds per sample from an earlier sweep: measured where it ran, else scaled model cost."""

    def __init__(self, table: pl.DataFrame, speed: MeasureSpeed):
        need = ("model", "seq_len", "compression", "samples", "wall_s")
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise PlanError(f"timings table lacks column(s) {', '.join(missing)}")
        if "compute_id" in table.columns:
            # rows sharing one dense run carry its time once
            table = table.unique("compute_id", keep="first", maintain_order=True)
        self.exact: dict[tuple[str, int, str, float], list[float]] = {}
        self.ratios: dict[str, list[float]] = {}
        for r in table.iter_rows(named=True):
            method = str(r.get("method") or "dense")
            c = float(r["compression"])
            method = "dense" if c == 1 else method
            if not r["samples"] or r["wall_s"] is None:
                continue
            per = float(r["wall_s"]) / float(r["samples"])
            key = (str(r["model"]), int(r["seq_len"]), method, c)
            self.exact.setdefault(key, []).append(per)
            try:
                arch = model_architecture(str(r["model"]))
                new = int(r.get("max_new_tokens") or 0) or 32
                modelled = speed.seconds_per_sample(arch, method, float(r["seq_len"]), c, new)
            except ScalelawError:
                continue
            self.ratios.setdefault(str(r["model"]), []).append(per / modelled)
        pooled = [x for v in self.ratios.values() for x in v]
        self.pooled = float(np.median(pooled)) if pooled else None

    def adjust(
        self, model: str, seq_len: int, method: str, compression: float, modelled: float
    ) -> tuple[float, str]:
        hit = self.exact.get((model, int(seq_len), method, float(compression)))
        if hit:
            return float(np.median(hit)), "measured"
        if model in self.ratios:
            f = float(np.median(self.ratios[model]))
            return modelled * f, f"cost model x{f:.3g} ({model})"
        if self.pooled is not None:
            return modelled * self.pooled, f"cost model x{self.pooled:.3g} (all models)"
        return modelled, "cost model"
