"""Lenient answer parsing and strict scoring.

Models phrase answers in many ways; parsing accepts the tagged format with or without the closing
tag, bullets, numbering, quotes and articles. Scoring then compares the parsed items exactly:
partial credit (fraction of expected items right, in order), IoU of sets, or exact match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TAG = re.compile(r"<\s*answer\s*>(.*?)(?:<\s*/\s*answer\s*>|$)", re.IGNORECASE | re.DOTALL)
_SPLIT = re.compile(r"[,;\n]+|\s+and\s+", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|chapter\s+\d+\s*[:.-])\s*", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")

METRICS = ("partial", "iou", "exact")


def extract_answer(text: str) -> str:
    """The text inside the first `<answer>` tag (closing tag optional), else the whole text."""
    match = _TAG.search(text)
    body = match.group(1) if match else text
    return body.strip()


def normalize(item: str) -> str:
    """Lower-case, without bullets, quotes, trailing punctuation, leading article or extra spaces."""
    item = _BULLET.sub("", item.strip())
    item = item.strip(" \t\"'`*.!?:()[]{}").lower()
    item = _ARTICLE.sub("", item)
    return " ".join(item.split())


def split_items(answer: str) -> list[str]:
    """Items of a list answer: split on commas, semicolons, new lines and 'and'; empties dropped."""
    items = [normalize(part) for part in _SPLIT.split(answer)]
    return [item for item in items if item]


def numbers(answer: str) -> list[str]:
    """Every run of digits, in order, without leading zeros lost (kept as strings)."""
    return _NUMBER.findall(answer)


def partial_credit(predicted: Sequence[str], expected: Sequence[str]) -> float:
    """Fraction of positions where the prediction equals the expected item."""
    if not expected:
        raise ValueError("partial_credit needs at least one expected item")
    hits = sum(1 for i, want in enumerate(expected) if i < len(predicted) and predicted[i] == want)
    return hits / len(expected)


def iou(predicted: Sequence[str], expected: Sequence[str]) -> float:
    """Intersection over union of the two sets (1.0 when both are empty)."""
    p, e = set(predicted), set(expected)
    if not p and not e:
        return 1.0
    return len(p & e) / len(p | e)


def exact_match(predicted: str, expected: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize(predicted) == normalize(expected))
