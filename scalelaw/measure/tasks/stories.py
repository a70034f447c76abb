"""Story tasks over a generated multi-chapter narrative.

Each chapter sends the hero to a new place, where they may buy one item and do one activity,
padded with descriptive filler. Three questions are asked of the same kind of story:
retrieval (where was the hero in given chapters), multi-hop (the last item bought before
reaching a given place) and filtering (chapters in which nothing was bought).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from scalelaw.measure.tasks import words
from scalelaw.measure.tasks.base import Draft, FillerStream, Sample, Task, TaskError
from scalelaw.measure.tasks.scoring import (
    exact_match,
    extract_answer,
    iou,
    normalize,
    numbers,
    partial_credit,
    split_items,
)


@dataclass(frozen=True)
class Story:
    hero: str
    places: tuple[str, ...]
    items: tuple[str | None, ...]
    activities: tuple[str, ...]


def draw_story(rng: random.Random, chapters: int) -> Story:
    if not 3 <= chapters <= min(len(words.PLACES), len(words.ITEMS)):
        raise TaskError(f"stories need 3..{len(words.ITEMS)} chapters, got {chapters}")
    hero = rng.choice(words.PEOPLE)
    places = tuple(rng.sample(words.PLACES, chapters))
    bought = [rng.random() < 0.65 for _ in range(chapters)]
    # at least two purchases (multi-hop needs one before a later chapter) and one empty chapter
    bought[0] = True
    bought[rng.randrange(1, chapters)] = True
    if all(bought):
        bought[rng.randrange(1, chapters)] = False
    pool = rng.sample(words.ITEMS, chapters)
    items = tuple(pool[i] if b else None for i, b in enumerate(bought))
    activities = tuple(rng.choice(words.ACTIVITIES) for _ in range(chapters))
    return Story(hero, places, items, activities)


class StoryTask(Task):
    """Shared story construction; subclasses ask the question and score the answer."""

    max_new_tokens = 40
    #: chapters per token of target length, bounded to [min_chapters, max_chapters]
    tokens_per_chapter: ClassVar[int] = 160

    def __init__(self, min_chapters: int = 4, max_chapters: int = 20) -> None:
        if not 3 <= min_chapters <= max_chapters <= len(words.ITEMS):
            raise TaskError(
                f"task {self.name}: need 3 <= min_chapters <= max_chapters <= {len(words.ITEMS)}"
            )
        self.min_chapters = min_chapters
        self.max_chapters = max_chapters

    def params(self) -> dict[str, Any]:
        return {"min_chapters": self.min_chapters, "max_chapters": self.max_chapters}

    def chapters_for(self, target: int) -> int:
        return max(self.min_chapters, min(self.max_chapters, target // self.tokens_per_chapter))

    def question(
        self, rng: random.Random, story: Story
    ) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        raise NotImplementedError

    def draft(self, rng: random.Random, target: int) -> Draft:
        story = draw_story(rng, self.chapters_for(target))
        question, expected, meta = self.question(rng, story)
        filler = FillerStream(rng)
        h = story.hero
        head = f"Read the story of {h} below, chapter by chapter, and answer the question after it."

        def render(n: int) -> str:
            fill = filler.sentences(n)
            k = len(story.places)
            # filler sentences dealt round-robin so every chapter grows evenly
            per = [fill[i::k] for i in range(k)]
            parts = []
            for i in range(k):
                lines = [f"Chapter {i + 1}.", f"{h} travelled to {story.places[i]}."]
                lines += per[i][: len(per[i]) // 2]
                item = story.items[i]
                lines.append(
                    f"There {h} bought {item}."
                    if item
                    else f"{h} looked around but bought nothing."
                )
                lines.append(f"{h} also {story.activities[i]}.")
                lines += per[i][len(per[i]) // 2 :]
                parts.append(" ".join(lines))
            body = "\n\n".join(parts)
            return f"{head}\n\n{body}\n\n{self.closing('Question: ' + question)}"

        return Draft(render, expected, max_fill=10 * target, meta=meta)


def _chapter_list(chapters: list[int]) -> str:
    names = [str(c) for c in chapters]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class StoryRetrievalTask(StoryTask):
    """Where was the hero in `queries` given chapters? Partial credit, in order."""

    name = "story-retrieval"
    metric = "partial"
    example = "place, place"

    def __init__(self, queries: int = 2, min_chapters: int = 4, max_chapters: int = 20) -> None:
        super().__init__(min_chapters, max_chapters)
        if not 1 <= queries <= min_chapters:
            raise TaskError(f"task {self.name}: need 1 <= queries <= min_chapters, got {queries}")
        self.queries = queries

    def params(self) -> dict[str, Any]:
        return {**super().params(), "queries": self.queries}

    def question(
        self, rng: random.Random, story: Story
    ) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        asked = sorted(rng.sample(range(len(story.places)), self.queries))
        chapters = [a + 1 for a in asked]
        what = "place" if self.queries == 1 else "places, in chapter order,"
        q = f"To which {what} did {story.hero} travel in chapter {_chapter_list(chapters)}?"
        return q, tuple(normalize(story.places[a]) for a in asked), {"chapters": chapters}

    def score(self, output: str, sample: Sample) -> float:
        return partial_credit(split_items(extract_answer(output)), sample.expected)


class StoryMultiHopTask(StoryTask):
    """The last item bought before the hero travelled to a given place. Exact match."""

    name = "story-multihop"
    metric = "exact"
    example = "item"

    def question(
        self, rng: random.Random, story: Story
    ) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        candidates = list(range(1, len(story.places)))
        chapter = rng.choice(candidates)
        before = [i for i in range(chapter) if story.items[i]]
        last = story.items[before[-1]]
        assert last is not None
        q = f"What was the last item {story.hero} bought before travelling to {story.places[chapter]}?"
        return q, (normalize(last),), {"chapter": chapter + 1, "bought_in": before[-1] + 1}

    def score(self, output: str, sample: Sample) -> float:
        items = split_items(extract_answer(output))
        return exact_match(items[0], sample.expected[0]) if len(items) == 1 else 0.0


class StoryFilteringTask(StoryTask):
    """The chapters in which the hero bought nothing. IoU of chapter numbers."""

    name = "story-filtering"
    metric = "iou"
    example = "number, number"

    def question(
        self, rng: random.Random, story: Story
    ) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        empty = tuple(str(i + 1) for i, item in enumerate(story.items) if item is None)
        q = f"In which chapters did {story.hero} buy nothing? List the chapter numbers."
        return q, empty, {}

    def score(self, output: str, sample: Sample) -> float:
        return iou(numbers(extract_answer(output)), sample.expected)
