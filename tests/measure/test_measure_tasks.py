"""Task generators: length bounds for two tokenizers, determinism, scorers on hand-made answers."""

from __future__ import annotations

import pytest

from scalelaw.measure.tasks import MIN_FILL, TaskError, get_task, list_tasks
from scalelaw.measure.tasks.base import Draft, fit_length
from scalelaw.measure.tasks.scoring import (
    extract_answer,
    iou,
    normalize,
    partial_credit,
    split_items,
)

ALL = list_tasks()


def test_all_six_tasks_are_registered() -> None:
    assert set(ALL) == {
        "niah-multikey",
        "variable-tracking",
        "common-words",
        "story-retrieval",
        "story-multihop",
        "story-filtering",
    }


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("target", [512, 2048])
def test_length_within_bounds_local_tokenizer(name: str, target: int, local_counter) -> None:
    task = get_task(name)
    for index in range(2):
        sample = task.generate(local_counter, target, seed=3, index=index)
        assert sample.n_tokens == local_counter(sample.prompt)
        assert MIN_FILL * target <= sample.n_tokens <= target


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("target", [256, 1024])
def test_length_within_bounds_smollm2_tokenizer(name: str, target: int, smol_counter) -> None:
    task = get_task(name)
    sample = task.generate(smol_counter, target, seed=5, index=1)
    assert sample.n_tokens == smol_counter(sample.prompt)
    assert MIN_FILL * target <= sample.n_tokens <= target


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_sample_other_seed_other_sample(name: str, local_counter) -> None:
    task = get_task(name)
    a = task.generate(local_counter, 1024, seed=7, index=2)
    b = get_task(name).generate(local_counter, 1024, seed=7, index=2)
    c = task.generate(local_counter, 1024, seed=8, index=2)
    assert a == b
    assert a.prompt != c.prompt


def test_sample_content_is_shared_across_lengths(local_counter) -> None:
    # the question of sample i does not depend on the length, only the filler does
    task = get_task("niah-multikey")
    short = task.generate(local_counter, 512, seed=0, index=4)
    long = task.generate(local_counter, 2048, seed=0, index=4)
    assert short.expected == long.expected
    assert short.meta["keys"] == long.meta["keys"]


def test_expected_answer_is_in_the_prompt(local_counter) -> None:
    for index in range(3):
        s = get_task("niah-multikey", needles=5, queries=3).generate(local_counter, 1024, 1, index)
        for key, value in zip(s.meta["keys"], s.expected, strict=True):
            assert f"The secret number of {key} is {value}." in s.prompt
        v = get_task("variable-tracking").generate(local_counter, 1024, 1, index)
        for a, b in zip(v.expected, v.expected[1:], strict=False):
            assert f"VAR {b} = VAR {a}." in v.prompt


def test_common_words_counts(local_counter) -> None:
    task = get_task("common-words", top=4)
    s = task.generate(local_counter, 2048, seed=2, index=0)
    body = [line.split(". ", 1)[1] for line in s.prompt.splitlines() if line[:1].isdigit()]
    counts = {w: body.count(w) for w in set(body)}
    top = sorted(counts, key=lambda w: -counts[w])[:4]
    assert set(top) == set(s.expected)
    rest = max(c for w, c in counts.items() if w not in s.expected)
    assert min(counts[w] for w in s.expected) > rest


def test_story_answers_follow_the_story(local_counter) -> None:
    s = get_task("story-multihop").generate(local_counter, 2048, seed=4, index=0)
    chapters = s.prompt.split("Chapter ")[1:]
    target = chapters[s.meta["chapter"] - 1]
    bought = chapters[s.meta["bought_in"] - 1]
    assert f"bought a {s.expected[0]}" in bought or f"bought an {s.expected[0]}" in bought
    between = chapters[s.meta["bought_in"] : s.meta["chapter"] - 1]
    assert all("bought nothing" in c for c in between)
    assert "travelled to" in target
    f = get_task("story-filtering").generate(local_counter, 2048, seed=4, index=0)
    parts = f.prompt.split("Chapter ")[1:]
    empty = {str(i + 1) for i, c in enumerate(parts) if "bought nothing" in c}
    assert empty == set(f.expected)


def test_unreachable_length_is_a_clear_error(local_counter) -> None:
    with pytest.raises(TaskError, match=r"already has .* tokens, more than the target 50"):
        get_task("story-retrieval").generate(local_counter, 50, seed=0, index=0)
    draft = Draft(lambda n: "word " * min(n, 10), ("x",), max_fill=10)
    with pytest.raises(TaskError, match="could only reach"):
        fit_length(draft, lambda t: len(t.split()), 1000, "toy")


