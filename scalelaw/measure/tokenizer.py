"""A small byte-level BPE tokenizer trained on the task word lists, for tiny test models.

Built locally with the `tokenizers` library, so tests and examples need no model hub. Any text
encodes (byte fallback), and the vocabulary is small enough for tiny random models.
"""

from __future__ import annotations

import random
from functools import lru_cache

from scalelaw.measure.tasks import words
from scalelaw.measure.tasks.base import FillerStream

SPECIAL = ("<|endoftext|>",)


def _corpus() -> list[str]:
    rng = random.Random("scalelaw-tokenizer")
    stream = FillerStream(rng)
    lines = stream.sentences(4000)
    pools = (
        words.ADJECTIVES,
        words.NOUNS,
        words.PLACES,
        words.ITEMS,
        words.ACTIVITIES,
        words.PEOPLE,
        words.KEY_FIRST,
        words.KEY_SECOND,
        words.COMMON_POOL,
    )
    lines += [" ".join(pool) for pool in pools]
    lines += [" ".join(str(rng.randint(0, 9_999_999)) for _ in range(50)) for _ in range(20)]
    lines += ["Question: what is the secret number? <answer> </answer> Chapter VAR = ."]
    return lines


@lru_cache(maxsize=4)
def local_tokenizer(vocab_size: int = 512):  # type: ignore[no-untyped-def]
    """A `PreTrainedTokenizerFast` over a BPE of `vocab_size` trained on our own word lists."""
    # deferred: tokenizers and transformers (about 1 s), for a model without its own tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL[0], pad_token=SPECIAL[0])
