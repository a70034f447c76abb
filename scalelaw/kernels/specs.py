"""The method spec: what every sparse attention method is, in one torch-free place.

Each method has a name, its phases, a one-line description, how C sets its budget, its knobs
(our default, the reference study's value, a one-line meaning, the allowed range) and the range
of C it can reach at a length. The kernels take their defaults and knob checks from here; grid
validation, `scalelaw kernels list` and the cost model read the same objects, so they cannot
drift apart. Importing this module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scalelaw.errors import ScalelawError
from scalelaw.kernels import budgets

PHASES: tuple[str, ...] = ("prefill", "decode")
BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")

#: Achieved compression within this relative distance of the request counts as reached: the
#: kernels note a result further off, grid validation allows a request this far beyond a
#: method's range, and `scalelaw measure` records a run only when its achieved C is within it
#: of the label, abs(achieved / C - 1) <= tolerance (the default of a grid's
#: `compression_tolerance`; a run further off is a failed run).
COMPRESSION_TOLERANCE = 0.10

KnobValue = int | float | bool | str | None

#: How vertical-slash and flexprefill turn C into a budget: "study" reads the reference study's
#: per-(length, level) tables and records the C that results; "exact" solves the budget per
#: layer call so that every call hits C.
BUDGET_RULES: tuple[str, ...] = ("study", "exact")


def is_dense(compression: float) -> bool:
    """Whether C asks for dense attention: the one place that decides it.

    At C = 1 every method reproduces dense attention, so a configuration at C = 1 is the dense
    one (grid identities), the model runs plain SDPA (measurement routing) and the PyTorch path
    skips the estimation (kernels). C below 1 is refused wherever C enters, so this is C = 1.
    """
    return float(compression) <= 1.0


class KernelInputError(ScalelawError):
    """Bad input to a sparse attention method; the message names the method and the argument."""


@dataclass(frozen=True)
class Knob:
    """One setting of a method.

    `kind` is int, float, bool or str; `low`/`high` bound numbers, `choices` strings;
    `optional` allows None, which means the value is derived from C (flexprefill's alpha).
    """

    name: str
    default: KnobValue
    study: KnobValue | str
    meaning: str
    kind: type = int
    low: float | None = 0
    high: float | None = None
    optional: bool = False
    choices: tuple[str, ...] = ()

    def check(self, method: str, value: Any) -> KnobValue:
        """The value if it is allowed, else a KernelInputError naming method and knob."""
        where = f"{method}: knob {self.name!r}"
        if value is None and self.optional:
            return None
        if self.kind is bool:
            if not isinstance(value, bool):
                raise KernelInputError(f"{where} must be a bool, got {value!r}")
            return value
        if self.kind is str:
            if value not in self.choices:
                raise KernelInputError(
                    f"{where} must be one of {list(self.choices)}, got {value!r}"
                )
            return str(value)
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise KernelInputError(f"{where} must be a non-negative int, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KernelInputError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise KernelInputError(f"{where} must be finite, got {value!r}")
        if self.low is not None and value < self.low:
            bound = "non-negative" if self.low == 0 else f">= {self.low:g}"
            raise KernelInputError(f"{where} must be {bound}, got {value!r}")
        if self.high is not None and value > self.high:
            raise KernelInputError(
                f"{where} must be in [{self.low:g}, {self.high:g}], got {value!r}"
            )
        return value


Reach = Callable[[Mapping[str, Any], int], tuple[float, float]]


@dataclass(frozen=True)
class MethodSpec:
    """Everything about a method that does not need torch."""

    name: str
    phases: tuple[str, ...]
    description: str
    budget_rule: str
    knobs: tuple[Knob, ...]
    reach: Reach
    # Why the Triton kernel cannot run these knobs (None: it can); `auto` then uses PyTorch.
    triton_problem: Callable[[Mapping[str, Any]], str | None] = lambda kn: None

    def defaults(self) -> dict[str, KnobValue]:
        return {k.name: k.default for k in self.knobs}

    def study_values(self) -> dict[str, KnobValue | str]:
        return {k.name: k.study for k in self.knobs}

    def knob_help(self) -> dict[str, str]:
        return {k.name: k.meaning for k in self.knobs}

    def knob_table(self) -> list[dict[str, Any]]:
        """Per knob: name, our default, the study's value, its meaning, type and allowed range
        (JSON-ready; `scalelaw kernels list --format json`)."""
        return [
            {
                "name": k.name,
                "default": k.default,
                "study": k.study,
                "help": k.meaning,
                "type": k.kind.__name__,
                "low": k.low if k.kind in (int, float) else None,
                "high": k.high if k.kind in (int, float) else None,
                **({"choices": list(k.choices)} if k.choices else {}),
                "optional": k.optional,
            }
            for k in self.knobs
        ]

    def resolve(
        self, overrides: Mapping[str, Any], base: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """`base` (default: the defaults) with `overrides` applied, every value checked."""
        out = dict(self.defaults() if base is None else base)
        by_name = {k.name: k for k in self.knobs}
        for key, value in overrides.items():
            if key not in by_name:
                raise KernelInputError(
                    f"{self.name}: unknown knob {key!r}; known knobs: {sorted(by_name)}"
                )
            out[key] = by_name[key].check(self.name, value)
        return out

    def reachable(
        self, seq_len: int, params: Mapping[str, Any] | None = None
    ) -> tuple[float, float]:
        """(c_min, c_max): the compression this method can reach at `seq_len` with `params`.

        c_max is what the always-kept parts alone cost, a ceiling rather than a promise that
        every C below it is met: for vertical-slash and flexprefill an upper bound (the pattern
        depends on the data); block-sparse budgets whole blocks, so at short lengths its C moves
        in steps; quest's is one decode step reading only the newest page while that page holds
        one token (over an answer the page fills, and the budget is whole pages); snapkv's counts
        the prompt alone (generated tokens are all kept). A run more than COMPRESSION_TOLERANCE
        off its request is a failed run in `scalelaw measure`.
        """
        if seq_len < 1:
            raise KernelInputError(f"{self.name}: seq_len must be >= 1, got {seq_len}")
        return self.reach(self.resolve(params or {}), int(seq_len))


def _power_of_two(value: int, low: int) -> bool:
    return value >= low and value & (value - 1) == 0


def _triton_block(kn: Mapping[str, Any]) -> str | None:
    bs = kn["block_size"]
    if not _power_of_two(bs, 16):
        return f"the Triton prefill kernel needs block_size a power of two >= 16, got {bs}"
    return None


def _triton_page(kn: Mapping[str, Any]) -> str | None:
    ps = kn["page_size"]
    if not _power_of_two(ps, 1):
        return f"the Triton decode kernel needs a power-of-two page_size, got {ps}"
    return None


def _reach_block_sparse(kn: Mapping[str, Any], length: int) -> tuple[float, float]:
    # in block pairs, the count block-sparse's labels are judged on (as the study counts it)
    k_min = kn["sink_blocks"] + kn["local_blocks"]
    return 1.0, budgets.block_pairs_compression(math.ceil(length / kn["block_size"]), k_min)


def _reach_lines(kn: Mapping[str, Any], length: int) -> tuple[float, float]:
    return 1.0, budgets.forced_lines_compression(
        length, kn["block_size"], kn["local_diagonals"], kn["sink_columns"]
    )


def _reach_flexprefill(kn: Mapping[str, Any], length: int) -> tuple[float, float]:
    _, c_max = _reach_lines(kn, length)
    if kn["tau"] > 0:  # block-mode heads keep the first block and the diagonal at least
        c_max = max(c_max, budgets.block_compression(length, kn["block_size"], 2))
    return 1.0, c_max


def _reach_quest(kn: Mapping[str, Any], length: int) -> tuple[float, float]:
    return 1.0, length / budgets.quest_tokens_read(length, 0, kn["page_size"])


def _reach_snapkv(kn: Mapping[str, Any], length: int) -> tuple[float, float]:
    kept = max(1, budgets.protected_tokens(length, kn["sink_tokens"], kn["recent_tokens"]))
    return 1.0, length / kept


BUDGET_RULE_KNOB = Knob(
    "budget_rule",
    "study",
    "study",
    "'study': the study's per-(length, level) budget, C recorded as achieved; 'exact': "
    "budget solved per layer call to hit C",
    kind=str,
    low=None,
    choices=BUDGET_RULES,
)

BUDGET_LENGTH_KNOB = Knob(
    "budget_length",
    None,
    "the grid's length",
    "length whose study budget is used (unset: the prompt's own length; scalelaw measure sets "
    "the grid's nominal length, as the study fixed one budget per length)",
    low=1,
    optional=True,
)

#: Knobs whose study value depends on the task (the grid's value, when set, wins): the study
#: scores vertical-slash patterns from the last 512 queries on needle and story retrieval.
TASK_KNOBS: dict[str, dict[str, dict[str, KnobValue]]] = {
    "vertical-slash": {"window": {"niah-multikey": 512, "story-retrieval": 512}},
}


def task_knobs(method: str, task: str) -> dict[str, KnobValue]:
    """The knob values the study used for `method` on `task` where they differ by task."""
    return {
        knob: by_task[task]
        for knob, by_task in TASK_KNOBS.get(method, {}).items()
        if task in by_task
    }


def study_rule(method: str, knobs: Mapping[str, Any]) -> bool:
    """Whether a run's budget comes from the study's tables (its C is then what it achieved)."""
    return knobs.get("budget_rule") == "study"


BLOCK_SIZE_HELP = "tokens per query and key block (the study's 16; 64 or 128 suit GPUs)"
WINDOW_VS = "last queries whose attention scores columns and diagonals (512 for retrieval tasks)"
TILE_HELP = "query block and key tile width: each kept diagonal costs one tile per query block"

SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        MethodSpec(
            name="dense",
            phases=("prefill", "decode"),
            description="full causal attention (torch SDPA); the C = 1 baseline of both phases",
            budget_rule="always C = 1; a requested C > 1 is reported as not reachable",
            knobs=(),
            reach=lambda kn, length: (1.0, 1.0),
        ),
        MethodSpec(
            name="block-sparse",
            phases=("prefill",),
            description=(
                "top-k key blocks per query block from mean-pooled q and k; first block, "
                "diagonal and sub-diagonal always kept"
            ),
            budget_rule=(
                "one count k of key blocks per query block (the study's top_chunks); k is the "
                "integer whose C in block pairs is closest to C, as the study chose it; rows "
                "with fewer causal blocks keep all"
            ),
            knobs=(
                Knob("block_size", 16, 16, BLOCK_SIZE_HELP, low=1),
                Knob("sink_blocks", 1, 1, "first key blocks always kept"),
                Knob(
                    "local_blocks",
                    2,
                    2,
                    "blocks up to the diagonal always kept (2: diagonal and sub-diagonal)",
                    low=1,
                ),
            ),
            reach=_reach_block_sparse,
            triton_problem=_triton_block,
        ),
        MethodSpec(
            name="vertical-slash",
            phases=("prefill",),
            description=(
                "top key columns and top diagonals per head, scored by the last window of "
                "queries; each kept diagonal runs as a tile-wide range per query block "
                "(MInference's index)"
            ),
            budget_rule=(
                "equal numbers n of columns and diagonals per head; budget_rule 'study' (the "
                "default): n is the study's count for (L, level C), interpolated as a power of L "
                "and C where it published none, and the row records the C that results; "
                "'exact': n is solved per layer call so that the cells the kernel computes "
                "(block x block per tile, block per single column) are closest to L(L+1)/2C"
            ),
            knobs=(
                BUDGET_RULE_KNOB,
                BUDGET_LENGTH_KNOB,
                Knob("window", 256, 256, WINDOW_VS, low=1),
                Knob("sink_columns", 4, 4, "first key columns always kept"),
                Knob(
                    "local_diagonals",
                    64,
                    64,
                    "diagonals nearest the main one always kept (offsets 0..n-1)",
                    low=1,
                ),
                Knob("block_size", 64, 64, TILE_HELP, low=1),
            ),
            reach=_reach_lines,
            triton_problem=_triton_block,
        ),
        MethodSpec(
            name="flexprefill",
            phases=("prefill",),
            description=(
                "per-head numbers of columns and of diagonals, each the fewest lines whose "
                "attention mass reaches the coverage alpha, at least min_budget; optional "
                "query-aware block mode (tau > 0)"
            ),
            budget_rule=(
                "budget_rule 'study' (the default): alpha and min_budget are the study's pair "
                "for (L, level C) (nearest length and level where it published none; alpha = 0 "
                "keeps the vertical-slash count), and the row records the C that results; "
                "'exact' with alpha unset: alpha is solved so the heads' mean computed cells "
                "give 1/C, and a C beyond what min_budget lines allow runs the study's alpha = 0 "
                "rows (every head keeps the uniform vertical-slash count); alpha set: "
                "max(min_budget, lines for mass alpha) columns and diagonals per head, whatever C"
            ),
            knobs=(
                BUDGET_RULE_KNOB,
                BUDGET_LENGTH_KNOB,
                Knob(
                    "window", 512, 512, "last queries used to estimate each head's pattern", low=1
                ),
                Knob(
                    "alpha",
                    None,
                    0.65,
                    "coverage threshold; unset: from C (the study's table, or solved with "
                    "budget_rule 'exact')",
                    kind=float,
                    high=1,
                    optional=True,
                ),
                Knob("min_budget", 512, 512, "fewest columns (and fewest diagonals) a head keeps"),
                Knob(
                    "tau",
                    0.0,
                    0.0,
                    "Jensen-Shannon distance below which a head uses block "
                    "selection (0: query-aware mode off)",
                    kind=float,
                ),
                Knob(
                    "block_size", 64, 64, TILE_HELP + "; also the block of block-mode heads", low=1
                ),
                Knob("sink_columns", 4, 4, "first key columns always kept"),
                Knob("local_diagonals", 64, 64, "nearest diagonals always kept", low=1),
            ),
            reach=_reach_flexprefill,
            triton_problem=_triton_block,
        ),
        MethodSpec(
            name="quest",
            phases=("decode",),
            description=(
                "per-page key min/max bounds; each step reads the top pages of the full cache "
                "(scores summed over the query heads of a GQA group) plus the newest page"
            ),
            budget_rule=(
                "budget = round(prompt length / C / page_size) pages, held fixed while "
                "generating, plus the page of the newest token (C = 1 reads every page); "
                "achieved C = cache length / tokens read"
            ),
            knobs=(Knob("page_size", 16, 16, "tokens per page", low=1),),
            reach=_reach_quest,
            triton_problem=_triton_page,
        ),
        MethodSpec(
            name="snapkv",
            phases=("decode",),
            description=(
                "after prefill keep the top tokens per KV head by pooled attention of the last "
                "window of prompt queries; first and last tokens always kept; the rest is "
                "evicted"
            ),
            budget_rule=(
                "capacity per KV head = round(prompt length / C) tokens, sink and recent tokens "
                "included; generated tokens are all kept"
            ),
            knobs=(
                Knob(
                    "window",
                    256,
                    256,
                    "last prompt queries whose attention scores the tokens",
                    low=1,
                ),
                Knob(
                    "kernel_size",
                    21,
                    21,
                    "average pooling width along the sequence (1: none)",
                    low=1,
                ),
                Knob("sink_tokens", 4, 4, "first tokens always kept"),
                Knob("recent_tokens", 128, 128, "last prompt tokens always kept"),
            ),
            reach=_reach_snapkv,
        ),
    )
}

SPECS["ada-snapkv"] = MethodSpec(
    name="ada-snapkv",
    phases=("decode",),
    description=(
        "as snapkv, but tokens scored by the maximum over the window and over the query heads "
        "of a group, and one top-k across the KV heads of a layer with a per-head floor"
    ),
    budget_rule=(
        "layer budget = KV heads x round(prompt length / C); each head first keeps its floor, "
        "max(floor_fraction x capacity, sink + recent tokens), the rest goes to the best tokens "
        "of any head"
    ),
    knobs=(
        *SPECS["snapkv"].knobs,
        Knob(
            "floor_fraction",
            0.2,
            0.2,
            "share of a head's capacity it keeps whatever the other heads score",
            kind=float,
            high=1,
        ),
    ),
    reach=_reach_snapkv,
)


def method_names(phase: str | None = None) -> list[str]:
    """Method names, optionally only those with the given phase."""
    if phase is not None and phase not in PHASES:
        raise KernelInputError(f"phase must be one of {PHASES}, got {phase!r}")
    return [n for n, s in SPECS.items() if phase is None or phase in s.phases]


def get_spec(name: str) -> MethodSpec:
    if name not in SPECS:
        raise KernelInputError(f"unknown method {name!r}; known methods: {list(SPECS)}")
    return SPECS[name]


def reachable(method: str, params: Mapping[str, Any] | None, seq_len: int) -> tuple[float, float]:
    """(c_min, c_max) the method can reach at `seq_len` with knobs `params` (defaults filled)."""
    return get_spec(method).reachable(seq_len, params)


def unreachable_reason(
    method: str, params: Mapping[str, Any] | None, seq_len: int, compression: float
) -> str | None:
    """Why `method` cannot reach `compression` at `seq_len` (None when it can).

    A request within the tolerance of the range counts as reachable: the method then runs at
    the nearest end and reports the C it achieved.
    """
    c_min, c_max = reachable(method, params, seq_len)
    tol = COMPRESSION_TOLERANCE
    if c_min * (1 - tol) <= compression <= c_max * (1 + tol):
        return None
    return (
        f"{method} cannot reach C={compression:g} at L={seq_len}: "
        f"it reaches C {c_min:g} to {c_max:.3g} at this length"
    )


def shortfall(requested: float, achieved: float, factor: float = 2.0) -> str | None:
    """Why a run's achieved C is below 1/`factor` of the request (None when it is not).

    `scalelaw measure` no longer uses it: a sweep judges a run against its label with the
    grid's `compression_tolerance` (COMPRESSION_TOLERANCE by default), which is stricter.
    """
    if requested > 1 and achieved * factor < requested:
        return f"achieved C={achieved:.3g} is below 1/{factor:g} of the requested C={requested:g}"
    return None


def indexing_flops(
    method: str,
    knobs: Mapping[str, Any] | None,
    seq_len: float,
    heads: int,
    kv_heads: int,
    head_dim: int,
    *,
    causal_half: bool = False,
) -> float:
    """FLOPs one layer spends at prefill choosing what to compute, with the method's own knobs."""
    spec = get_spec(method)
    if "prefill" not in spec.phases:
        raise KernelInputError(f"{method} has no prefill phase and no prefill indexing cost")
    kn = spec.resolve({k: v for k, v in (knobs or {}).items() if k in spec.defaults()})
    L = float(seq_len)

    def blocks(bs: float) -> float:
        # pooled q.k per block pair plus pooling q and k
        nb = L / bs
        pairs = nb * (nb + 1) / 2 if causal_half else nb * nb
        return (2 * head_dim + 1) * heads * pairs + L * (heads + kv_heads) * head_dim

    def last_queries(window: float) -> float:
        # last queries against all keys: q.k, softmax, column and diagonal sums
        return heads * min(window, L) * L * (2 * head_dim + 3 + 2)

    if method == "block-sparse":
        return blocks(kn["block_size"])
    if method == "vertical-slash":
        return last_queries(kn["window"])
    if method == "flexprefill":
        # block selection only runs for query-aware heads (tau > 0); charged as if all were
        return last_queries(kn["window"]) + (blocks(kn["block_size"]) if kn["tau"] > 0 else 0.0)
    return 0.0


def indexing_elements(
    method: str, knobs: Mapping[str, Any] | None, seq_len: float, kv_heads: int, head_dim: int
) -> float:
    """Elements one layer reads per decode step to choose what to read (quest's page bounds)."""
    spec = get_spec(method)
    if "decode" not in spec.phases:
        raise KernelInputError(f"{method} has no decode phase and no decode indexing cost")
    if method != "quest":
        return 0.0
    kn = spec.resolve({k: v for k, v in (knobs or {}).items() if k in spec.defaults()})
    return 2 * kv_heads * head_dim * float(seq_len) / kn["page_size"]
