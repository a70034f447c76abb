"""Sweep grids from TOML: models x methods x tasks x lengths x ratios, expanded to configurations.

```toml
name = "example"
seed = 0
samples = 10
lengths = [256, 512]
compression = [1, 2, 4]
budgets = [64]                     # optional: token budgets, each the ratio L / budget per length
models = ["smollm2-135m"]
dtype = "auto"                     # optional: auto (bf16 on GPU, fp32 on CPU), float32, ...
max_new_tokens = 0                 # optional: cap on answer tokens (0: each task's own cap)
compression_tolerance = 0.10       # optional: how far achieved C may be from its label

[methods]                          # or: methods = ["dense", "quest"]
dense = {}
quest = { page_size = 16 }

[tasks]                            # or: tasks = ["niah-multikey"]
niah-multikey = { needles = 4, queries = 1 }
variable-tracking = {}

[[combine]]                        # optional: a prefill method and a decode method in one run
prefill = { method = "block-sparse", compression = 4, block_size = 16 }
decode = { method = "quest", compression = [4, 8], page_size = 16 }
```

`dense` runs only at C = 1. Every other method runs at every ratio; its C = 1 point is the dense
measurement (a method at C = 1 reproduces dense attention), computed once and shared.

A budget b becomes the ratio C = L / b at each length L. A budget >= L would keep the whole
prompt (C <= 1): it is skipped at that length with a note, since the dense point is already the
C = 1 of the ratios. A budget does not change the numbers of a run at that C, so it is not part
of the configuration's identity: a ratio that a budget also gives is one configuration, whose
row records the budget.

A `[[combine]]` entry names one prefill method and one decode method, each with its knobs and its
ratio (a number or a list; lists give every pair). Its configurations carry the prefill half in
`method`, `method_params` and `compression` and the decode half in `decode_method`,
`decode_params` and `decode_compression`.

A grid asking a method for a ratio it cannot reach at a length (the method spec's `reachable`)
is refused up front, naming the method, the length and the ratio (and the budget or the combine
entry it came from).

`compression_tolerance` (default 0.10) judges each run after it ran: a run whose achieved C is
more than this relative distance from its label C, `abs(achieved / C - 1) > tolerance`, is a
failed run, not a row (C = 1 is exempt). It changes no numbers, so it is not part of any
configuration's identity.

`GridSchema` declares the keys, their types and ranges; its errors are reported as one line
naming the file and the key. What needs the method specs (reachable ratios, a combine half's
method and knobs) is checked after it.
This module is torch-free.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from scalelaw.errors import ScalelawError
from scalelaw.kernels.specs import (
    COMPRESSION_TOLERANCE,
    SPECS,
    KernelInputError,
    is_dense,
    unreachable_reason,
)
from scalelaw.schema import first_error, unknown_keys

DENSE = "dense"
#: The `phase` label of a combined run's rows.
COMBINED_PHASE = "prefill+decode"
#: Fields that default to None and stay out of the identity while None, so configurations of
#: grids without budgets or combined runs keep the ids they had before these existed.
_OPTIONAL = ("decode_method", "decode_params", "decode_compression")


class GridError(ScalelawError):
    """A grid file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Configuration:
    """One measured point: every field that can change its numbers.

    A combined run has a decode half (`decode_method` ...); the prefill half is then `method`,
    `method_params` and `compression`. `budget` is the token budget the ratio came from (None
    when the grid gave the ratio): a label of the row, not part of the identity.
    """

    model: str
    method: str
    method_params: str  # canonical JSON
    task: str
    task_params: str  # canonical JSON
    seq_len: int
    compression: float
    samples: int
    seed: int
    dtype: str
    max_new_tokens: int = 0  # 0: the task's own cap
    budget: int | None = None
    decode_method: str | None = None
    decode_params: str | None = None  # canonical JSON
    decode_compression: float | None = None

    @property
    def combined(self) -> bool:
        return self.decode_method is not None

    @property
    def method_label(self) -> str:
        """The table's `method`: the method's name, or `PREFILL+DECODE` for a combined run."""
        return f"{self.method}+{self.decode_method}" if self.combined else self.method

    def _identity(self) -> dict[str, Any]:
        # the budget is fixed by (seq_len, compression): it never changes the numbers
        fields = {k: v for k, v in asdict(self).items() if k != "budget"}
        for key in _OPTIONAL:
            if fields[key] is None:
                del fields[key]
        return fields

    @property
    def config_id(self) -> str:
        return _digest(self._identity())

    @property
    def compute_id(self) -> str:
        """Configurations with equal compute ids produce the same predictions (C = 1 -> dense).

        A combined run whose one half is at C = 1 runs the other half alone.
        """
        fields = self._identity()
        if self.combined:
            for key in _OPTIONAL:
                del fields[key]
            if is_dense(self.compression):
                fields.update(
                    method=self.decode_method,
                    method_params=self.decode_params,
                    compression=self.decode_compression,
                )
            elif self.decode_compression is None or not is_dense(self.decode_compression):
                return self.config_id
        if is_dense(fields["compression"]):
            fields.update(method=DENSE, method_params="{}")
        return _digest(fields)

    def label(self) -> str:
        if self.combined:
            ratio = f"C={self.compression:g}+{self.decode_compression:g}"
        else:
            ratio = f"C={self.compression:g}"
        budget = f" (budget {self.budget})" if self.budget is not None else ""
        return f"{self.model} {self.task} L={self.seq_len} {self.method_label} {ratio}{budget}"


