"""Sweep grids from TOML: models x methods x tasks x lengths x ratios, expanded to configurations.

```toml
name = "example"
seed = 0
samples = 10
lengths = [256, 512]
compression = [1, 2, 4]
models = ["smollm2-135m"]
dtype = "auto"                     # optional: auto (bf16 on GPU, fp32 on CPU), float32, ...
max_new_tokens = 0                 # optional: cap on answer tokens (0: each task's own cap)

[methods]                          # or: methods = ["dense", "quest"]
dense = {}
quest = { page_size = 16 }

[tasks]                            # or: tasks = ["niah-multikey"]
niah-multikey = { needles = 4, queries = 1 }
variable-tracking = {}
```

`dense` runs only at C = 1. Every other method runs at every ratio; its C = 1 point is the dense
measurement (a method at C = 1 reproduces dense attention), computed once and shared.
A grid asking a method for a ratio it cannot reach at a length (the method spec's `reachable`)
is refused up front, naming the method, the length and the ratio.
This module is torch-free.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scalelaw.errors import ScalelawError
from scalelaw.kernels.specs import SPECS, KernelInputError, unreachable_reason

DENSE = "dense"


class GridError(ScalelawError):
    """A grid file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Configuration:
    """One measured point: every field that can change its numbers."""

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

    @property
    def config_id(self) -> str:
        return _digest(asdict(self))

    @property
    def compute_id(self) -> str:
        """Configurations with equal compute ids produce the same predictions (C = 1 -> dense)."""
        if self.compression == 1:
            fields = {**asdict(self), "method": DENSE, "method_params": "{}"}
            return _digest(fields)
        return self.config_id

    def label(self) -> str:
        return f"{self.model} {self.task} L={self.seq_len} {self.method} C={self.compression:g}"


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

    def configurations(self) -> list[Configuration]:
        """Every configuration, ordered model > length > task > method > ratio (model loads once)."""
        out: list[Configuration] = []
        # lengths before tasks: a sweep stopped early has every task at the shorter lengths
        for model in self.models:
            for length in self.lengths:
                for task, task_params in self.tasks:
                    for method, method_params in self.methods:
                        ratios = (
                            [c for c in self.compression if c == 1]
                            if method == DENSE
                            else self.compression
                        )
                        for c in ratios:
                            out.append(
                                Configuration(
                                    model,
                                    method,
                                    method_params,
                                    task,
                                    task_params,
                                    length,
                                    float(c),
                                    self.samples,
                                    self.seed,
                                    self.dtype,
                                    self.max_new_tokens,
                                )
                            )
        return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _named(raw: Any, key: str, where: str) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, list):
        if not all(isinstance(x, str) for x in raw):
            raise GridError(
                f"{where}: '{key}' must be a list of names or a table of name = {{params}}"
            )
        return tuple((x, "{}") for x in raw)
    if isinstance(raw, dict):
        out = []
        for name, params in raw.items():
            if not isinstance(params, dict):
                raise GridError(
                    f"{where}: '{key}.{name}' must be a table of parameters, got {params!r}"
                )
            out.append((name, canonical(params)))
        return tuple(out)
    raise GridError(
        f"{where}: '{key}' must be a list of names or a table, got {type(raw).__name__}"
    )


def _positive_list(raw: Any, key: str, where: str, kind: type, low: float) -> tuple[Any, ...]:
    if not isinstance(raw, list) or not raw:
        raise GridError(f"{where}: '{key}' must be a non-empty list")
    for x in raw:
        if (
            isinstance(x, bool)
            or not isinstance(x, (int, float))
            or (kind is int and not isinstance(x, int))
        ):
            raise GridError(f"{where}: '{key}' holds {x!r}, expected {kind.__name__} values")
        if x < low:
            raise GridError(f"{where}: '{key}' holds {x!r}, expected values >= {low}")
    return tuple(kind(x) for x in raw)


KNOWN_KEYS = {
    "name",
    "seed",
    "samples",
    "lengths",
    "compression",
    "models",
    "methods",
    "tasks",
    "dtype",
    "max_new_tokens",
}


def parse_grid(data: dict[str, Any], where: str = "<grid>", source_hash: str = "") -> Grid:
    """Validate a grid given as a dict (the parsed TOML)."""
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise GridError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN_KEYS))}"
        )
    for key in ("lengths", "compression", "models", "methods", "tasks"):
        if key not in data:
            raise GridError(f"{where}: missing key '{key}'")
    seed, samples = data.get("seed", 0), data.get("samples", 10)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise GridError(f"{where}: 'seed' must be an integer, got {seed!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise GridError(f"{where}: 'samples' must be a positive integer, got {samples!r}")
    models = data["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise GridError(f"{where}: 'models' must be a non-empty list of model names or paths")
    dtype = data.get("dtype", "auto")
    if not isinstance(dtype, str):
        raise GridError(f"{where}: 'dtype' must be a string, got {dtype!r}")
    cap = data.get("max_new_tokens", 0)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
        raise GridError(f"{where}: 'max_new_tokens' must be a non-negative integer, got {cap!r}")
    methods = _named(data["methods"], "methods", where)
    tasks = _named(data["tasks"], "tasks", where)
    if not methods or not tasks:
        raise GridError(f"{where}: 'methods' and 'tasks' must not be empty")
    compression = _positive_list(data["compression"], "compression", where, float, 1.0)
    if all(m == DENSE for m, _ in methods) and 1.0 not in compression:
        raise GridError(f"{where}: only 'dense' is listed but 'compression' lacks 1")
    lengths = _positive_list(data["lengths"], "lengths", where, int, 1)
    _check_reachable(methods, lengths, compression, where)
    return Grid(
        name=str(data.get("name", Path(where).stem)),
        seed=seed,
        samples=samples,
        lengths=lengths,
        compression=compression,
        models=tuple(models),
        methods=methods,
        tasks=tasks,
        dtype=dtype,
        source_hash=source_hash,
        max_new_tokens=cap,
    )


def _check_reachable(
    methods: tuple[tuple[str, str], ...],
    lengths: tuple[int, ...],
    compression: tuple[float, ...],
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
                if c != 1 and (why := unreachable_reason(name, knobs, length, c)) is not None:
                    problems.append(why)
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
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GridError(f"{path}: cannot read grid file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: not valid TOML ({exc})") from None
    return parse_grid(data, str(path), hashlib.sha256(raw).hexdigest()[:16])
