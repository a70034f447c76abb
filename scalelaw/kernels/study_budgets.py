"""The reference study's budgets as it ran them: line counts and (alpha, min_budget) per length
and level, with the rule we use where the study published nothing. Torch-free.

The study (Nawrot et al. 2025, arXiv 2504.17768 v1 Table 6 / v2 Table 3) fixed each method's
budget per (sequence length, compression level) for every layer and sample, and reported the
compression that resulted. Vertical-slash keeps equal numbers of columns and diagonals; the
study lists the count for ten levels at 16K, 32K, 64K and 128K. FlexPrefill lists seven
(alpha, min_budget) pairs at 16K, 32K and 64K; an alpha of 0 keeps exactly min_budget lines,
which the study set to the vertical-slash count of that level.

The level of each published value is not printed beside it: the tables list the values in the
order of the levels, densest last, so we read vertical-slash's ten as the levels 20 ... 1.43 and
flexprefill's seven as block-sparse's seven levels 20 ... 2 (an inference, marked as ours).

Where the study published nothing (another length, another C) the value is ours, and
`StudyBudget.source` says so:
- another length between the published ones: a power of L through the two nearest (linear in
  log L - log count); beyond them: the nearest published count times (L / L0)^s with one slope
  s for every level, fitted to the whole table (per level the counts grow as L^0.5 at high C
  and as L at low C, and those slopes would cross far from the table);
- another C: likewise a power of C through the two nearest levels at that length;
- flexprefill: the alpha of the nearest published length and the nearest level (log scale);
  where that alpha is 0, min_budget is the vertical-slash count at (L, C), as the study's
  alpha = 0 rows do; otherwise the study's min_budget of 512.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalelaw.study import STUDY_LEVELS

CITATION = "Nawrot et al. 2025, The Sparse Frontier, arXiv 2504.17768 (v1 Table 6, v2 Table 3)"

#: The study's compression levels per prefill method, sparsest first (block-sparse and
#: flexprefill have seven; vertical-slash and the decode methods ten).
VS_LEVELS: tuple[float, ...] = STUDY_LEVELS["vertical-slash"]
BLOCK_SPARSE_LEVELS: tuple[float, ...] = STUDY_LEVELS["block-sparse"]
FLEX_LEVELS: tuple[float, ...] = STUDY_LEVELS["flexprefill"]

#: Vertical-slash columns (= diagonals) per head, per length, in the order of VS_LEVELS.
VS_LINES: dict[int, tuple[int, ...]] = {
    16384: (164, 240, 315, 400, 448, 576, 768, 1024, 1536, 2304),
    32768: (290, 384, 448, 576, 704, 1024, 1536, 2304, 3584, 4608),
    65536: (400, 448, 544, 640, 960, 1280, 2304, 4096, 6144, 8192),
    128000: (480, 768, 1024, 1536, 2048, 3584, 5632, 10240, 13312, 18432),
}

#: FlexPrefill (alpha, min_budget) per length, in the order of FLEX_LEVELS.
FLEX_PAIRS: dict[int, tuple[tuple[float, int], ...]] = {
    16384: ((0.0, 164), (0.0, 240), (0.0, 315), (0.0, 400), (0.55, 512), (0.71, 512), (0.88, 512)),
    32768: ((0.0, 290), (0.0, 384), (0.45, 512), (0.6, 512), (0.7, 512), (0.8, 512), (0.92, 512)),
    65536: (
        (0.0, 400),
        (0.45, 512),
        (0.55, 512),
        (0.7, 512),
        (0.77, 512),
        (0.85, 512),
        (0.94, 512),
    ),
}

#: FlexPrefill's min_budget wherever its alpha is above 0 (the study's configuration).
FLEX_MIN_BUDGET = 512

#: Relative distance within which a requested C is read as a published level (3.333 is 3.33).
LEVEL_MATCH = 0.005

PUBLISHED = "published"


@dataclass(frozen=True)
class StudyBudget:
    """A budget from the study's tables; `source` is "published" or says how we derived it."""

    lines: int = 0
    alpha: float = 0.0
    min_budget: int = 0
    source: str = PUBLISHED


