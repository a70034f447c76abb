"""Transformer shapes that the cost model needs: a built-in table and a Hugging Face config reader.

The table holds the text decoder of each model as published in its `config.json` (for Gemma-3 the
`text_config`). Parameter counts are computed from the shapes (bias terms, norms and tied
embeddings included) and kept next to the figure the model card publishes, so a wrong shape shows
up as a mismatch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from scalelaw.errors import ScalelawError


class ArchitectureError(ScalelawError):
    """An architecture could not be found or read; the message names what and where."""


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer.

    `window` and `local_layers` describe sliding-window layers (Gemma-3 alternates five local
    layers of window 1024 with one global layer); such layers attend to at most `window` keys.
    """

    family: str
    size: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    window: int | None = None
    local_layers: int = 0
    published_params: float | None = None
    note: str = ""
    hf_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "kv_heads", "head_dim", "mlp", "vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ArchitectureError(f"{self.name}: '{name}' must be a positive integer")
        if self.heads % self.kv_heads:
            raise ArchitectureError(
                f"{self.name}: heads ({self.heads}) is not a multiple of kv_heads ({self.kv_heads})"
            )
        if not 0 <= self.local_layers <= self.layers:
            raise ArchitectureError(f"{self.name}: local_layers must lie in [0, layers]")
        if self.local_layers and not self.window:
            raise ArchitectureError(f"{self.name}: local layers need a sliding 'window'")

    @property
    def name(self) -> str:
        return f"{self.family}-{self.size}"

    @property
    def global_layers(self) -> int:
        return self.layers - self.local_layers

    @property
    def q_dim(self) -> int:
        """Width of the query (and attention output) projection, h * d_h."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projections, h_kv * d_h."""
        return self.kv_heads * self.head_dim

    def layer_params(self) -> int:
        """Parameters of one decoder layer."""
        d = self.hidden
        attn = d * self.q_dim + 2 * d * self.kv_dim + self.q_dim * d
        if self.qkv_bias:
            attn += self.q_dim + 2 * self.kv_dim
        if self.qk_norm:
            attn += 2 * self.head_dim
        mlp = 3 * d * self.mlp  # gated MLP: gate, up and down projections
        return attn + mlp + self.norms_per_layer * d

    def embedding_params(self) -> int:
        """Input embedding plus output head (counted once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def params(self) -> int:
        """Total parameters of the text decoder: layers, embeddings and the final norm."""
        return self.layers * self.layer_params() + self.embedding_params() + self.hidden

    def non_embedding_params(self) -> int:
        return self.layers * self.layer_params() + self.hidden

    def as_row(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k != "extra"}
        row["params"] = self.params()
        return row


def _a(family: str, size: str, shape: tuple[int, ...], **kw: Any) -> Architecture:
    layers, hidden, heads, kv_heads, head_dim, mlp, vocab = shape
    return Architecture(family, size, layers, hidden, heads, kv_heads, head_dim, mlp, vocab, **kw)


_QWEN = {"qkv_bias": True}
_GEMMA_NOTE = (
    "5 sliding-window (1024) layers per global layer; sparse attention applies to global layers; "
    "published count is the text decoder (Gemma 3 report, vision encoder excluded)"
)


def _gemma_local(layers: int) -> int:
    # Gemma-3 places a global layer after every five local ones (sliding_window_pattern = 6).
    return layers - layers // 6


#: Shapes from each model's public config.json; published counts from the model cards.
BUILTIN: tuple[Architecture, ...] = (
    # shape = (layers, hidden, heads, kv_heads, head_dim, mlp, vocab)
    _a("qwen2.5", "0.5B", (24, 896, 14, 2, 64, 4864, 151936), tied_embeddings=True,
       published_params=0.49e9, hf_id="Qwen/Qwen2.5-0.5B-Instruct", **_QWEN),
    _a("qwen2.5", "1.5B", (28, 1536, 12, 2, 128, 8960, 151936), tied_embeddings=True,
       published_params=1.54e9, hf_id="Qwen/Qwen2.5-1.5B-Instruct", **_QWEN),
    _a("qwen2.5", "3B", (36, 2048, 16, 2, 128, 11008, 151936), tied_embeddings=True,
       published_params=3.09e9, hf_id="Qwen/Qwen2.5-3B-Instruct", **_QWEN),
    _a("qwen2.5", "7B", (28, 3584, 28, 4, 128, 18944, 152064),
       published_params=7.61e9, hf_id="Qwen/Qwen2.5-7B-Instruct", **_QWEN),
    _a("qwen2.5", "14B", (48, 5120, 40, 8, 128, 13824, 152064),
       published_params=14.7e9, hf_id="Qwen/Qwen2.5-14B-Instruct", **_QWEN),
    _a("qwen2.5", "32B", (64, 5120, 40, 8, 128, 27648, 152064),
       published_params=32.5e9, hf_id="Qwen/Qwen2.5-32B-Instruct", **_QWEN),
    _a("qwen2.5", "72B", (80, 8192, 64, 8, 128, 29568, 152064),
       published_params=72.7e9, hf_id="Qwen/Qwen2.5-72B-Instruct", **_QWEN),
    _a("llama3.1", "8B", (32, 4096, 32, 8, 128, 14336, 128256),
       published_params=8.03e9, hf_id="meta-llama/Llama-3.1-8B-Instruct"),
    _a("llama3.1", "70B", (80, 8192, 64, 8, 128, 28672, 128256),
       published_params=70.6e9, hf_id="meta-llama/Llama-3.1-70B-Instruct"),
    # Qwen3: head_dim 128 at every size (64 x 128 = 8192 > hidden 5120 at 32B), RMS norms on q
    # and k, no qkv bias; published counts also give the non-embedding part (0.44B ... 31.2B),
    # which the shapes match too
    _a("qwen3", "0.6B", (28, 1024, 16, 8, 128, 3072, 151936), tied_embeddings=True,
       qk_norm=True, published_params=0.6e9, hf_id="Qwen/Qwen3-0.6B"),
    _a("qwen3", "1.7B", (28, 2048, 16, 8, 128, 6144, 151936), tied_embeddings=True,
       qk_norm=True, published_params=1.7e9, hf_id="Qwen/Qwen3-1.7B"),
    _a("qwen3", "4B", (36, 2560, 32, 8, 128, 9728, 151936), tied_embeddings=True,
       qk_norm=True, published_params=4.0e9, hf_id="Qwen/Qwen3-4B"),
    _a("qwen3", "8B", (36, 4096, 32, 8, 128, 12288, 151936),
       qk_norm=True, published_params=8.2e9, hf_id="Qwen/Qwen3-8B"),
    _a("qwen3", "14B", (40, 5120, 40, 8, 128, 17408, 151936),
       qk_norm=True, published_params=14.8e9, hf_id="Qwen/Qwen3-14B"),
    _a("qwen3", "32B", (64, 5120, 64, 8, 128, 25600, 151936),
       qk_norm=True, published_params=32.8e9, hf_id="Qwen/Qwen3-32B"),
    # Llama-3.2: the small sizes of HELMET's table (with Llama-3.1 8B and 70B)
    _a("llama3.2", "1B", (16, 2048, 32, 8, 64, 8192, 128256), tied_embeddings=True,
       published_params=1.24e9, hf_id="meta-llama/Llama-3.2-1B-Instruct"),
    _a("llama3.2", "3B", (28, 3072, 24, 8, 128, 8192, 128256), tied_embeddings=True,
       published_params=3.21e9, hf_id="meta-llama/Llama-3.2-3B-Instruct"),
    _a("gemma3", "4B", (34, 2560, 8, 4, 256, 10240, 262208), tied_embeddings=True,
       qk_norm=True, norms_per_layer=4, window=1024, local_layers=_gemma_local(34),
       published_params=3.88e9, note=_GEMMA_NOTE, hf_id="google/gemma-3-4b-it"),
    _a("gemma3", "12B", (48, 3840, 16, 8, 256, 15360, 262208), tied_embeddings=True,
       qk_norm=True, norms_per_layer=4, window=1024, local_layers=_gemma_local(48),
       published_params=11.77e9, note=_GEMMA_NOTE, hf_id="google/gemma-3-12b-it"),
    _a("gemma3", "27B", (62, 5376, 32, 16, 128, 21504, 262208), tied_embeddings=True,
       qk_norm=True, norms_per_layer=4, window=1024, local_layers=_gemma_local(62),
       published_params=27.02e9, note=_GEMMA_NOTE, hf_id="google/gemma-3-27b-it"),
    _a("smollm2", "135M", (30, 576, 9, 3, 64, 1536, 49152), tied_embeddings=True,
       published_params=0.135e9, hf_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
    _a("smollm2", "360M", (32, 960, 15, 5, 64, 2560, 49152), tied_embeddings=True,
       published_params=0.362e9, hf_id="HuggingFaceTB/SmolLM2-360M-Instruct"),
    _a("smollm2", "1.7B", (24, 2048, 32, 32, 64, 8192, 49152), tied_embeddings=True,
       published_params=1.71e9, hf_id="HuggingFaceTB/SmolLM2-1.7B-Instruct"),
)  # fmt: skip

#: Spellings accepted for family names.
_FAMILY_ALIASES = {
    "qwen": "qwen2.5",
    "qwen2.5": "qwen2.5",
    "qwen25": "qwen2.5",
    "llama": "llama3.1",
    "llama3.1": "llama3.1",
    "llama-3.1": "llama3.1",
    "llama31": "llama3.1",
    "llama3.2": "llama3.2",
    "llama-3.2": "llama3.2",
    "llama32": "llama3.2",
    "qwen3": "qwen3",
    "gemma3": "gemma3",
    "gemma-3": "gemma3",
    "smollm2": "smollm2",
}


def families() -> list[str]:
    """Family names of the built-in table, in table order."""
    return list(dict.fromkeys(a.family for a in BUILTIN))


def normalise_family(family: str) -> str:
    key = family.strip().lower().replace("_", "").replace(" ", "")
    key = _FAMILY_ALIASES.get(key, _FAMILY_ALIASES.get(key.replace("-", ""), key))
    if key not in families():
        raise ArchitectureError(
            f"unknown family '{family}'; built-in families are {', '.join(families())}"
        )
    return key


def family_sizes(family: str) -> list[Architecture]:
    """Every built-in size of a family, smallest first."""
    fam = normalise_family(family)
    return sorted((a for a in BUILTIN if a.family == fam), key=Architecture.params)


def get_architecture(family: str, size: str) -> Architecture:
    """One built-in architecture, e.g. ``get_architecture("qwen2.5", "7B")``."""
    wanted = size.strip().upper()
    for arch in family_sizes(family):
        if arch.size.upper() == wanted:
            return arch
    sizes = ", ".join(a.size for a in family_sizes(family))
    raise ArchitectureError(f"family '{family}' has no size '{size}'; sizes are {sizes}")


def table(family: str | None = None) -> pl.DataFrame:
    """The built-in table (or one family of it) as a polars frame."""
    archs = family_sizes(family) if family else list(BUILTIN)
    rows = [a.as_row() for a in archs]
    return pl.DataFrame(rows).select(
        "family",
        "size",
        "layers",
        "hidden",
        "heads",
        "kv_heads",
        "head_dim",
        "mlp",
        "vocab",
        "tied_embeddings",
        "window",
        "local_layers",
        "params",
        "published_params",
        "note",
    )


def _get(cfg: Mapping[str, Any], source: str, *names: str, default: Any = None) -> Any:
    for name in names:
        if cfg.get(name) is not None:
            return cfg[name]
    if default is not None:
        return default
    raise ArchitectureError(f"{source}: missing field '{names[0]}'")


def _count(
    cfg: Mapping[str, Any], source: str, *names: str, default: int | None = None, low: int = 1
) -> int:
    """A whole-number field of a config, at least `low`: 1.5 layers or 0 heads is refused
    rather than rounded down or divided by."""
    value = _get(cfg, source, *names, default=default)
    name = next((n for n in names if cfg.get(n) is not None), names[0])
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < low:
        raise ArchitectureError(
            f"{source}: field '{name}' must be a whole number >= {low}, got {value!r}"
        )
    return int(value)


def from_hf_config(
    config: str | Path | Mapping[str, Any], *, family: str | None = None, size: str | None = None
) -> Architecture:
    """Read a Hugging Face `config.json` (a path or an already-parsed dict).

    Multimodal configs are read from their `text_config`. Sliding-window layers are found from
    `layer_types` when present, otherwise from `sliding_window_pattern` (Gemma-3 style).
    """
    if isinstance(config, Mapping):
        cfg: Mapping[str, Any] = config
        source = "<config>"
    else:
        path = Path(config)
        source = str(path)
        if path.exists() and not path.is_file():  # a FIFO would block, a device never end
            raise ArchitectureError(f"{source}: not a regular file, expected a config.json")
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArchitectureError(f"{source}: file not found") from None
        except OSError as exc:
            raise ArchitectureError(f"{source}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ArchitectureError(f"{source}: not a text file") from None
        except json.JSONDecodeError as exc:
            raise ArchitectureError(
                f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})"
            ) from None
        except RecursionError:  # json recurses once per level of nesting
            raise ArchitectureError(f"{source}: not valid JSON (nested too deeply)") from None
    if not isinstance(cfg, Mapping):
        raise ArchitectureError(f"{source}: expected a JSON object")
    outer = cfg
    if isinstance(cfg.get("text_config"), Mapping):
        cfg = {**cfg["text_config"]}
    model_type = str(_get(cfg, source, "model_type", default=outer.get("model_type", "custom")))
    layers = _count(cfg, source, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _count(cfg, source, "hidden_size", "n_embd", "d_model")
    heads = _count(cfg, source, "num_attention_heads", "n_head")
    kv_heads = _count(cfg, source, "num_key_value_heads", default=heads)
    head_dim = _count(cfg, source, "head_dim", default=max(hidden // heads, 1))
    mlp = _count(cfg, source, "intermediate_size", "n_inner", "ffn_dim")
    vocab = _count(cfg, source, "vocab_size")
    # transformers' own default when a config omits it (Gemma-3 configs do)
    tied = bool(cfg.get("tie_word_embeddings", outer.get("tie_word_embeddings", True)))
    window = _count(cfg, source, "sliding_window") if cfg.get("sliding_window") else None
    local = 0
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        local = sum(1 for t in layer_types if "sliding" in str(t))
    elif cfg.get("sliding_window_pattern") and window:
        pattern = _count(cfg, source, "sliding_window_pattern")
        local = layers - layers // pattern if pattern > 1 else 0
    elif window and cfg.get("use_sliding_window"):
        max_window = _count(cfg, source, "max_window_layers", default=layers, low=0)
        local = max(0, layers - max_window)
    is_gemma = "gemma" in model_type
    try:
        return Architecture(
            family=family or model_type,
            size=size or str(cfg.get("_name_or_path", outer.get("_name_or_path", "custom"))),
            layers=layers,
            hidden=hidden,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            mlp=mlp,
            vocab=vocab,
            tied_embeddings=tied,
            qkv_bias=bool(cfg.get("attention_bias", model_type.startswith("qwen2"))),
            qk_norm=is_gemma and "gemma3" in model_type,
            norms_per_layer=4 if is_gemma and model_type != "gemma" else 2,
            window=window if local else None,
            local_layers=local,
            note="read from config",
        )
    except ArchitectureError as exc:
        raise ArchitectureError(f"{source}: {exc}") from None
