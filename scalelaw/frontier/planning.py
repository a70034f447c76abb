"""Planning: which measurements would most likely change the decision, per GPU-hour?

Preposterior analysis over posterior draws. The decision at a target (a length and a cost
budget) is the sign of the best sparse minus the best dense score, decided in each draw; the
loss of deciding now is P(wrong decision) = min(P, 1 - P) with P = P(sparse better). A
candidate measurement (model, task, length, method, ratio, samples) would return `successes`
out of `samples`; for each possible outcome the draws are re-weighted by its binomial
likelihood (importance weights), the decision is recomputed under the weights, and its loss is
averaged over the outcome's posterior predictive probability. The drop in expected loss is the
expected value of sample information (EVSI); divided by the candidate's GPU-hours it ranks the
candidates. A batch is chosen greedily within a GPU-hour budget, valued jointly by simulating
outcomes of all its configurations at once, and written as a sweep grid for `scalelaw measure`.

A sweep grid is a cross product (models x lengths x tasks x methods x ratios, one sample count),
so the batch is one too: every addition is judged with everything its product brings along.
Torch-free: the grid module of `scalelaw.measure` and its task registry are.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import gammaln

from scalelaw.errors import ScalelawError
from scalelaw.frontier.architectures import (
    BUILTIN,
    Architecture,
    from_hf_config,
    get_architecture,
)
from scalelaw.frontier.cost import DECODE_METHODS, PREFILL_METHODS, cost
from scalelaw.kernels.specs import is_dense

#: Sustained dense throughput of one GPU while measuring (bf16, H100-class, long prompts).
DEFAULT_FLOPS_PER_S = 400e12
#: Sustained memory bandwidth of one GPU while decoding the answer.
DEFAULT_BYTES_PER_S = 2.5e12
#: The reference study's task names (v1 cards) for the generated tasks of `scalelaw measure`.
V1_TASK_NAMES: dict[str, str] = {
    "niah-multikey": "NIAH",
    "variable-tracking": "VT",
    "common-words": "CWE",
    "story-retrieval": "StoryRetrieval",
    "story-multihop": "StoryMultihop",
    "story-filtering": "StoryFiltering",
}
#: Below this share of the draws, the effective sample size of the weights has collapsed.
ESS_SHARE = 0.05
#: Greedy batch building stops when an addition lowers the expected P(wrong) by less.
MIN_GAIN = 1e-3
_CLIP = 1e-9

CostFn = Callable[[Architecture, float, float], float]
ProgressFn = Callable[[str, int | None], Callable[[int], None]]


class PlanError(ScalelawError):
    """Bad input to planning, or nothing to plan."""


# --- targets ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A decision to get right: best sparse against best dense at one length.

    With a `budget`, at that cost; without (``budget=mean``), on average over log-spaced
    budgets spanning the dense sizes' costs, the advantage whose sign change along L is the
    critical length (`scalelaw.frontier.critical_length`).
    """

    seq_len: float
    budget: float | None

    @property
    def label(self) -> str:
        spend = "mean" if self.budget is None else f"{self.budget:.3g}"
        return f"L={_tokens(self.seq_len)}, budget={spend}"


#: Budgets of a ``budget=mean`` target (as `critical_length` scans them).
MEAN_BUDGETS = 24


def _tokens(length: float) -> str:
    return f"{length / 1024:g}K" if length % 1024 == 0 else f"{length:g}"


