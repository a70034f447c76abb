"""Variable tracking: chains of assignments hidden in filler; list every name bound to a value."""

from __future__ import annotations

import itertools
import random
import re
import string
from typing import Any

from scalelaw.measure.tasks.base import Draft, FillerStream, Sample, Task, TaskError, spread
from scalelaw.measure.tasks.scoring import extract_answer, iou

_NAME = re.compile(r"\b[A-Z]{5}\b")


class VariableTrackingTask(Task):
    """`chains` chains of `hops` assignments ("VAR XQZTR = 48213", "VAR PLMNB = VAR XQZTR", ...).

    The question gives the number at the head of one chain; the answer is every variable of that
    chain. Score: IoU of the returned and the expected names.
    """

    name = "variable-tracking"
    metric = "iou"
    max_new_tokens = 48
    example = "NAME, NAME"

    def __init__(self, chains: int = 2, hops: int = 3) -> None:
        if chains < 1 or hops < 1:
            raise TaskError(f"task {self.name}: chains and hops must be >= 1, got {chains}, {hops}")
        self.chains = chains
        self.hops = hops

    def params(self) -> dict[str, Any]:
        return {"chains": self.chains, "hops": self.hops}

    def draft(self, rng: random.Random, target: int) -> Draft:
        names: set[str] = set()
        while len(names) < self.chains * (self.hops + 1):
            names.add("".join(rng.choices(string.ascii_uppercase, k=5)))
        pool = sorted(names)
        rng.shuffle(pool)
        values = rng.sample(range(10_000, 99_999), self.chains)
        statements: list[str] = []
        depths: list[float] = []
        for c in range(self.chains):
            chain = pool[c * (self.hops + 1) : (c + 1) * (self.hops + 1)]
            points = sorted(rng.random() for _ in chain)
            statements.append(f"VAR {chain[0]} = {values[c]}.")
            statements += [f"VAR {b} = VAR {a}." for a, b in itertools.pairwise(chain)]
            depths += points
        asked = rng.randrange(self.chains)
        expected = tuple(pool[asked * (self.hops + 1) : (asked + 1) * (self.hops + 1)])
        filler = FillerStream(rng)
        head = (
            "Memorize every variable assignment (lines starting with VAR) in the text below; "
            "a variable can be assigned a number or the value of another variable."
        )
        question = f"Question: which variables are assigned the value {values[asked]}, directly or through other variables?"

        def render(n: int) -> str:
            body = " ".join(spread(statements, filler.sentences(n), depths))
            return f"{head}\n\n{body}\n\n{self.closing(question)}"

        return Draft(render, expected, max_fill=10 * target, meta={"value": values[asked]})

    def score(self, output: str, sample: Sample) -> float:
        # names are five capital letters; anything else in the answer is wording around them
        return iou(_NAME.findall(extract_answer(output)), sample.expected)
