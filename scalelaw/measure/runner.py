"""Measure one unit of work: generate the samples, run the model, score, summarise.

A unit is one compute id of the grid (see `Configuration.compute_id`): every configuration that
shares it (a method at C = 1 is dense attention) gets its own row from the same predictions.
"""

from __future__ import annotations

import json
import platform
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from scalelaw.errors import ScalelawError
from scalelaw.kernels.specs import shortfall
from scalelaw.measure.generate import greedy
from scalelaw.measure.grid import DENSE, Configuration
from scalelaw.measure.models import LoadedModel, load_model
from scalelaw.measure.sparse import sparse_attention
from scalelaw.measure.store import Record
from scalelaw.measure.tasks import Task, get_task

#: Called after each sample with the number of samples just finished (for progress bars).
Progress = Callable[[int], None]


class MeasureError(ScalelawError, RuntimeError):
    """A configuration that cannot be measured (unknown method, bad knob, ...)."""


@dataclass(frozen=True)
class Unit:
    """Configurations sharing one compute id; the first one is the one that runs."""

    compute_id: str
    configs: tuple[Configuration, ...]

    @property
    def head(self) -> Configuration:
        return self.configs[0]


_MODELS: dict[tuple[str, str, int], LoadedModel] = {}


def cached_model(spec: str, dtype: str, seed: int) -> LoadedModel:
    """Load a model once per process (Ray workers reuse it across tasks); keep only the last."""
    key = (spec, dtype, seed)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load_model(spec, dtype=dtype, seed=seed)
    return _MODELS[key]


def package_versions() -> str:
    out = {"python": platform.python_version()}
    for pkg in ("scalelaw", "torch", "transformers", "triton"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return json.dumps(out, sort_keys=True)


def device_name(lm: LoadedModel) -> str:
    dev = lm.device
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()}threads"


def method_for(config: Configuration) -> tuple[Any, str, dict[str, Any]]:
    """(method object or None for dense, phase, full knobs) of a configuration."""
    params = json.loads(config.method_params)
    if config.method == DENSE:
        return None, "prefill", params
    from scalelaw.kernels import get_method

    try:
        method = get_method(config.method, **params)
    except ValueError as exc:
        raise MeasureError(f"{config.label()}: {exc}") from None
    return method, str(method.phase), method.knobs()


def check_grid(configs: list[Configuration]) -> None:
    """Fail before measuring anything when a method, knob or task of the grid is wrong, or a
    prompt and its answer would not fit in the model's context."""
    from scalelaw.measure.models import model_context

    methods: set[tuple[str, str]] = set()
    tasks: dict[tuple[str, str], Task] = {}
    contexts: dict[str, int | None] = {}
    for c in configs:
        if (c.method, c.method_params) not in methods:
            methods.add((c.method, c.method_params))
            method_for(c)
        if (c.task, c.task_params) not in tasks:
            try:
                tasks[c.task, c.task_params] = get_task(c.task, **json.loads(c.task_params))
            except ValueError as exc:
                raise MeasureError(f"{c.label()}: {exc}") from None
        task = tasks[c.task, c.task_params]
        if c.model not in contexts:
            contexts[c.model] = model_context(c.model)
        context = contexts[c.model]
        answer = c.max_new_tokens or task.max_new_tokens
        if context is not None and c.seq_len + answer > context:
            raise MeasureError(
                f"{c.label()}: a {c.seq_len}-token prompt and up to {answer} answer tokens "
                f"exceed the model's context of {context} tokens; use shorter lengths"
            )


