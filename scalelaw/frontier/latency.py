"""Measured attention times as a cost: the frontier then reflects what the kernels deliver.

The timings file is the CSV `benchmarks/attention.py` writes: one row per (phase, method,
seq_len, compression) with the time in milliseconds of one attention call (one layer; pattern
estimation included), and a `dense` row per length. Columns `heads`, `head_dim` and `batch`
describe the shape it ran with; the time is scaled linearly in heads x head_dim and in batch to
the architecture being costed. Rows without a time (runs that ran out of memory) are skipped. Everything that is not attention
(projections, MLP, logits at prefill; weight reads at decode) is turned into time with a
throughput, since sparsity does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from scalelaw.data import first_nul_byte, nul_byte_message
from scalelaw.errors import ScalelawError
from scalelaw.frontier.architectures import Architecture
from scalelaw.frontier.cost import cost

#: Dense baselines a timings file may name (the first one found is used for C = 1).
DENSE_NAMES = ("dense", "sdpa", "flash", "full")
#: Non-attention throughput defaults: bf16 matmul FLOP/s and HBM bytes/s measured on an H100.
DEFAULT_THROUGHPUT = {"prefill": 790e12, "decode": 2.5e12}


class TimingsError(ScalelawError):
    """The timings file cannot be used; the message names the file and what is wrong."""


def _interp_log(x: np.ndarray, y: np.ndarray, at: float, what: str, source: str) -> float:
    order = np.argsort(x)
    x, y = x[order], y[order]
    if at < x[0] * (1 - 1e-9) or at > x[-1] * (1 + 1e-9):
        raise TimingsError(
            f"{source}: {what} {at:g} lies outside the measured range {x[0]:g} to {x[-1]:g}"
        )
    if len(x) == 1:
        return float(y[0])
    return float(np.exp(np.interp(np.log(at), np.log(x), np.log(y))))


@dataclass
class Timings:
    """Measured attention times of one method and its dense baseline."""

    frame: pl.DataFrame
    method: str
    dense: str
    source: str
    phase: str

    @classmethod
    def read(
        cls, path: str | Path, method: str, phase: str, *, device: str | None = None
    ) -> Timings:
        source = str(path)
        p = Path(path)
        if not p.exists():
            raise TimingsError(f"{source}: file not found")
        if not p.is_file():  # a FIFO would block for ever, a device never end
            raise TimingsError(f"{source}: not a regular file, expected a CSV file")
        try:
            with open(p, "rb") as fh:
                nul = first_nul_byte(fh)
            if nul is not None:
                raise TimingsError(f"{source}: {nul_byte_message(nul)}")
            frame = pl.read_csv(p, comment_prefix="#", infer_schema_length=None)
        except pl.exceptions.PolarsError as exc:
            raise TimingsError(
                f"{source}: cannot parse as CSV ({str(exc).splitlines()[0]})"
            ) from None
        for col in ("method", "seq_len", "compression", "ms"):
            if col not in frame.columns:
                raise TimingsError(
                    f"{source}: missing column '{col}'; columns are {', '.join(frame.columns)}"
                )
        if "phase" in frame.columns:
            frame = frame.filter(pl.col("phase") == phase)
        if device is not None:
            if "device" not in frame.columns:
                raise TimingsError(f"{source}: no 'device' column to select '{device}' from")
            frame = frame.filter(pl.col("device") == device)
        elif "device" in frame.columns and frame["device"].n_unique() > 1:
            devices = ", ".join(sorted(frame["device"].unique().to_list()))
            raise TimingsError(f"{source}: several devices ({devices}); choose one with --device")
        frame = frame.with_columns(
            pl.col("seq_len", "compression", "ms").cast(pl.Float64, strict=False)
        )
        # rows without a time are runs that failed (out of memory): they measured nothing
        frame = frame.filter(pl.col("ms").is_not_null() & pl.col("seq_len").is_not_null())
        bad = frame.filter((pl.col("ms") <= 0) | pl.col("compression").is_null())
        if bad.height:
            raise TimingsError(
                f"{source}: a row of method '{bad['method'][0]}' at seq_len {bad['seq_len'][0]:g} "
                "has a time <= 0 or no compression"
            )
        methods = set(frame["method"].to_list())
        if method not in methods:
            raise TimingsError(
                f"{source}: no timings for method '{method}' ({phase}); methods are "
                f"{', '.join(sorted(methods)) or 'none'}"
            )
        dense = next((d for d in DENSE_NAMES if d in methods), method)
        if (
            dense == method
            and frame.filter((pl.col("method") == method) & (pl.col("compression") == 1)).is_empty()
        ):
            raise TimingsError(
                f"{source}: no dense baseline (method {'/'.join(DENSE_NAMES)} or {method} at "
                "compression 1)"
            )
        return cls(frame, method, dense, source, phase)

    def attention_ms(
        self, arch: Architecture, seq_len: float, compression: float, batch: int
    ) -> float:
        """Time of one attention call for `arch`, interpolated in log time over log L and log C."""
        name = self.dense if compression == 1 else self.method
        rows = self.frame.filter(pl.col("method") == name)
        if compression == 1 and name == self.method:
            rows = rows.filter(pl.col("compression") == 1)
        per_len = []
        for (length,), group in rows.group_by(["seq_len"]):
            c = group["compression"].to_numpy()
            ms = group["ms"].to_numpy()
            if compression == 1 or len(np.unique(c)) == 1:
                per_len.append((float(length), float(np.exp(np.log(ms).mean()))))
            else:
                per_len.append(
                    (float(length), _interp_log(c, ms, compression, "compression", self.source))
                )
        lengths = np.array([x for x, _ in per_len])
        times = np.array([y for _, y in per_len])
        at = _interp_log(lengths, times, seq_len, f"{name} seq_len", self.source)
        return at * self._scale(rows, arch, batch)

    @staticmethod
    def _scale(rows: pl.DataFrame, arch: Architecture, batch: int) -> float:
        scale = float(batch)
        if "batch" in rows.columns:
            scale /= float(rows["batch"].median())  # type: ignore[arg-type]
        if "heads" in rows.columns:
            width = float(rows["heads"].median())  # type: ignore[arg-type]
            if "head_dim" in rows.columns:
                width *= float(rows["head_dim"].median())  # type: ignore[arg-type]
            else:
                width *= arch.head_dim
            scale *= arch.heads * arch.head_dim / width
        return scale

    def lengths(self) -> list[float]:
        rows = self.frame.filter(pl.col("method") == self.method)
        return sorted(set(rows["seq_len"].to_list()))


def latency_ms(
    timings: Timings,
    arch: Architecture,
    seq_len: float,
    compression: float,
    *,
    batch: int = 1,
    throughput: float | None = None,
    bytes_per_element: float = 2.0,
) -> float:
    """Milliseconds of one prefill (or one decode step): measured attention plus the rest."""
    phase = timings.phase
    rate = throughput or DEFAULT_THROUGHPUT[phase]
    dense = cost(arch, phase, seq_len, 1.0, batch=batch, bytes_per_element=bytes_per_element)
    attention = dense.attention_part
    rest = dense.dense_total - dense.dense_parts[attention]
    glob = arch.global_layers * timings.attention_ms(arch, seq_len, compression, batch)
    local = 0.0
    if arch.local_layers and arch.window:
        local = arch.local_layers * timings.attention_ms(
            arch, min(float(arch.window), seq_len), 1.0, batch
        )
    return glob + local + 1e3 * rest / rate
