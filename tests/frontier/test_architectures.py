"""Built-in shapes against published counts and the study's table; reading HF configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from scalelaw.frontier import BUILTIN, ArchitectureError, from_hf_config, get_architecture
from scalelaw.frontier.architectures import family_sizes, table


@pytest.mark.parametrize("arch", BUILTIN, ids=lambda a: a.name)
def test_computed_params_match_model_cards(arch) -> None:
    # a wrong layer count, width or vocabulary moves the count by far more than 1%; a card that
    # rounds to two digits (Qwen3's "1.7B") is met within half its last digit
    published = arch.published_params
    digits = len(f"{published:.3g}".split("e")[0].replace(".", "").rstrip("0"))
    half_unit = 0.5 * 10 ** (math.floor(math.log10(published)) - digits + 1)
    assert abs(arch.params() - published) <= max(0.01 * published, half_unit)


def test_qwen3_shapes_match_the_published_non_embedding_counts() -> None:
    cards = {"0.6B": 0.44e9, "1.7B": 1.4e9, "4B": 3.6e9, "8B": 6.95e9, "14B": 13.2e9, "32B": 31.2e9}
    for arch in family_sizes("qwen3"):
        assert arch.non_embedding_params() == pytest.approx(cards[arch.size], rel=0.01), arch.name


def test_shapes_match_study_models_csv(shared_data: Path) -> None:
    ref = pl.read_csv(shared_data / "paper" / "models.csv", comment_prefix="#")
    fam = {"Qwen2.5": "qwen2.5", "Llama3.1": "llama3.1", "Gemma3": "gemma3"}
    checked = 0
    for row in ref.iter_rows(named=True):
        arch = get_architecture(fam[row["family"]], row["size"])
        assert arch.layers == row["layers"], arch.name
        assert arch.heads == row["q_heads"], arch.name
        assert arch.kv_heads == row["kv_heads"], arch.name
        for ours, theirs in (
            ("hidden", "hidden_dim"),
            ("mlp", "intermediate_dim"),
            ("vocab", "vocab"),
        ):
            if row[theirs] is not None:
                assert getattr(arch, ours) == row[theirs], (arch.name, ours)
                checked += 1
    assert checked == 12  # hidden, MLP and vocabulary of the four Qwen2.5 sizes


def test_gemma_layer_mix() -> None:
    g = get_architecture("gemma3", "12B")
    assert (g.local_layers, g.global_layers, g.window) == (40, 8, 1024)
    assert get_architecture("gemma-3", "4b").global_layers == 34 // 6


def test_family_order_and_errors() -> None:
    sizes = [a.size for a in family_sizes("Qwen")]
    assert sizes == ["0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"]
    with pytest.raises(ArchitectureError, match=r"no size '9B'; sizes are 0\.5B, 1\.5B, 3B"):
        get_architecture("qwen2.5", "9B")
    with pytest.raises(ArchitectureError, match="unknown family 'mistral'"):
        family_sizes("mistral")
    assert table().height == len(BUILTIN)


def test_hf_config_roundtrip(tmp_path: Path) -> None:
    q = get_architecture("qwen2.5", "7B")
    cfg = {
        "model_type": "qwen2",
        "num_hidden_layers": q.layers,
        "hidden_size": q.hidden,
        "num_attention_heads": q.heads,
        "num_key_value_heads": q.kv_heads,
        "intermediate_size": q.mlp,
        "vocab_size": q.vocab,
        "tie_word_embeddings": False,
        "sliding_window": 131072,
        "use_sliding_window": False,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    read = from_hf_config(path)
    assert read.params() == q.params()
    assert read.local_layers == 0 and read.head_dim == 128


def test_hf_config_gemma_text_config() -> None:
    g = get_architecture("gemma3", "27B")
    cfg = {
        "model_type": "gemma3",
        "text_config": {
            "model_type": "gemma3_text",
            "num_hidden_layers": 62,
            "hidden_size": 5376,
            "num_attention_heads": 32,
            "num_key_value_heads": 16,
            "head_dim": 128,
            "intermediate_size": 21504,
            "vocab_size": 262208,
            "sliding_window": 1024,
            "sliding_window_pattern": 6,
        },
    }
    read = from_hf_config(cfg)
    assert (read.local_layers, read.window) == (g.local_layers, 1024)
    assert read.params() == g.params()  # tied, as transformers assumes when a config is silent


def test_hf_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(ArchitectureError, match=r"config.json: missing field 'num_hidden_layers'"):
        from_hf_config(bad)
    bad.write_text("{not json")
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        from_hf_config(bad)
    with pytest.raises(ArchitectureError, match="not a multiple of kv_heads"):
        from_hf_config(
            {"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 3,
             "num_key_value_heads": 2, "intermediate_size": 16, "vocab_size": 10}
        )  # fmt: skip
