"""Multi-key needle retrieval: several key/number facts hidden in filler; recall some of them."""

from __future__ import annotations

import random
import re
from typing import Any

from scalelaw.measure.tasks import words
from scalelaw.measure.tasks.base import Draft, FillerStream, Sample, Task, TaskError, spread
from scalelaw.measure.tasks.scoring import extract_answer, numbers, partial_credit


class NeedleTask(Task):
    """`needles` facts "The secret number of KEY is NNNNNNN."; the question asks for `queries` keys.

    Score: partial credit, the share of asked keys whose number is returned (matched by key name
    when the answer names keys, else by position).
    """

    name = "niah-multikey"
    metric = "partial"
    max_new_tokens = 40
    example = "number, number"

    def __init__(self, needles: int = 4, queries: int = 2) -> None:
        if not 1 <= queries <= needles:
            raise TaskError(
                f"task {self.name}: need 1 <= queries <= needles, got {queries}, {needles}"
            )
        if needles > len(words.KEY_FIRST) * len(words.KEY_SECOND):
            raise TaskError(f"task {self.name}: too many needles ({needles})")
        self.needles = needles
        self.queries = queries

    def params(self) -> dict[str, Any]:
        return {"needles": self.needles, "queries": self.queries}

    def draft(self, rng: random.Random, target: int) -> Draft:
        pairs = [(a, b) for a in words.KEY_FIRST for b in words.KEY_SECOND]
        keys = [f"{a}-{b}" for a, b in rng.sample(pairs, self.needles)]
        values = [str(rng.randint(1_000_000, 9_999_999)) for _ in keys]
        depths = [rng.random() for _ in keys]
        asked = rng.sample(range(self.needles), self.queries)
        facts = [f"The secret number of {k} is {v}." for k, v in zip(keys, values, strict=True)]
        filler = FillerStream(rng)
        asked_keys = [keys[i] for i in asked]
        listed = ", ".join(asked_keys)
        plural = "number" if self.queries == 1 else "numbers, in this order,"
        head = (
            "Below is a long text. Some sentences in it state secret numbers. "
            "Read it and answer the question after it."
        )
        question = f"Question: what is the secret {plural} of {listed}?"

        def render(n: int) -> str:
            body = " ".join(spread(facts, filler.sentences(n), depths))
            return f"{head}\n\n{body}\n\n{self.closing(question)}"

        return Draft(
            render,
            tuple(values[i] for i in asked),
            max_fill=10 * target,
            meta={"keys": asked_keys, "depths": [depths[i] for i in asked]},
        )

    def score(self, output: str, sample: Sample) -> float:
        answer = extract_answer(output)
        keys: list[str] = sample.meta["keys"]
        lowered = answer.lower()
        if all(k in lowered for k in keys):
            # "key: number" answers are matched by name, so their order does not matter
            found = []
            for k in keys:
                after = numbers(lowered[lowered.index(k) + len(k) :])
                found.append(after[0] if after else "")
            return partial_credit(found, sample.expected)
        return partial_credit(numbers(re.sub(r"[-_]", " ", answer)), sample.expected)
