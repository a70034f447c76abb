"""Parameter counts for the models named in result folders, from the built-in architectures.

Result folders name models in their own way (`qwen_7b`, `Qwen/Qwen2.5-7B-Instruct`,
`meta-llama--Meta-Llama-3.1-8B-Instruct`); all of them are matched against the table of
`scalelaw.frontier.architectures`, so the importers and the cost model agree on N. A model that
is not in that table needs its count from the user (`--params MODEL=7.6e9`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from scalelaw.frontier.architectures import BUILTIN, Architecture


@dataclass(frozen=True)
class ModelSize:
    """A model's parameter count and, when it comes from the built-in table, its family."""

    params: float
    family: str | None = None


def name_key(name: str) -> str:
    """A spelling-free key: `Meta-Llama-3.1-8B-Instruct` and `llama3.1-8B` both give `llama3.1-8b`."""
    key = name.strip().lower()
    # KVPress writes `org/model` as `org--model` in folder names
    key = key.replace("--", "/").rsplit("/", 1)[-1]
    key = key.removeprefix("meta-")
    key = re.sub(r"[\s_]+", "-", key)
    for suffix in ("-instruct", "-chat", "-it"):
        key = key.removesuffix(suffix)
    # `llama-3.1` and `llama3.1` are one family
    return re.sub(r"(?<=[a-z])-(?=\d)", "", key)


@cache
def _builtin_keys() -> dict[str, Architecture]:
    keys: dict[str, Architecture] = {}
    for arch in BUILTIN:
        keys[name_key(f"{arch.family}-{arch.size}")] = arch
        if arch.hf_id:
            keys[name_key(arch.hf_id)] = arch
    return keys


def builtin_architecture(name: str) -> Architecture | None:
    """The built-in architecture a model name stands for, or None."""
    return _builtin_keys().get(name_key(name))


def override_for(name: str, overrides: Mapping[str, float]) -> float | None:
    """The user's count for `name`; `org/model` and `org--model` name the same model."""
    for spelling in (name, name.replace("/", "--"), name.replace("--", "/")):
        if spelling in overrides:
            return overrides[spelling]
    return None


def known_models() -> str:
    """The built-in sizes, for error messages."""
    return ", ".join(a.name for a in BUILTIN)


def model_size(
    name: str, overrides: Mapping[str, float], architecture: Architecture | None = None
) -> ModelSize | None:
    """The size of `name`: the user's override first, then `architecture` or the built-in table."""
    arch = architecture or builtin_architecture(name)
    given = override_for(name, overrides)
    if given is not None:
        return ModelSize(given, arch.family if arch else None)
    if arch is None:
        return None
    return ModelSize(float(arch.params()), arch.family)