@dataclass(frozen=True)
class Half:
    """One phase of a combined run: a method, its knobs and its ratios."""

    method: str
    params: str  # canonical JSON knobs
    compression: tuple[float, ...]


@dataclass(frozen=True)
class Combine:
    """A `[[combine]]` entry: the prefill method during the prompt, the decode method after."""

    prefill: Half
    decode: Half


@dataclass(frozen=True)
class Grid:
    name: str
    seed: int
    samples: int
    lengths: tuple[int, ...]
    compression: tuple[float, ...]
    models: tuple[str, ...]
    methods: tuple[tuple[str, str], ...]  # (name, canonical JSON params)
    tasks: tuple[tuple[str, str], ...]
    dtype: str
    source_hash: str
    max_new_tokens: int = 0
    budgets: tuple[int, ...] = ()
    combine: tuple[Combine, ...] = ()
    #: what the grid skipped and why (budgets >= a length), for the sweep to print
    notes: tuple[str, ...] = ()
    #: a run whose achieved C is further than this (relative) from its label C is a failed run
    compression_tolerance: float = COMPRESSION_TOLERANCE

    def ratios(self, length: int) -> list[tuple[float, int | None]]:
        """(C, budget) at `length`: the listed ratios, then each budget below the length."""
        out: dict[float, int | None] = dict.fromkeys(self.compression)
        for b in sorted(self.budgets, reverse=True):  # in order of C
            if b < length:
                out[length / b] = b  # a listed ratio that a budget also gives records it
        return list(out.items())

    def configurations(self) -> list[Configuration]:
        """Every configuration, ordered model > length > task > method > ratio (model loads once)."""
        out: dict[str, Configuration] = {}
        # lengths before tasks: a sweep stopped early has every task at the shorter lengths
        for model in self.models:
            for length in self.lengths:
                ratios = self.ratios(length)
                for task, task_params in self.tasks:
                    base = (model, task, task_params, length)
                    for c in self._single(base, ratios) + self._combined(base):
                        out.setdefault(c.config_id, c)
        return list(out.values())

    def _config(
        self, base: tuple[str, str, str, int], method: str, params: str, c: float, **extra: Any
    ) -> Configuration:
        model, task, task_params, length = base
        return Configuration(
            model,
            method,
            params,
            task,
            task_params,
            length,
            float(c),
            self.samples,
            self.seed,
            self.dtype,
            self.max_new_tokens,
            **extra,
        )

    def _single(
        self, base: tuple[str, str, str, int], ratios: list[tuple[float, int | None]]
    ) -> list[Configuration]:
        out = []
        for method, params in self.methods:
            for c, budget in ratios:
                if method != DENSE or is_dense(c):
                    out.append(self._config(base, method, params, c, budget=budget))
        return out

    def _combined(self, base: tuple[str, str, str, int]) -> list[Configuration]:
        return [
            self._config(
                base,
                entry.prefill.method,
                entry.prefill.params,
                cp,
                decode_method=entry.decode.method,
                decode_params=entry.decode.params,
                decode_compression=float(cd),
            )
            for entry in self.combine
            for cp in entry.prefill.compression
            for cd in entry.decode.compression
        ]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _shape(raw: Any) -> str | None:
    return "list" if isinstance(raw, list) else "table" if isinstance(raw, dict) else None


