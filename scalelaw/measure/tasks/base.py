"""What every generated task shares: samples, seeding, filler text and fitting to a token length.

A task draws the content of a sample (needles, chains, a story) from a seeded generator, then
pads it with filler text. The amount of filler is searched so that the full model input, counted
by the model's own tokenizer, lands in [95%, 100%] of the target length.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from scalelaw.errors import ScalelawError
from scalelaw.measure.tasks import words

#: Counts the tokens of the complete model input built from one user message.
TokenCounter = Callable[[str], int]

#: Lowest share of the target length a generated prompt may have.
MIN_FILL = 0.95

ANSWER_FORMAT = "Write only the answer between <answer> and </answer> tags, for example: <answer>{example}</answer>."


class TaskError(ScalelawError):
    """A task cannot be built as asked (bad parameter, unreachable length)."""


@dataclass(frozen=True)
class Sample:
    """One generated prompt with its expected answer."""

    task: str
    index: int
    prompt: str
    expected: tuple[str, ...]
    n_tokens: int
    target_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Draft:
    """Content of a sample before padding: `render(n)` builds the prompt with `n` filler words."""

    render: Callable[[int], str]
    expected: tuple[str, ...]
    max_fill: int
    meta: dict[str, Any] = field(default_factory=dict)


def sample_rng(task: str, seed: int, index: int) -> random.Random:
    """A generator that depends only on (task, seed, index): the same sample on every machine.

    The length is deliberately not part of the seed, so sample i at 1K and at 4K tokens ask the
    same question over different amounts of filler.
    """
    return random.Random(f"scalelaw|{task}|{seed}|{index}")


class FillerStream:
    """An endless, seeded stream of plain sentences, cut to a number of words on demand."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._sentences: list[list[str]] = []
        self._words = 0

    def _grow(self, n_words: int) -> None:
        while self._words < n_words:
            sentence = self._sentence().split()
            self._sentences.append(sentence)
            self._words += len(sentence)

    def _sentence(self) -> str:
        r = self._rng
        if r.random() < 0.2:
            return r.choice(words.WEATHER)
        adj, noun = r.choice(words.ADJECTIVES), r.choice(words.NOUNS)
        verb, adj2, noun2 = r.choice(words.VERBS), r.choice(words.ADJECTIVES), r.choice(words.NOUNS)
        return f"The {adj} {noun} {verb} the {adj2} {noun2}."

    def sentences(self, n_words: int) -> list[str]:
        """The first `n_words` words as sentences; a cut last sentence still ends with a period."""
        self._grow(n_words)
        out: list[str] = []
        left = n_words
        for sentence in self._sentences:
            if left <= 0:
                break
            part = sentence[:left]
            left -= len(part)
            text = " ".join(part)
            out.append(text if text.endswith(".") else text + ".")
        return out


def spread(items: list[str], fill: list[str], depths: list[float]) -> list[str]:
    """Insert `items` into the `fill` sentences at relative depths in [0, 1]."""
    out = list(fill)
    # insert from the deepest so earlier positions stay valid
    for item, depth in sorted(zip(items, depths, strict=True), key=lambda p: -p[1]):
        out.insert(round(depth * len(fill)), item)
    return out


def fit_length(draft: Draft, count: TokenCounter, target: int, task: str) -> tuple[str, int]:
    """The prompt with the most filler whose token count is <= target; checked to be >= 95%."""
    if target <= 0:
        raise TaskError(f"task {task}: target length must be positive, got {target}")
    base = count(draft.render(0))
    if base > target:
        raise TaskError(
            f"task {task}: the prompt without filler already has {base} tokens, more than the "
            f"target {target}; use a longer length or fewer needles/chapters"
        )
    lo, hi = 0, 1
    # grow the bracket geometrically, then bisect: O(log n) tokenizations of the full prompt
    while True:
        if hi >= draft.max_fill:
            hi = draft.max_fill
            if count(draft.render(hi)) <= target:
                lo = hi
            break
        if count(draft.render(hi)) > target:
            break
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(draft.render(mid)) <= target:
            lo = mid
        else:
            hi = mid
    prompt = draft.render(lo)
    n = count(prompt)
    if not (MIN_FILL * target <= n <= target):
        raise TaskError(
            f"task {task}: could only reach {n} tokens for a target of {target} "
            f"(needs {MIN_FILL:.0%}-100%)"
        )
    return prompt, n


class Task(ABC):
    """A generated long-context task. Subclasses set `name`, `metric` and implement `draft`."""

    name: ClassVar[str]
    metric: ClassVar[str]
    #: Bumped whenever templates or word lists change what a seed generates.
    version: ClassVar[int] = 2
    #: Cap on generated tokens for an answer.
    max_new_tokens: ClassVar[int] = 32
    example: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        """The task's knobs, recorded with each measurement."""
        return {}

    @abstractmethod
    def draft(self, rng: random.Random, target: int) -> Draft:
        """Draw the content of one sample."""

    @abstractmethod
    def score(self, output: str, sample: Sample) -> float:
        """Score one model output against the sample's expected answer, in [0, 1]."""

    def answer_format(self) -> str:
        return ANSWER_FORMAT.format(example=self.example)

    def closing(self, question: str) -> str:
        """The end of every prompt: the answer format, then the question.

        The question comes last so that it lies inside the observation window of methods that
        choose what to keep from the last prompt tokens (SnapKV looks at the final 32-64 tokens;
        with the format line last they would see only the format, not what is asked).
        """
        return f"{self.answer_format()}\n{question}"

    def generate(self, count: TokenCounter, target: int, seed: int, index: int) -> Sample:
        """Sample `index` of this task at `target` tokens (as counted by `count`)."""
        draft = self.draft(sample_rng(self.name, seed, index), target)
        prompt, n = fit_length(draft, count, target, self.name)
        return Sample(self.name, index, prompt, draft.expected, n, target, dict(draft.meta))

    def samples(self, count: TokenCounter, target: int, seed: int, n: int) -> list[Sample]:
        """The first `n` samples for this seed and length."""
        return [self.generate(count, target, seed, i) for i in range(n)]