def run_unit(unit: Unit, progress: Progress | None = None) -> Record:
    """Measure `unit.head` and return the journal record with one row per configuration."""
    cfg = unit.head
    task: Task = get_task(cfg.task, **json.loads(cfg.task_params))
    method, _, _ = method_for(cfg)
    lm = cached_model(cfg.model, cfg.dtype, cfg.seed)
    samples = task.samples(lm.count_tokens, cfg.seq_len, cfg.seed, cfg.samples)
    predictions: list[dict[str, Any]] = []
    prefill_s = decode_s = 0.0
    prompt_tokens = new_tokens = 0
    achieved: list[float] = []
    cap = cfg.max_new_tokens or task.max_new_tokens
    started = time.perf_counter()
    for sample in samples:
        ids = lm.encode(sample.prompt)
        with sparse_attention(method, cfg.compression) as ctx:
            gen = greedy(lm.model, ids, cap, lm.eos_ids)
        text = lm.tokenizer.decode(gen.tokens, skip_special_tokens=True)
        score = task.score(text, sample)
        sample_c = ctx.achieved_compression() if ctx is not None else 1.0
        achieved.append(sample_c)
        prefill_s += gen.prefill_s
        decode_s += gen.decode_s
        prompt_tokens += len(ids)
        new_tokens += len(gen.tokens)
        predictions.append(
            {
                "compute_id": unit.compute_id,
                "model": cfg.model,
                "task": cfg.task,
                "seq_len": cfg.seq_len,
                "method": cfg.method,
                "compression": cfg.compression,
                "sample": sample.index,
                "prompt_tokens": len(ids),
                "expected": json.dumps(list(sample.expected)),
                "output": text,
                "score": float(score),
                "new_tokens": len(gen.tokens),
                "achieved_compression": sample_c,
                "prefill_s": gen.prefill_s,
                "decode_s": gen.decode_s,
            }
        )
        if progress is not None:
            progress(1)
    wall = time.perf_counter() - started
    scores = [p["score"] for p in predictions]
    base = {
        "params": lm.params,
        "seq_len": cfg.seq_len,
        "score": statistics.fmean(scores),
        "samples": len(scores),
        "score_var": statistics.variance(scores) if len(scores) > 1 else 0.0,
        "full_credit": sum(1 for s in scores if s == 1.0),
        "task": cfg.task,
        "model": cfg.model,
        "family": lm.family,
        "metric": task.metric,
        "task_version": task.version,
        "task_params": json.dumps(task.params(), sort_keys=True),
        "mean_prompt_tokens": prompt_tokens / len(scores),
        "mean_new_tokens": new_tokens / len(scores),
        "tokens_per_s": (prompt_tokens + new_tokens) / max(prefill_s + decode_s, 1e-9),
        "prefill_tokens_per_s": prompt_tokens / max(prefill_s, 1e-9),
        "decode_tokens_per_s": max(new_tokens - len(scores), 0) / max(decode_s, 1e-9),
        "wall_s": wall,
        "seed": cfg.seed,
        "max_new_tokens": cap,
        "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        "model_source": lm.source,
        "model_hash": lm.file_hash,
        "model_revision": lm.revision,
        "device": device_name(lm),
        "host": socket.gethostname(),
        "versions": package_versions(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "compute_id": unit.compute_id,
    }
    mean_achieved = statistics.fmean(achieved)
    reason = shortfall(cfg.compression, mean_achieved)
    if reason:  # the method fell back to (near) dense attention: this is not a point at C
        raise MeasureError(f"{cfg.label()}: {reason}; the method cannot reach it at this length")
    rows = []
    for c in unit.configs:
        _, phase, knobs = method_for(c)
        rows.append(
            {
                **base,
                "compression": c.compression,
                "achieved_compression": 1.0 if c.compression == 1 else mean_achieved,
                "method": c.method,
                "phase": phase,
                "method_params": json.dumps(knobs, sort_keys=True),
                "config_id": c.config_id,
            }
        )
    return Record(unit.compute_id, rows, predictions)


def alias_record(unit: Unit, source: Record) -> Record:
    """Rows for configurations whose compute id was already measured: no model run."""
    template = dict(source.rows[0])
    rows = []
    for c in unit.configs:
        _, phase, knobs = method_for(c)
        rows.append(
            {
                **template,
                "compression": c.compression,
                "method": c.method,
                "phase": phase,
                "method_params": json.dumps(knobs, sort_keys=True),
                "config_id": c.config_id,
            }
        )
    return Record(f"{unit.compute_id}+alias", rows, [])