def _listed(raw: Any) -> Any:
    return raw if isinstance(raw, list) else [raw]


# Strict scalars: TOML hands over exact types, and a lax int would take `true` or `4.0`.
_Tokens = Annotated[list[Annotated[StrictInt, Field(ge=1)]], Strict(), Field(min_length=1)]
_Ratios = Annotated[list[Annotated[StrictFloat, Field(ge=1.0)]], Strict(), Field(min_length=1)]
_Names = Annotated[list[StrictStr], Strict(), Field(min_length=1)]
_Table = Annotated[dict[str, Annotated[dict[str, Any], Strict()]], Strict(), Field(min_length=1)]
#: `methods` and `tasks`: a list of names, or a table of name = { params }
_Named = Annotated[
    Annotated[_Names, Tag("list")] | Annotated[_Table, Tag("table")], Discriminator(_shape)
]


def _no_null(schema: dict[str, Any]) -> None:
    """An optional key is one left out: TOML has no null to set it to."""
    for prop in schema["properties"].values():
        kept = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
        if kept:
            (one,) = kept
            prop.update(one)
        if prop.get("default", ...) is None:
            del prop["default"]


class HalfSchema(BaseModel):
    """One half of a `[[combine]]` entry; its other keys are the method's knobs, which the
    method spec checks."""

    model_config = ConfigDict(extra="allow")

    method: StrictStr
    compression: Annotated[_Ratios, BeforeValidator(_listed)]  # one ratio is a list of one


class CombineSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefill: HalfSchema
    decode: HalfSchema