def _level_index(levels: tuple[float, ...], compression: float) -> int | None:
    for i, level in enumerate(levels):
        if abs(compression / level - 1) <= LEVEL_MATCH:
            return i
    return None


def _power_through(x: float, points: list[tuple[float, float]]) -> float:
    """y at x on the power law through the two points nearest x in log scale (x, y > 0)."""
    points = sorted(points)
    if len(points) == 1:
        return points[0][1]
    lx = math.log(x)
    # the segment that holds x, or the end segment nearest it
    i = 0
    while i < len(points) - 2 and lx > math.log(points[i + 1][0]):
        i += 1
    (x0, y0), (x1, y1) = points[i], points[i + 1]
    slope = (math.log(y1) - math.log(y0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + slope * (lx - math.log(x0)))


def _vs_at_published_length(length: int, compression: float) -> tuple[float, str]:
    row = VS_LINES[length]
    i = _level_index(VS_LEVELS, compression)
    if i is not None:
        return float(row[i]), PUBLISHED
    lines = _power_through(compression, list(zip(VS_LEVELS, map(float, row), strict=True)))
    return lines, f"ours: power of C between the study's levels at L={length}"


def _pooled_length_slope() -> float:
    """d ln(count) / d ln(L) over the published table, one slope for every level."""
    xs = [math.log(n) for n in VS_LINES]
    x_mean = sum(xs) / len(xs)
    num = den = 0.0
    for j in range(len(VS_LEVELS)):
        ys = [math.log(row[j]) for row in VS_LINES.values()]
        y_mean = sum(ys) / len(ys)
        num += sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True))
        den += sum((x - x_mean) ** 2 for x in xs)
    return num / den


#: How the study's counts grow with length, pooled over levels (about 0.78): the slope that
#: carries a count beyond the published lengths. Per-level slopes range from 0.5 (sparse) to
#: 1.0 (dense) and would let a denser level keep fewer lines than a sparser one far away.
LENGTH_SLOPE = _pooled_length_slope()


def vertical_slash_budget(length: int, compression: float) -> StudyBudget:
    """Columns (and diagonals) per head the study keeps at this length and C."""
    published = sorted(VS_LINES)
    if length in VS_LINES:
        lines, source = _vs_at_published_length(length, compression)
    elif published[0] < length < published[-1]:
        per_length = [(float(n), _vs_at_published_length(n, compression)[0]) for n in published]
        lines = _power_through(float(length), per_length)
        source = "ours: a power of L between the study's nearest lengths"
    else:
        near = published[0] if length < published[0] else published[-1]
        lines = _vs_at_published_length(near, compression)[0] * (length / near) ** LENGTH_SLOPE
        source = f"ours: the study's count at L={near} times (L/{near})^{LENGTH_SLOPE:.2f}"
    if length not in VS_LINES and _level_index(VS_LEVELS, compression) is None:
        source += ", and a power of C between its levels"
    return StudyBudget(lines=max(1, min(length, round(lines))), source=source)


def flexprefill_budget(length: int, compression: float) -> StudyBudget:
    """(alpha, min_budget) the study runs at this length and C."""
    near_l = min(FLEX_PAIRS, key=lambda n: abs(math.log(length / n)))
    i = _level_index(FLEX_LEVELS, compression)
    sources = []
    if length != near_l:
        sources.append(f"the study's nearest length {near_l}")
    if i is None:
        i = min(range(len(FLEX_LEVELS)), key=lambda j: abs(math.log(compression / FLEX_LEVELS[j])))
        sources.append(f"its nearest level {FLEX_LEVELS[i]:g}")
    alpha, min_budget = FLEX_PAIRS[near_l][i]
    if sources and alpha == 0.0:
        # the study's alpha = 0 rows keep the vertical-slash count of their level
        min_budget = vertical_slash_budget(length, compression).lines
        sources.append("min_budget the vertical-slash count at this L and C")
    source = "ours: " + ", ".join(sources) if sources else PUBLISHED
    return StudyBudget(alpha=alpha, min_budget=min_budget, source=source)