def test_bad_parameters() -> None:
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(TaskError, match="queries <= needles"):
        get_task("niah-multikey", needles=2, queries=3)
    with pytest.raises(TaskError, match="bad parameters"):
        get_task("common-words", colour="red")


def test_parsing_is_lenient() -> None:
    assert extract_answer("blah <Answer> x, y </answer> more") == "x, y"
    assert extract_answer("<answer>only open tag") == "only open tag"
    assert extract_answer("no tags at all") == "no tags at all"
    assert split_items("1. The salt harbor\n2. the Copper Mine.") == ["salt harbor", "copper mine"]
    assert split_items("apple, kite and drum") == ["apple", "kite", "drum"]
    assert normalize('  "A brass compass."  ') == "brass compass"


def test_metrics() -> None:
    assert partial_credit(["1", "9"], ["1", "2"]) == 0.5
    assert partial_credit([], ["1"]) == 0.0
    assert iou(["a", "b", "c"], ["b", "c", "d"]) == 0.5
    assert iou([], []) == 1.0


def _sample(name: str, local_counter, **params):  # type: ignore[no-untyped-def]
    task = get_task(name, **params)
    return task, task.generate(local_counter, 1024, seed=11, index=0)


def test_needle_scorer(local_counter) -> None:
    task, s = _sample("niah-multikey", local_counter, needles=4, queries=2)
    a, b = s.expected
    k1, k2 = s.meta["keys"]
    assert task.score(f"<answer>{a}, {b}</answer>", s) == 1.0
    assert task.score(f"<answer>{b}, {a}</answer>", s) == 0.0  # order matters without key names
    assert task.score(f"{k2}: {b}; {k1}: {a}", s) == 1.0  # key names fix the order
    assert task.score(f"<answer>{a}, 1111111</answer>", s) == 0.5
    assert task.score("I do not know.", s) == 0.0


def test_variable_tracking_scorer(local_counter) -> None:
    task, s = _sample("variable-tracking", local_counter, chains=2, hops=3)
    names = list(s.expected)
    assert task.score("<answer>" + ", ".join(names) + "</answer>", s) == 1.0
    assert task.score(f"The variables are VAR {names[0]} and VAR {names[1]}.", s) == 0.5
    assert task.score(", ".join([*names, "ZZZZZ"]), s) == pytest.approx(4 / 5)


def test_common_words_scorer(local_counter) -> None:
    task, s = _sample("common-words", local_counter, top=4)
    words = list(s.expected)
    assert task.score("<answer>" + ", ".join(reversed(words)) + "</answer>", s) == 1.0
    assert task.score("<answer>" + ", ".join(words[:2]) + "</answer>", s) == 0.5


def test_story_scorers(local_counter) -> None:
    task, s = _sample("story-retrieval", local_counter, queries=2)
    first, second = s.expected
    assert task.score(f"<answer>The {first}, the {second}</answer>", s) == 1.0
    assert task.score(f"<answer>{second}, {first}</answer>", s) == 0.0
    assert task.score(f"<answer>{first}</answer>", s) == 0.5
    task, s = _sample("story-multihop", local_counter)
    assert task.score(f"<answer>a {s.expected[0]}</answer>", s) == 1.0
    assert task.score(f"<answer>a {s.expected[0]}, a tin cup</answer>", s) == 0.0
    task, s = _sample("story-filtering", local_counter)
    listed = ", ".join(s.expected)
    assert task.score(f"<answer>Chapters {listed}</answer>", s) == 1.0
    assert task.score(f"<answer>{listed}, 99</answer>", s) < 1.0


@pytest.mark.parametrize("name", ALL)
def test_question_ends_the_prompt(name: str, local_counter) -> None:
    """Window-based eviction (SnapKV) must see what is asked, not only the answer format."""
    task = get_task(name)
    sample = task.generate(local_counter, 1024, seed=2, index=0)
    last_line = sample.prompt.rsplit("\n", 1)[-1]
    assert last_line.startswith("Question:"), last_line
    assert task.answer_format() in sample.prompt.rsplit("\n", 2)[-2]
    # about 4 characters per token in a real tokenizer: 25 tokens, inside a 32-token window
    assert len(last_line) <= 100
