"""Measure one unit of work: generate the samples, run the model, score, summarise.

A unit is one compute id of the grid (see `Configuration.compute_id`): every configuration that
shares it (a method at C = 1 is dense attention) gets its own row from the same predictions.

Every row carries the ratio and the achieved ratio of each phase (`prefill_compression`,
`decode_compression`, `achieved_prefill_compression`, `achieved_decode_compression`; 1 for the
phase a method leaves dense) beside `compression` and `achieved_compression`, which are the
method's own phase, and the prefill phase for a combined run (`phase` = `prefill+decode`).
Achieved ratios are counted token by token (causal entries computed, cache tokens read,
generated tokens included); `study_compression` is the method phase's C as the reference study
counts it: causal block pairs over the pairs kept for block-sparse, the prompt's length over the
prompt tokens kept or budgeted for the decode methods (the token count elsewhere). The two
agree within a few percent at the study's lengths. The label check below reads the block pairs for
block-sparse (GPU kernels compute whole blocks, diagonal ones included, and the study chose its
`top_chunks` by them) and the tokens for the decode methods: a decode run is a point at C only
if it really read 1/C of the cache (a quest run whose one budget page is as large as the newest
page reads twice its budget, whatever the study's count says).

Budgets from the reference study's tables (vertical-slash and flexprefill with `budget_rule =
"study"`, the default) are levels, as in the study: such a phase records the C it achieved as its
compression, the grid's C as `level`, and no tolerance applies to it.

Otherwise a run is a point at its label C only if it achieved that C: a run whose achieved compression
(the mean over its samples, the number its rows would record) is more than the tolerance off the
label in a phase, `abs(achieved / C - 1) > tolerance` (the grid's `compression_tolerance`,
default 10%), raises `MeasureError` naming both numbers; the sweep journals it as a failed run
with no rows. A dense phase (C = 1) is exempt.
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
from scalelaw.kernels.registry import get_method
from scalelaw.kernels.specs import (
    COMPRESSION_TOLERANCE,
    get_spec,
    is_dense,
    study_rule,
    task_knobs,
)
from scalelaw.kernels.study_budgets import flexprefill_budget, vertical_slash_budget
from scalelaw.measure.generate import greedy
from scalelaw.measure.grid import COMBINED_PHASE, DENSE, Configuration
from scalelaw.measure.models import LoadedModel, load_model, model_context
from scalelaw.measure.sparse import Routing, combined_attention
from scalelaw.measure.store import Record
from scalelaw.measure.tasks import Task, get_task

#: Called after each sample with the number of samples just finished (for progress bars).
Progress = Callable[[int], None]


class MeasureError(ScalelawError, RuntimeError):
    """A configuration that cannot be measured (unknown method, bad knob, ...)."""


@dataclass(frozen=True)
class Unit:
    """Configurations sharing one compute id; the first one is the one that runs.

    `tolerance` is how far (relative) the achieved C may be from the label C for the run to be
    recorded (the grid's `compression_tolerance`).
    """

    compute_id: str
    configs: tuple[Configuration, ...]
    tolerance: float = COMPRESSION_TOLERANCE

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


@dataclass(frozen=True)
class Setup:
    """What a configuration runs: a method (None: dense) and a ratio in each phase."""

    prefill: Any
    prefill_compression: float
    decode: Any
    decode_compression: float
    phase: str  # the row's label: prefill, decode or prefill+decode
    knobs: dict[str, Any]  # every knob, as the row's method_params

    def study(self, phase: str) -> bool:
        """Whether the phase's budget came from the study's tables: its row then records the
        C the run achieved, not the grid's level, and no tolerance applies."""
        method = self.prefill if phase == "prefill" else self.decode
        return method is not None and study_rule(method.name, method.knobs())

    def achieved(self, route: Routing) -> tuple[float, float]:
        """(prefill, decode) compression a generation achieved (1.0 in a dense phase)."""
        p = route.prefill.achieved_compression() if route.prefill is not None else 1.0
        d = route.decode.achieved_compression() if route.decode is not None else 1.0
        return p, d

    def study_counted(self, route: Routing) -> tuple[float, float]:
        """(prefill, decode) compression as the reference study counts it (block pairs for
        block-sparse, the prompt over the budget for decode methods; 1.0 in a dense phase)."""
        p = route.prefill.study_compression() if route.prefill is not None else 1.0
        d = route.decode.study_compression() if route.decode is not None else 1.0
        return p, d

    def judged_by_study(self, route: Routing) -> tuple[bool, bool]:
        """Per phase, whether its label is judged on the study's count (block-sparse's block
        pairs) rather than on the tokens."""
        p = route.prefill is not None and route.prefill.judged_by_study
        d = route.decode is not None and route.decode.judged_by_study
        return p, d


def _method(config: Configuration, name: str, params: str) -> Any:
    # the study's per-task values (vertical-slash's window on retrieval) and its budget for the
    # grid's nominal length (prompts are 95-100% of it), unless the grid sets them
    knobs = {**task_knobs(name, config.task), **json.loads(params)}
    try:
        if "budget_length" in get_spec(name).defaults() and knobs.get("budget_length") is None:
            knobs["budget_length"] = config.seq_len
        return get_method(name, **knobs)
    except ValueError as exc:
        raise MeasureError(f"{config.label()}: {exc}") from None


def setup_for(config: Configuration) -> Setup:
    """The methods, ratios, phase label and knobs of a configuration."""
    c = config.compression
    if config.method == DENSE:
        return Setup(None, 1.0, None, 1.0, "prefill", json.loads(config.method_params))
    method = _method(config, config.method, config.method_params)
    phase = str(method.phase)
    if not config.combined:
        if phase == "decode":
            return Setup(None, 1.0, method, c, phase, method.knobs())
        return Setup(method, c, None, 1.0, phase, method.knobs())
    assert config.decode_method is not None and config.decode_params is not None
    decode = _method(config, config.decode_method, config.decode_params)
    for slot, m in (("prefill", method), ("decode", decode)):
        if str(m.phase) != slot:
            raise MeasureError(f"{config.label()}: the {slot} half is a {m.phase} method")
    knobs = {"prefill": method.knobs(), "decode": decode.knobs()}
    cd = float(config.decode_compression or 1.0)
    return Setup(method, c, decode, cd, COMBINED_PHASE, knobs)


def check_grid(configs: list[Configuration]) -> None:
    """Fail before measuring anything when a method, knob or task of the grid is wrong, or a
    prompt and its answer would not fit in the model's context."""
    methods: set[tuple[str | None, ...]] = set()
    tasks: dict[tuple[str, str], Task] = {}
    contexts: dict[str, int | None] = {}
    for c in configs:
        key = (c.method, c.method_params, c.decode_method, c.decode_params)
        if key not in methods:
            methods.add(key)
            setup_for(c)
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
    setup = setup_for(cfg)
    lm = cached_model(cfg.model, cfg.dtype, cfg.seed)
    samples = task.samples(lm.count_tokens, cfg.seq_len, cfg.seed, cfg.samples)
    predictions: list[dict[str, Any]] = []
    prefill_s = decode_s = 0.0
    prompt_tokens = new_tokens = 0
    achieved: list[tuple[float, float]] = []
    counted: list[tuple[float, float]] = []
    judged = (False, False)
    cap = cfg.max_new_tokens or task.max_new_tokens
    started = time.perf_counter()
    for sample in samples:
        ids = lm.encode(sample.prompt)
        with combined_attention(
            setup.prefill, setup.prefill_compression, setup.decode, setup.decode_compression
        ) as route:
            gen = greedy(lm.model, ids, cap, lm.eos_ids)
        text = lm.tokenizer.decode(gen.tokens, skip_special_tokens=True)
        score = task.score(text, sample)
        sample_p, sample_d = setup.achieved(route)
        achieved.append((sample_p, sample_d))
        counted.append(setup.study_counted(route))
        judged = setup.judged_by_study(route)
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
                "method": cfg.method_label,
                "compression": cfg.compression,
                "sample": sample.index,
                "prompt_tokens": len(ids),
                "expected": json.dumps(list(sample.expected)),
                "output": text,
                "score": float(score),
                "new_tokens": len(gen.tokens),
                "achieved_compression": sample_d if setup.phase == "decode" else sample_p,
                **(
                    {
                        "decode_compression": setup.decode_compression,
                        "achieved_prefill_compression": sample_p,
                        "achieved_decode_compression": sample_d,
                    }
                    if cfg.combined
                    else {}
                ),
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
    mean_p = statistics.fmean(p for p, _ in achieved)
    mean_d = statistics.fmean(d for _, d in achieved)
    study = (statistics.fmean(p for p, _ in counted), statistics.fmean(d for _, d in counted))
    own = study[1] if setup.phase == "decode" else study[0]
    rows = [_row(c, base, mean_p, mean_d, own) for c in unit.configs]
    _check_label(cfg, rows[0], unit.tolerance, study, judged)
    return Record(unit.compute_id, rows, predictions)


def label_error(label: float, achieved: float, tolerance: float, phase: str = "") -> str | None:
    """Why a run that achieved `achieved` is not a point at `label` (None when it is).

    A run is recorded at its label C only when `abs(achieved / label - 1) <= tolerance`;
    C = 1 (dense) is exempt. `phase` ("decode") names the phase's C in the message.
    """
    if is_dense(label):
        return None
    off = abs(achieved / label - 1)
    if off <= tolerance + 1e-9:  # exactly at the tolerance (4.4 for 4) is within it
        return None
    for digits in range(4):  # 10.04% off a tolerance of 10% is not "10% off"
        pct = f"{off:.{digits}%}"
        if float(pct[:-1]) > tolerance * 100:
            break
    got = f"{achieved:.3g}" if f"{achieved:.3g}" != f"{label:g}" else f"{achieved:.6g}"
    c = f"{phase} C" if phase else "C"
    return (
        f"achieved {c} {got} is {pct} off the label {c}={label:g} "
        f"(tolerance {tolerance * 100:.3g}%)"
    )


def _check_label(
    cfg: Configuration,
    row: dict[str, Any],
    tolerance: float,
    study: tuple[float, float] = (1.0, 1.0),
    judged: tuple[bool, bool] = (False, False),
) -> None:
    """Refuse a run whose achieved C, as its row would record it, is off its label in a phase;
    a phase `judged` by the study's count (block-sparse's block pairs) is judged on `study`.

    The configurations of a unit share a compute id, so they have the same ratio in each phase
    and the head's row decides for all of them.
    """
    setup = setup_for(cfg)
    for i, phase in enumerate(("prefill", "decode")):
        if setup.study(phase):
            continue
        label = float(row[f"{phase}_compression"])
        achieved = study[i] if judged[i] else float(row[f"achieved_{phase}_compression"])
        why = label_error(label, achieved, tolerance, phase if cfg.combined else "")
        if why and judged[i]:
            why += " (counted in block pairs, as the study counts it)"
        if why:
            raise MeasureError(
                f"{cfg.label()}: {why}, so it is not a point at that C; drop the ratio at "
                "this length or change the knobs"
            )


def _row(
    config: Configuration,
    base: dict[str, Any],
    prefill: float,
    decode: float,
    study: float | None = None,
) -> dict[str, Any]:
    """The table row of `config` from a run that achieved (`prefill`, `decode`) compression,
    token by token, and `study` in its method's phase as the reference study counts it."""
    setup = setup_for(config)
    achieved_p = 1.0 if is_dense(setup.prefill_compression) else prefill
    achieved_d = 1.0 if is_dense(setup.decode_compression) else decode
    # a budget from the study's tables is a level, not a promise: the row's C is what it achieved
    label_p = achieved_p if setup.study("prefill") else setup.prefill_compression
    label_d = achieved_d if setup.study("decode") else setup.decode_compression
    return {
        **base,
        "compression": label_d if setup.phase == "decode" else label_p,
        "level": config.compression,
        "study_budget": _study_budget(setup, config),
        "achieved_compression": achieved_d if setup.phase == "decode" else achieved_p,
        "study_compression": _own_study(setup, achieved_p, achieved_d, study),
        "budget": config.budget,
        "prefill_compression": label_p,
        "decode_compression": label_d,
        "achieved_prefill_compression": achieved_p,
        "achieved_decode_compression": achieved_d,
        "method": config.method_label,
        "phase": setup.phase,
        "method_params": json.dumps(setup.knobs, sort_keys=True),
        "config_id": config.config_id,
    }


def _own_study(setup: Setup, prefill: float, decode: float, study: float | None) -> float:
    """The C of the row's method phase as the study counts it; 1.0 where that phase is dense,
    the token count where no study count was kept."""
    label = setup.decode_compression if setup.phase == "decode" else setup.prefill_compression
    if is_dense(label):
        return 1.0
    return study if study is not None else (decode if setup.phase == "decode" else prefill)


def _study_budget(setup: Setup, config: Configuration) -> str | None:
    """The study's budget a prefill phase ran with, and where it came from (None: not the
    study's rule)."""
    if not setup.study("prefill") or is_dense(setup.prefill_compression):
        return None
    name, knobs = setup.prefill.name, setup.prefill.knobs()
    length = knobs.get("budget_length") or config.seq_len
    if name == "vertical-slash":
        b = vertical_slash_budget(length, setup.prefill_compression)
        return f"{b.lines} lines at L={length} ({b.source})"
    b = flexprefill_budget(length, setup.prefill_compression)
    return f"alpha {b.alpha:g}, min_budget {b.min_budget} at L={length} ({b.source})"


def _phase_achieved(row: dict[str, Any]) -> tuple[float, float]:
    """(prefill, decode) achieved compression of a journalled row, older rows included."""
    p, d = row.get("achieved_prefill_compression"), row.get("achieved_decode_compression")
    if p is not None and d is not None:
        return float(p), float(d)
    # rows written before the per-phase columns: the one achieved ratio is the method's phase
    a = float(row["achieved_compression"])
    return (1.0, a) if row.get("phase") == "decode" else (a, 1.0)


def alias_record(unit: Unit, source: Record) -> Record:
    """Rows for configurations whose compute id was already measured: no model run."""
    template = dict(source.rows[0])
    prefill, decode = _phase_achieved(template)
    own = template.get("study_compression")
    if own is None:  # rows written before the column: the token count of the method's phase
        own = decode if template.get("phase") == "decode" else prefill
    rows = [_row(c, template, prefill, decode, float(own)) for c in unit.configs]
    return Record(f"{unit.compute_id}+alias", rows, [])
