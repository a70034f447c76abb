"""Common-word extraction: a long list of words in which a few appear far more often."""

from __future__ import annotations

import random
from typing import Any

from scalelaw.measure.tasks import words
from scalelaw.measure.tasks.base import Draft, Sample, Task, TaskError
from scalelaw.measure.tasks.scoring import extract_answer, iou, split_items

#: every distinct single word of our lists, sorted so the pool does not depend on set order
POOL: tuple[str, ...] = tuple(
    sorted(
        set(words.COMMON_POOL)
        | set(words.NOUNS)
        | set(words.ADJECTIVES)
        | set(words.KEY_FIRST)
        | set(words.KEY_SECOND)
    )
)


class CommonWordsTask(Task):
    """`top` words appear `freq` times each; every other word appears at most `freq // 3` times.

    `freq` grows with the target length (about 1/40 of the list). Score: IoU of the returned
    and the expected `top` words.
    """

    name = "common-words"
    metric = "iou"
    max_new_tokens = 32
    example = "word, word, word"

    def __init__(self, top: int = 5) -> None:
        if not 1 <= top <= 20:
            raise TaskError(f"task {self.name}: top must be in 1..20, got {top}")
        self.top = top

    def params(self) -> dict[str, Any]:
        return {"top": self.top}

    def draft(self, rng: random.Random, target: int) -> Draft:
        entries = max(30, (target - 100) // 2)
        freq = max(4, entries // 40)
        rare_max = max(1, freq // 3)
        pool = list(POOL)
        rng.shuffle(pool)
        common, rare = pool[: self.top], pool[self.top :]
        rare_stream = [w for _ in range(rare_max) for w in rng.sample(rare, len(rare))]
        order_seed = rng.random()
        head = "Below is a numbered list of words. Some words appear many more times than others."
        question = f"Question: what are the {self.top} most frequent words in the list?"

        def render(n: int) -> str:
            items = common * freq + rare_stream[:n]
            random.Random(f"{order_seed}|{n}").shuffle(items)
            body = "\n".join(f"{i + 1}. {w}" for i, w in enumerate(items))
            return f"{head}\n\n{body}\n\n{self.closing(question)}"

        return Draft(render, tuple(common), max_fill=len(rare_stream), meta={"freq": freq})

    def score(self, output: str, sample: Sample) -> float:
        return iou(split_items(extract_answer(output)), sample.expected)