class GridSchema(BaseModel):
    """The keys of a grid TOML, their types and ranges.

    Fields are declared in the order their errors are reported when a grid has several.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null)

    name: StrictStr | None = None  # None: the file's stem
    seed: StrictInt = 0
    samples: Annotated[StrictInt, Field(ge=1)] = 10
    models: _Names
    dtype: StrictStr = "auto"
    max_new_tokens: Annotated[StrictInt, Field(ge=0)] = 0
    compression_tolerance: Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)] = (
        COMPRESSION_TOLERANCE
    )
    methods: _Named | None = None
    tasks: _Named
    compression: _Ratios | None = None
    budgets: _Tokens | None = None
    lengths: _Tokens
    combine: Annotated[list[CombineSchema], Strict()] | None = None

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.methods is None and self.combine is None:
            raise PydanticCustomError("grid", "missing key 'methods' (or '[[combine]]' entries)")
        if self.methods is not None and self.compression is None and self.budgets is None:
            raise PydanticCustomError("grid", "missing key 'compression' (or 'budgets')")
        if self.budgets is not None and self.methods is None:
            raise PydanticCustomError(
                "grid",
                "'budgets' apply to the methods of 'methods', which is absent; a [[combine]] "
                "half takes 'compression'",
            )
        if (
            self.methods is not None
            and all(m == DENSE for m in self.methods)
            and 1.0 not in (self.compression or ())
        ):
            raise PydanticCustomError("grid", "only 'dense' is listed but 'compression' lacks 1")
        return self


#: Kept for readers of the key list; the schema declares them.
KNOWN_KEYS = frozenset(GridSchema.model_fields)

_SCALARS = {
    "name": "'name' must be a string, got {!r}",
    "seed": "'seed' must be an integer, got {!r}",
    "samples": "'samples' must be a positive integer, got {!r}",
    "dtype": "'dtype' must be a string, got {!r}",
    "max_new_tokens": "'max_new_tokens' must be a non-negative integer, got {!r}",
    "compression_tolerance": "'compression_tolerance' must be a positive number (0.10: a run "
    "whose achieved C is more than 10% off its label is a failed run), got {!r}",
}


def _rank(err: ErrorDetails) -> tuple[Any, ...]:
    """Unknown keys, then missing keys, then each key's own errors; inside a combine entry
    likewise."""
    loc, first = err["loc"], {"extra_forbidden": 0, "missing": 1}.get(err["type"], 2)
    if len(loc) == 1 and first < 2:
        return (first,)
    if loc[:1] == ("combine",):
        return (2, -1) if len(loc) <= 2 else (2, loc[1], first if len(loc) == 3 else 2)
    return (2,)


def _schema_error(exc: ValidationError) -> str:
    """The first of pydantic's errors in the grid's own words: one line naming the key."""
    err, errors = first_error(exc, _rank)
    loc, kind, got = err["loc"], err["type"], err["input"]
    if kind == "extra_forbidden":  # every unknown key of that table at once
        unknown = unknown_keys(err, errors)
        if len(loc) == 1:
            return f"unknown key(s) {unknown}; known: {', '.join(sorted(KNOWN_KEYS))}"
        return f"combine[{loc[1]}]: unknown key(s) {unknown}; an entry has 'prefill' and 'decode'"
    if not loc:  # a rule across keys, raised in its own words
        return err["msg"]
    key, rest = str(loc[0]), loc[1:]
    if kind == "missing" and not rest:
        return f"missing key '{key}'"
    if key in _SCALARS:
        return _SCALARS[key].format(got)
    if key == "models":
        return "'models' must be a non-empty list of model names or paths"
    if key in ("methods", "tasks"):
        if not rest:
            return f"'{key}' must be a list of names or a table, got {type(got).__name__}"
        if len(rest) == 1:
            return "'methods' and 'tasks' must not be empty"
        if rest[0] == "list":
            return f"'{key}' must be a list of names or a table of name = {{params}}"
        return f"'{key}.{rest[1]}' must be a table of parameters, got {got!r}"
    if key == "combine":
        return _combine_error(rest, err)
    return _list_error(key, rest, err)


def _combine_error(rest: tuple[Any, ...], err: ErrorDetails) -> str:
    if len(rest) < 2:
        return "'combine' must be an array of tables ([[combine]] with prefill and decode)"
    missing = err["type"] == "missing"
    entry = f"combine[{rest[0]}]"
    if len(rest) == 2:
        if missing:
            return f"{entry}: missing '{rest[1]}' (an entry has both halves)"
        return f"{entry}.{rest[1]} must be a table {{ method = ..., compression = ... }}"
    half = f"{entry}.{rest[1]}"
    if rest[2] == "method":
        return f"{half}: 'method' must be a method name, got {None if missing else err['input']!r}"
    if missing:
        return f"{half}: missing 'compression' (a number >= 1 or a list)"
    return f"{half}: {_list_error('compression', rest[3:], err)}"


def _list_error(key: str, rest: tuple[Any, ...], err: ErrorDetails) -> str:
    if not rest:
        return f"'{key}' must be a non-empty list"
    if err["type"] == "greater_than_equal":
        return f"'{key}' holds {err['input']!r}, expected values >= {err.get('ctx', {})['ge']}"
    kind = "int" if err["type"] == "int_type" else "float"
    return f"'{key}' holds {err['input']!r}, expected {kind} values"


def _named(raw: list[str] | dict[str, dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, list):
        return tuple((x, "{}") for x in raw)
    return tuple((name, canonical(params)) for name, params in raw.items())


def parse_grid(data: dict[str, Any], where: str = "<grid>", source_hash: str = "") -> Grid:
    """Validate a grid given as a dict (the parsed TOML)."""
    try:
        schema = GridSchema.model_validate(data)
    except ValidationError as exc:
        raise GridError(f"{where}: {_schema_error(exc)}") from None
    methods = _named(schema.methods) if schema.methods is not None else ()
    compression = tuple(schema.compression or ())
    budgets = tuple(dict.fromkeys(schema.budgets or ()))
    lengths = tuple(schema.lengths)
    combine = _combine(schema.combine or [], where)
    _check_reachable(methods, lengths, compression, budgets, where)
    _check_combine_reachable(combine, lengths, where)
    grid = Grid(
        name=schema.name if schema.name is not None else Path(where).stem,
        seed=schema.seed,
        samples=schema.samples,
        lengths=lengths,
        compression=compression,
        models=tuple(schema.models),
        methods=methods,
        tasks=_named(schema.tasks),
        dtype=schema.dtype,
        source_hash=source_hash,
        max_new_tokens=schema.max_new_tokens,
        budgets=budgets,
        combine=combine,
        notes=_budget_notes(budgets, lengths, where),
        compression_tolerance=schema.compression_tolerance,
    )
    if not grid.configurations():
        raise GridError(
            f"{where}: the grid has no configuration to measure (every budget is >= every "
            "length and 'compression' is absent); add ratios or smaller budgets"
        )
    return grid


def _budget_notes(
    budgets: tuple[int, ...], lengths: tuple[int, ...], where: str
) -> tuple[str, ...]:
    """One note per budget that keeps the whole prompt at some lengths (C would be <= 1)."""
    notes = []
    for b in budgets:
        at = [length for length in lengths if b >= length]
        if at:
            listed = ", ".join(map(str, at))
            notes.append(
                f"{where}: budget {b} keeps every token at L={listed} (C <= 1); skipped there, "
                "the dense point is compression = 1"
            )
    return tuple(notes)


SLOTS = ("prefill", "decode")


def _combine(entries: list[CombineSchema], where: str) -> tuple[Combine, ...]:
    """The `[[combine]]` entries, each half checked against the method spec."""
    return tuple(
        Combine(
            _half(entry.prefill, "prefill", f"{where}: combine[{i}].prefill"),
            _half(entry.decode, "decode", f"{where}: combine[{i}].decode"),
        )
        for i, entry in enumerate(entries)
    )


def _half(half: HalfSchema, slot: str, where: str) -> Half:
    """One half of a combine entry: a sparse method of that phase, with knobs it knows."""
    method, knobs = half.method, dict(half.model_extra or {})
    fitting = [n for n, s in SPECS.items() if slot in s.phases and n != DENSE]
    spec = SPECS.get(method)
    if spec is None or method == DENSE or slot not in spec.phases:
        what = (
            "is not a sparse method"
            if spec is None or method == DENSE
            else f"is a {'/'.join(spec.phases)} method"
        )
        raise GridError(f"{where}: {method!r} {what}; the {slot} slot takes {', '.join(fitting)}")
    try:
        spec.resolve(knobs)
    except KernelInputError as exc:
        raise GridError(f"{where}: {exc}") from None
    return Half(method, canonical(knobs), tuple(dict.fromkeys(half.compression)))


def _check_reachable(
    methods: tuple[tuple[str, str], ...],
    lengths: tuple[int, ...],
    compression: tuple[float, ...],
    budgets: tuple[int, ...],
    where: str,
) -> None:
    """Refuse every (method, length, ratio) the method cannot reach, rather than run it denser.

    Unknown methods and bad knobs are left to the measurement's own check, which names the
    configuration.
    """
    problems = []
    for name, params in methods:
        if name == DENSE or name not in SPECS:
            continue
        knobs = json.loads(params)
        try:
            SPECS[name].resolve(knobs)
        except KernelInputError:
            continue
        for length in lengths:
            for c in compression:
                if not is_dense(c) and (why := unreachable_reason(name, knobs, length, c)):
                    problems.append(why)
            for b in budgets:
                if b < length and (why := unreachable_reason(name, knobs, length, length / b)):
                    problems.append(f"budget {b}: {why}")
    _refuse(problems, where)


def _check_combine_reachable(
    combine: tuple[Combine, ...], lengths: tuple[int, ...], where: str
) -> None:
    """Both halves of every entry must reach their ratios at every length."""
    problems = []
    for i, entry in enumerate(combine):
        for slot, half in zip(SLOTS, (entry.prefill, entry.decode), strict=True):
            knobs = json.loads(half.params)
            for length in lengths:
                for c in half.compression:
                    if not is_dense(c) and (
                        why := unreachable_reason(half.method, knobs, length, c)
                    ):
                        problems.append(f"combine[{i}].{slot}: {why}")
    _refuse(problems, where)


def _refuse(problems: list[str], where: str) -> None:
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise GridError(
            f"{where}: {'; '.join(problems[:3])}{more}. Drop those ratios or lengths, or change "
            "the knobs (a smaller block_size, fewer always-kept tokens); `scalelaw kernels list "
            "--seq-len L` shows each method's range"
        )


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid TOML file."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block for ever, a device never end
        raise GridError(f"{path}: not a regular file, expected a grid TOML file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GridError(f"{path}: cannot read grid file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode())
    except RecursionError:  # tomllib recurses once per level of nesting
        raise GridError(f"{path}: not valid TOML (nested too deeply)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: not valid TOML ({exc})") from None
    return parse_grid(data, str(path), hashlib.sha256(raw).hexdigest()[:16])