def _number(text: str, where: str) -> float:
    t = text.strip()
    scale = 1024.0 if t[-1:] in ("k", "K") else 1.0
    try:
        value = float(t[:-1] if scale != 1.0 else t) * scale
    except ValueError:
        raise PlanError(f"{where}: '{text}' is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise PlanError(f"{where}: '{text}' must be a positive number")
    return value


def parse_target(text: str) -> Target:
    """``L=128K,budget=4e16`` (a cost in the decision's unit) or ``L=48K,budget=mean``."""
    values: dict[str, float | None] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        key = {"seq_len": "l", "length": "l"}.get(key, key)
        if not sep or key not in ("l", "budget"):
            raise PlanError(f"target '{text}': expected 'L=LENGTH,budget=COST', got '{part}'")
        if key in values:
            name = "L" if key == "l" else key
            raise PlanError(f"target '{text}': {name} is given twice (one target per -t)")
        if key == "budget" and value.strip().lower() == "mean":
            values[key] = None
        else:
            values[key] = _number(value, f"target '{text}': {'L' if key == 'l' else key}")
    missing = [k for k in ("l", "budget") if k not in values]
    if missing:
        what = " and ".join("L" if k == "l" else k for k in missing)
        raise PlanError(f"target '{text}': missing {what} (e.g. 'L=128K,budget=4e16')")
    length = values["l"]
    assert length is not None
    return Target(length, values["budget"])


# --- what a measurement costs -----------------------------------------------------------------
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


# --- candidates --------------------------------------------------------------------------------
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


def task_level(task: str, levels: Sequence[str], task_map: Mapping[str, str] | None) -> str:
    """The fit's task level a grid task is scored as: the same name, --task-map, or the v1 name."""
    mapped = (task_map or {}).get(task)
    if mapped is not None:
        if levels and mapped not in levels:
            raise PlanError(
                f"--task-map {task}={mapped}: '{mapped}' is not a task of the fit "
                f"({', '.join(levels)})"
            )
        return mapped
    if not levels or task in levels:
        return task
    folded = {lv.lower(): lv for lv in levels}
    for name in (task, V1_TASK_NAMES.get(task, "")):
        if name.lower() in folded:
            return folded[name.lower()]
    raise PlanError(
        f"task '{task}' of the candidates is not a task of the fit ({', '.join(levels)}); "
        "map it with --task-map NAME=LEVEL"
    )


@dataclass(frozen=True)
class Candidate:
    """One configuration a sweep could measure, its fit coordinates and its measuring cost."""

    config: Any  # scalelaw.measure.grid.Configuration
    arch: Architecture
    level: str | None
    seconds: float
    cost_source: str = "cost model"

    @property
    def key(self) -> str:
        """Configurations with equal keys are one measurement (C = 1 of a method is dense)."""
        return str(self.config.compute_id)

    @property
    def gpu_hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def samples(self) -> int:
        return int(self.config.samples)

    def point(self) -> dict[str, Any]:
        c = self.config
        row: dict[str, Any] = {
            "params": float(self.arch.params()),
            "seq_len": float(c.seq_len),
            "compression": float(c.compression),
        }
        if self.level is not None:
            row["task"] = self.level
        return row


@dataclass(frozen=True)
class GridTemplate:
    """What a written grid copies from the candidates file, and its axes' order."""

    name: str
    seed: int
    dtype: str
    max_new_tokens: int
    models: tuple[str, ...]
    methods: tuple[tuple[str, str], ...]
    tasks: tuple[tuple[str, str], ...]


@dataclass
class Candidates:
    items: list[Candidate]
    template: GridTemplate
    source: str = ""


def read_candidates(
    path: str | Path,
    *,
    levels: Sequence[str] = (),
    task_map: Mapping[str, str] | None = None,
    speed: MeasureSpeed | None = None,
    timings: pl.DataFrame | None = None,
) -> Candidates:
    """Every configuration of a sweep grid TOML as a candidate.

    The file is a `scalelaw measure` grid, except that `samples` may be a list: each sample
    count is a separate candidate. `timings` (a table from an earlier sweep) replaces the cost
    model where it measured the configuration and calibrates it elsewhere.
    """
    from scalelaw.measure.grid import GridError

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the candidates ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: not valid TOML ({exc})") from None
    try:
        return candidates_from_dict(
            data,
            where=str(path),
            levels=levels,
            task_map=task_map,
            speed=speed,
            timings=timings,
        )
    except GridError as exc:
        raise PlanError(str(exc)) from None


def candidates_from_dict(
    data: Mapping[str, Any],
    *,
    where: str = "<candidates>",
    levels: Sequence[str] = (),
    task_map: Mapping[str, str] | None = None,
    speed: MeasureSpeed | None = None,
    timings: pl.DataFrame | None = None,
) -> Candidates:
    """As `read_candidates`, from the parsed TOML."""
    from scalelaw.measure.grid import parse_grid
    from scalelaw.measure.tasks import TaskError, get_task

    speed = speed or MeasureSpeed()
    raw = data.get("samples", 10)
    counts = raw if isinstance(raw, list) else [raw]
    if not counts:
        raise PlanError(f"{where}: 'samples' is an empty list")
    grids = [parse_grid({**data, "samples": n}, where) for n in counts]
    first = grids[0]
    archs = {m: model_architecture(m) for m in first.models}
    tasks: dict[tuple[str, str], tuple[str, int]] = {}
    for name, params in first.tasks:
        try:
            task = get_task(name, **json.loads(params))
        except (TaskError, TypeError, ValueError) as exc:
            raise PlanError(f"{where}: task '{name}': {exc}") from None
        tasks[(name, params)] = (task_level(name, levels, task_map), int(task.max_new_tokens))
    calibration = _Calibration(timings, speed) if timings is not None else None
    items: dict[str, Candidate] = {}
    for grid in grids:
        for c in grid.configurations():
            if c.compute_id in items:
                continue
            arch = archs[c.model]
            level, cap = tasks[(c.task, c.task_params)]
            method = "dense" if is_dense(c.compression) else c.method
            knobs = json.loads(c.method_params) if method != "dense" else {}
            per = speed.seconds_per_sample(
                arch, method, c.seq_len, c.compression, c.max_new_tokens or cap, knobs
            )
            source = "cost model"
            if calibration is not None:
                per, source = calibration.adjust(c.model, c.seq_len, method, c.compression, per)
            items[c.compute_id] = Candidate(
                c, arch, level if levels else None, per * c.samples, source
            )
    template = GridTemplate(
        first.name, first.seed, first.dtype, first.max_new_tokens, first.models,
        first.methods, first.tasks,
    )  # fmt: skip
    return Candidates(list(items.values()), template, where)


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


# --- the decision per draw ---------------------------------------------------------------------
def decision_configs(
    archs: Sequence[Architecture],
    targets: Sequence[Target],
    cost_fn: CostFn,
    compressions: Sequence[float],
) -> pl.DataFrame:
    """Every (target, size, ratio) configuration with its cost."""
    if not archs:
        raise PlanError("no architectures compete in the decision")
    ratios = sorted({float(c) for c in compressions})
    if not ratios or ratios[0] < 1:
        raise PlanError("compression ratios must be >= 1 (1 means dense)")
    if ratios[0] != 1.0 or len(ratios) < 2:
        raise PlanError("compression ratios must include 1 (dense) and at least one value > 1")
    if any(t.budget is None for t in targets) and len(archs) < 2:
        raise PlanError("a budget=mean target needs at least two model sizes")
    rows: list[dict[str, Any]] = []
    for t, target in enumerate(targets):
        for a in archs:
            for c in ratios:
                rows.append(
                    {
                        "target": t,
                        "size": a.size,
                        "params": float(a.params()),
                        "seq_len": float(target.seq_len),
                        "compression": c,
                        "sparse": c > 1,
                        "cost": float(cost_fn(a, target.seq_len, c)),
                    }
                )
        here = [r for r in rows if r["target"] == t]
        if target.budget is None:
            continue
        for sparse, what in ((False, "dense"), (True, "sparse")):
            costs = [r["cost"] for r in here if r["sparse"] == sparse]
            if min(costs) > target.budget * (1 + 1e-12):
                raise PlanError(
                    f"target {target.label}: no {what} configuration fits the budget "
                    f"(the cheapest costs {min(costs):.3g})"
                )
    return pl.DataFrame(rows)


def _budgets(target: Target, cost: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    if target.budget is not None:
        return np.array([target.budget])
    dense = cost[~sparse]
    return np.geomspace(dense.min(), dense.max(), MEAN_BUDGETS + 1)[:-1]


def sparse_wins(mu: np.ndarray, configs: pl.DataFrame, targets: Sequence[Target]) -> np.ndarray:
    """Per draw and target, whether the best feasible sparse choice beats the best dense one
    (for ``budget=mean``: on average over the budgets, no feasible sparse choice scoring 0)."""
    which = configs["target"].to_numpy()
    sparse_all = configs["sparse"].to_numpy()
    cost_all = configs["cost"].to_numpy()
    out = np.zeros((mu.shape[0], len(targets)), dtype=bool)
    for t, target in enumerate(targets):
        here = which == t
        m, cost, sparse = mu[:, here], cost_all[here], sparse_all[here]
        budgets = _budgets(target, cost, sparse)
        feasible = cost[None, :] <= budgets[:, None] * (1 + 1e-12)
        best = {}
        for tag, mask in (("d", feasible & ~sparse), ("s", feasible & sparse)):
            masked = np.where(mask[None, :, :], m[:, None, :], -np.inf)
            best[tag] = masked.max(axis=2)
        best_s = np.where(np.isfinite(best["s"]), best["s"], 0.0)
        out[:, t] = (best_s - best["d"]).mean(axis=1) > 0
    return out


def wrong_probability(wins: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Expected share of the targets decided wrongly when each is decided by its likelier side."""
    p = _p_sparse(wins, weights)
    return float(np.minimum(p, 1 - p).mean())


def _p_sparse(wins: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    w = np.full(wins.shape[0], 1.0 / wins.shape[0]) if weights is None else weights
    return np.asarray(w @ wins.astype(float), dtype=float)


# --- re-weighting ---------------------------------------------------------------------------
def reweight(
    mu: np.ndarray, successes: float, samples: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Importance weights of the draws after observing `successes` out of `samples` at a point
    whose expected score per draw is `mu` (binomial likelihood)."""
    mu = np.clip(np.asarray(mu, dtype=float), _CLIP, 1 - _CLIP)
    logw = successes * np.log(mu) + (samples - successes) * np.log1p(-mu)
    if weights is not None:
        with np.errstate(divide="ignore"):
            logw = logw + np.log(weights)
    w = np.exp(logw - logw.max())
    return np.asarray(w / w.sum(), dtype=float)


@dataclass(frozen=True)
class Value:
    """Preposterior summary of one candidate measurement."""

    loss_before: float
    loss_after: float
    ess: float

    @property
    def evsi(self) -> float:
        # the exact expectation cannot exceed the loss before (min is concave); clip rounding
        return max(self.loss_before - self.loss_after, 0.0)


def evsi(
    mu: np.ndarray, samples: int, wins: np.ndarray, weights: np.ndarray | None = None
) -> Value:
    """Expected drop in P(wrong decision) from measuring `samples` trials at one point.

    Exact over every outcome 0..samples (no simulation noise): each outcome re-weights the
    draws by its binomial likelihood and is weighted by its posterior predictive probability.
    `ess` is the effective number of draws after the measurement, averaged over outcomes.
    """
    m = wins.shape[0]
    w0 = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=float)
    p = np.clip(np.asarray(mu, dtype=float), _CLIP, 1 - _CLIP)
    y = np.arange(samples + 1, dtype=float)[:, None]
    comb = gammaln(samples + 1) - gammaln(y + 1) - gammaln(samples - y + 1)
    with np.errstate(divide="ignore"):
        loglik = comb + y * np.log(p)[None, :] + (samples - y) * np.log1p(-p)[None, :]
        loglik = loglik + np.log(w0)[None, :]
    top = loglik.max(axis=1, keepdims=True)
    joint = np.exp(loglik - top)
    mass = joint.sum(axis=1)
    predictive = np.exp(top[:, 0]) * mass
    post = joint / mass[:, None]
    pw = post @ wins.astype(float)
    loss_y = np.minimum(pw, 1 - pw).mean(axis=1)
    ess_y = 1.0 / np.square(post).sum(axis=1)
    total = predictive.sum()
    before = wrong_probability(wins, w0)
    return Value(
        before,
        float(predictive @ loss_y / total),
        float(predictive @ ess_y / total),
    )


class _Simulator:
    """Joint outcomes of many configurations, simulated once per configuration.

    Simulation s takes draw `truth[s]` as the truth (the draws in turn, so the prior
    predictive is sampled evenly); each configuration's successes come from its own seeded
    stream, so a configuration's outcomes do not depend on which others are in the batch.
    """

    def __init__(self, mu: np.ndarray, wins: np.ndarray, sims: int, seed: int, keys: Sequence[str]):
        m = mu.shape[0]
        self.sims = max(int(sims), 1)
        self.truth = (np.arange(self.sims) * m) // self.sims
        self.logp = np.log(np.clip(mu, _CLIP, 1 - _CLIP))
        self.log1mp = np.log1p(-np.clip(mu, _CLIP, 1 - _CLIP))
        self.mu = mu
        self.wins = wins.astype(float)
        self.seed = seed
        self.keys = list(keys)

    def loglik(self, k: int, samples: int) -> np.ndarray:
        digest = hashlib.sha256(self.keys[k].encode()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
        p = np.clip(self.mu[self.truth, k], 0.0, 1.0)
        y = rng.binomial(samples, p).astype(float)
        out = y[:, None] * self.logp[None, :, k] + (samples - y)[:, None] * self.log1mp[None, :, k]
        # float32 halves the memory of the batch search; weights are renormalised per row
        return np.asarray(out, dtype=np.float32)

    def loss(self, total: np.ndarray | None) -> tuple[float, float]:
        """Expected P(wrong) and effective draws after observing the simulated outcomes."""
        if total is None:
            return wrong_probability(self.wins.astype(bool)), float(self.wins.shape[0])
        w = np.exp(total - total.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        p = w @ self.wins
        return float(np.minimum(p, 1 - p).mean()), float((1.0 / np.square(w).sum(axis=1)).mean())


# --- the plan ----------------------------------------------------------------------------------
@dataclass
class Plan:
    """The ranked candidates and the batch chosen within the GPU-hour budget."""

    targets: list[Target]
    p_sparse: list[float]
    loss: float
    table: pl.DataFrame
    batch: list[Candidate]
    batch_loss: float
    batch_ess: float
    gpu_hours: float
    n_draws: int
    sims: int
    template: GridTemplate
    warnings: list[str] = field(default_factory=list)
    grid_seed: int | None = None

    @property
    def batch_hours(self) -> float:
        return float(sum(c.gpu_hours for c in self.batch))

    def grid(self) -> dict[str, Any]:
        """The batch as a sweep grid (the parsed TOML)."""
        if not self.batch:
            raise PlanError("the plan holds no batch to write")
        seed = self.template.seed if self.grid_seed is None else self.grid_seed
        return _grid_dict(self.template, self.batch, seed)

    def to_toml(self) -> str:
        head = [
            f"# planned by scalelaw plan: {len(self.batch)} configurations, "
            f"{self.batch_hours:.3g} of {self.gpu_hours:g} GPU-hours",
            *(
                f"# target {t.label}: P(sparse better) = {p:.3f} now"
                for t, p in zip(self.targets, self.p_sparse, strict=True)
            ),
            f"# expected P(wrong decision): {self.loss:.3f} now, {self.batch_loss:.3f} after "
            "this batch",
        ]
        return "\n".join(head) + "\n" + dumps_toml(self.grid())

    def write(self, path: str | Path) -> Path:
        """Write the grid, checked first to be exactly the batch as `scalelaw measure` reads it."""
        from scalelaw.measure.grid import load_grid, parse_grid

        path = Path(path)
        text = self.to_toml()
        # a fresh seed changes every id, so compare the configurations under the old seed
        seed = self.template.seed
        parsed = parse_grid(tomllib.loads(text), str(path)).configurations()
        if {replace(c, seed=seed).compute_id for c in parsed} != {c.key for c in self.batch}:
            raise PlanError(f"{path}: the grid would not hold exactly the planned batch")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        load_grid(path)
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": [
                {"seq_len": t.seq_len, "budget": t.budget or "mean", "p_sparse_better": p}
                for t, p in zip(self.targets, self.p_sparse, strict=True)
            ],
            "p_wrong": self.loss,
            "p_wrong_after_batch": self.batch_loss,
            "batch_effective_draws": self.batch_ess,
            "gpu_hours_budget": self.gpu_hours,
            "batch_gpu_hours": self.batch_hours,
            "n_draws": self.n_draws,
            "simulations": self.sims,
            "batch": [c.config.label() for c in self.batch],
            "candidates": self.table.to_dicts(),
            "warnings": self.warnings,
        }


def _axes(items: Sequence[Candidate]) -> dict[str, set[Any]]:
    return {
        "models": {c.config.model for c in items},
        "lengths": {int(c.config.seq_len) for c in items},
        "compression": {float(c.config.compression) for c in items},
        "methods": {(c.config.method, c.config.method_params) for c in items},
        "tasks": {(c.config.task, c.config.task_params) for c in items},
    }


def _grid_dict(template: GridTemplate, items: Sequence[Candidate], seed: int) -> dict[str, Any]:
    ax = _axes(items)
    samples = {c.samples for c in items}
    if len(samples) != 1:
        raise PlanError("a batch has one sample count")

    def ordered(pairs: set[tuple[str, str]], order: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return {name: json.loads(params) for name, params in order if (name, params) in pairs}

    out: dict[str, Any] = {
        "name": f"{template.name}-plan",
        "seed": seed,
        "samples": samples.pop(),
        "lengths": sorted(ax["lengths"]),
        "compression": sorted(ax["compression"]),
        "models": [m for m in template.models if m in ax["models"]],
        "dtype": template.dtype,
    }
    if template.max_new_tokens:
        out["max_new_tokens"] = template.max_new_tokens
    out["methods"] = ordered(ax["methods"], template.methods)
    out["tasks"] = ordered(ax["tasks"], template.tasks)
    return out


def _hull_keys(template: GridTemplate, items: Sequence[Candidate]) -> list[str]:
    """Compute ids of every configuration the cross product of `items` makes a sweep run."""
    from scalelaw.measure.grid import parse_grid

    grid = parse_grid(_grid_dict(template, items, template.seed), "<batch>")
    return list(dict.fromkeys(c.compute_id for c in grid.configurations()))


def _flag_degenerate(src: Any) -> list[str]:
    draws = getattr(src, "draws", None)
    if not isinstance(draws, dict) or getattr(src, "n_draws", 1) < 2:
        return []
    flat = [k for k, v in draws.items() if np.ndim(v) == 1 and np.ptp(v) == 0]
    if not flat:
        return []
    return [
        f"parameter(s) {', '.join(sorted(flat))} take one value in every draw: the data do not "
        "identify them (a bootstrap cannot move them), so their uncertainty and the value of "
        "measuring it are missing; fit with the bayes backend"
    ]


def plan(
    source: Any,
    candidates: Candidates,
    targets: Sequence[Target],
    architectures: Sequence[Architecture],
    *,
    gpu_hours: float,
    cost_fn: CostFn | None = None,
    compressions: Sequence[float] | None = None,
    tasks: Sequence[str] | None = None,
    max_draws: int = 1000,
    sims: int = 512,
    pool: int = 40,
    seed: int = 0,
    min_gain: float = MIN_GAIN,
    grid_seed: int | None = None,
    progress: ProgressFn | None = None,
) -> Plan:
    """Rank candidate measurements by EVSI per GPU-hour and choose a batch within `gpu_hours`.

    `source` is a fit, stacked fit or fit file with posterior (or bootstrap) draws, or a data
    table, which is fitted with the law family (`scalelaw.fits.family.fit_family`). The decision
    at each target averages the score over `tasks` (default: every task of the source); its
    cost is `cost_fn(arch, L, C)` (default: prefill FLOPs). The loss is P(wrong decision),
    averaged over targets. `pool` candidates with the best EVSI per GPU-hour are considered for
    the batch, whose value is estimated jointly from `sims` simulated outcomes (seeded).
    """
    from scalelaw.fits import levels as levels_of
    from scalelaw.fits import predict_draws
    from scalelaw.fits.family import load_or_fit
    from scalelaw.frontier.isocost import STUDY_COMPRESSIONS

    if not targets:
        raise PlanError("give at least one target (e.g. 'L=128K,budget=4e16')")
    if not gpu_hours > 0:
        raise PlanError(f"the GPU-hour budget must be positive, got {gpu_hours}")
    if not candidates.items:
        raise PlanError("no candidate configurations")
    src = load_or_fit(source)
    known = levels_of(src)
    others = [k for k in known if k != "task"]
    if others:
        raise PlanError(
            f"the fit has group effects by {', '.join(others)}; planning handles task effects only"
        )
    task_levels = list(known.get("task", []))
    chosen = list(tasks) if tasks else task_levels
    unknown = [t for t in chosen if task_levels and t not in task_levels]
    if unknown:
        raise PlanError(f"task '{unknown[0]}' is not a task of the fit ({', '.join(task_levels)})")
    if cost_fn is None:
        from scalelaw.frontier.decide import FlopsCost

        cost_fn = FlopsCost()
    configs = decision_configs(architectures, targets, cost_fn, compressions or STUDY_COMPRESSIONS)
    base = configs.select("params", "seq_len", "compression")
    decision_rows = (
        pl.concat([base.with_columns(pl.lit(t).alias("task")) for t in chosen]) if chosen else base
    )
    items = candidates.items
    if task_levels and any(c.level is None for c in items):
        raise PlanError("the candidates were read without the fit's tasks (pass levels=...)")
    cand_rows = pl.DataFrame([c.point() for c in items])
    if chosen:
        cand_rows = cand_rows.select(decision_rows.columns)
    else:
        cand_rows = cand_rows.select(base.columns)
    # one prediction call, so that draw i is the same parameter draw in both blocks
    mu_all = np.asarray(
        predict_draws(src, pl.concat([decision_rows, cand_rows]), max_draws, joint=True),
        dtype=float,
    )
    if not np.all(np.isfinite(mu_all)):
        raise PlanError("the fit predicts non-finite scores")
    if mu_all.min() < -1e-9 or mu_all.max() > 1 + 1e-9:
        raise PlanError("planning needs a law of scores in [0, 1] (a binomial view of samples)")
    m = mu_all.shape[0]
    if m < 2:
        raise PlanError(
            "planning needs posterior draws; a published card or a point fit has one "
            "(fit data with the bayes or lsq backend)"
        )
    n_dec = decision_rows.height
    mu_dec = mu_all[:, :n_dec]
    if chosen:
        mu_dec = mu_dec.reshape(m, len(chosen), base.height).mean(axis=1)
    mu_c = mu_all[:, n_dec:]
    wins = sparse_wins(mu_dec, configs, targets)
    p_now = _p_sparse(wins, None)
    loss_now = wrong_probability(wins)
    notes = _flag_degenerate(src)
    headline = src.headline() if hasattr(src, "headline") else None
    if headline:
        notes.append(f"this fit is {headline}")
    if loss_now == 0:
        said = "; ".join(
            f"{t.label}: P(sparse better) = {p:.2f}" for t, p in zip(targets, p_now, strict=True)
        )
        raise PlanError(
            f"nothing to plan: every one of the {m} draws makes the same decision ({said})"
            + (f"; note: {notes[0]}" if notes else "")
        )

    values: list[Value] = []
    tick = progress("value of each candidate", len(items)) if progress else None
    for k, c in enumerate(items):
        values.append(evsi(mu_c[:, k], c.samples, wins))
        if tick:
            tick(1)
    hours = np.array([c.gpu_hours for c in items])
    gain = np.array([v.evsi for v in values])
    ratio = gain / hours
    order = sorted(range(len(items)), key=lambda k: (-ratio[k], k))
    collapsed = [k for k in range(len(items)) if values[k].ess < max(ESS_SHARE * m, 10)]

    sim = _Simulator(mu_c, wins, sims, seed, [c.key for c in items])
    batch_idx, batch_loss, batch_ess = _greedy(
        items, candidates.template, sim, order, gain, gpu_hours, pool, min_gain, progress
    )
    if not batch_idx:
        fits = [k for k in order if hours[k] <= gpu_hours]
        if not fits:
            raise PlanError(
                f"no candidate fits in {gpu_hours:g} GPU-hours (the cheapest needs "
                f"{hours.min():.3g})"
            )
        raise PlanError(
            f"no candidate within {gpu_hours:g} GPU-hours lowers the expected P(wrong) by "
            f"{min_gain:g} or more (best: {gain[fits].max():.2g})"
            + (f"; note: {notes[0]}" if notes else "")
        )
    in_batch = set(batch_idx)
    rank = {k: r + 1 for r, k in enumerate(order)}
    table = pl.DataFrame(
        {
            "rank": [rank[k] for k in order],
            "model": [items[k].config.model for k in order],
            "size": [items[k].arch.size for k in order],
            "task": [items[k].config.task for k in order],
            "seq_len": [int(items[k].config.seq_len) for k in order],
            "method": [items[k].config.method for k in order],
            "compression": [float(items[k].config.compression) for k in order],
            "samples": [items[k].samples for k in order],
            "gpu_hours": [float(hours[k]) for k in order],
            "p_wrong_after": [values[k].loss_after for k in order],
            "reduction": [float(gain[k]) for k in order],
            "reduction_per_gpu_hour": [float(ratio[k]) for k in order],
            "effective_draws": [values[k].ess for k in order],
            "cost_source": [items[k].cost_source for k in order],
            "in_batch": [k in in_batch for k in order],
        }
    )
    if collapsed:
        notes.append(
            f"the importance weights collapse for {len(collapsed)} of {len(items)} candidates "
            f"(fewer than {max(ESS_SHARE * m, 10):.0f} of {m} effective draws after the "
            "measurement): their values rest on few draws; measure, refit and plan again"
        )
    if batch_ess < max(ESS_SHARE * m, 10):
        notes.append(
            f"after the whole batch about {batch_ess:.0f} of {m} draws keep weight: the "
            "expected P(wrong) after it is coarse; refit after measuring"
        )
    return Plan(
        list(targets),
        [float(p) for p in p_now],
        loss_now,
        table,
        [items[k] for k in sorted(batch_idx)],
        batch_loss,
        batch_ess,
        float(gpu_hours),
        m,
        sim.sims,
        candidates.template,
        notes,
        grid_seed,
    )


def _greedy(
    items: list[Candidate],
    template: GridTemplate,
    sim: _Simulator,
    order: list[int],
    gain: np.ndarray,
    budget_hours: float,
    pool: int,
    min_gain: float,
    progress: ProgressFn | None,
) -> tuple[list[int], float, float]:
    """Grow the batch's cross product by the addition with the best joint gain per GPU-hour.

    The classic knapsack safeguard applies: the result is compared with the best single
    addition, and the better of the two is kept.
    """
    index = {c.key: k for k, c in enumerate(items)}
    hours = np.array([c.gpu_hours for c in items])
    considered = [k for k in order if gain[k] > 0 and hours[k] <= budget_hours][: max(pool, 1)]
    loglik: dict[int, np.ndarray] = {}

    def ll(k: int) -> np.ndarray:
        if k not in loglik:
            loglik[k] = sim.loglik(k, items[k].samples)
        return loglik[k]

    def extension(chosen: list[int], k: int) -> list[int] | None:
        if chosen and items[k].samples != items[chosen[0]].samples:
            return None
        keys = _hull_keys(template, [items[i] for i in (*chosen, k)])
        if any(key not in index for key in keys):
            return None
        have = set(chosen)
        return [index[key] for key in keys if index[key] not in have]

    loss0, ess0 = sim.loss(None)

    def run() -> tuple[list[int], float, float]:
        chosen: list[int] = []
        total: np.ndarray | None = None
        loss, ess = loss0, ess0
        spent = 0.0
        tick = progress("choosing the batch", None) if progress else None
        while True:
            best: tuple[float, list[int], np.ndarray, float, float] | None = None
            for k in considered:
                if k in chosen:
                    continue
                new = extension(chosen, k)
                if not new or spent + hours[new].sum() > budget_hours * (1 + 1e-12):
                    continue
                add = _stack_sum([ll(i) for i in new])
                trial = add if total is None else total + add
                trial_loss, trial_ess = sim.loss(trial)
                score = (loss - trial_loss) / float(hours[new].sum())
                if best is None or score > best[0]:
                    best = (score, new, trial, trial_loss, trial_ess)
            if best is None or loss - best[3] < min_gain:
                break
            _, new, total, loss, ess = best
            chosen += new
            spent += float(hours[new].sum())
            if tick:
                tick(1)
            if len(loglik) > 2 * max(pool, 1):
                # bounded memory: streams are seeded per configuration, so recomputing is exact
                loglik.clear()
        return chosen, loss, ess

    greedy = run()
    single = _best_single(considered, extension, ll, sim, hours, budget_hours, loss0, min_gain)
    if single is not None and single[1] < greedy[1] - 1e-12:
        return single
    return greedy


def _stack_sum(arrays: list[np.ndarray]) -> np.ndarray:
    out = arrays[0].copy()
    for a in arrays[1:]:
        out += a
    return out


def _best_single(
    considered: list[int],
    extension: Callable[[list[int], int], list[int] | None],
    ll: Callable[[int], np.ndarray],
    sim: _Simulator,
    hours: np.ndarray,
    budget_hours: float,
    loss0: float,
    min_gain: float,
) -> tuple[list[int], float, float] | None:
    best: tuple[list[int], float, float] | None = None
    for k in considered:
        new = extension([], k)
        if not new or hours[new].sum() > budget_hours * (1 + 1e-12):
            continue
        loss, ess = sim.loss(_stack_sum([ll(i) for i in new]))
        if loss0 - loss >= min_gain and (best is None or loss < best[1]):
            best = (new, loss, ess)
    return best


# --- TOML ----------------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    raise PlanError(f"cannot write {v!r} to TOML")


def _toml_key(key: str) -> str:
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A grid as TOML: scalars and lists first, then tables of inline parameter tables."""
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)
    ]
    for k, v in data.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{_toml_key(k)}]"]
            lines += [f"{_toml_key(name)} = {_toml_value(params)}" for name, params in v.items()]
    return "\n".join(lines) + "\n"
