"""Budgets as the reference study ran them: its published line counts and (alpha, min_budget)
pairs per (length, level), our rule where it published none, and the kernels that use them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scalelaw.kernels import specs, study_budgets
from scalelaw.kernels.study_budgets import (
    FLEX_LEVELS,
    PUBLISHED,
    VS_LEVELS,
    flexprefill_budget,
    vertical_slash_budget,
)

PAPER = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper"


def _published(method: str) -> dict[int, list[str]]:
    path = PAPER / "budgets_to_compression.csv"
    if not path.exists():
        pytest.skip("the reference data folder is not next to the checkout")
    rows: dict[int, list[str]] = {}
    with path.open() as fh:
        for row in csv.DictReader(line for line in fh if not line.startswith("#")):
            if row["method"] == method:
                rows.setdefault(int(row["seq_len"]), []).append(row["value"])
    return rows


def test_vertical_slash_counts_are_the_published_ones_in_level_order() -> None:
    published = _published("Vertical-Slash")
    assert {n: [int(v) for v in vals] for n, vals in published.items()} == {
        n: list(row) for n, row in study_budgets.VS_LINES.items()
    }
    # the published implied targets are the levels, in the same order
    for length, row in study_budgets.VS_LINES.items():
        for level, lines in zip(VS_LEVELS, row, strict=True):
            budget = vertical_slash_budget(length, level)
            assert (budget.lines, budget.source) == (lines, PUBLISHED)


def test_flexprefill_pairs_are_the_published_ones() -> None:
    published = _published("FlexPrefill")
    ours = {n: [f"{a:g};{m}" for a, m in pairs] for n, pairs in study_budgets.FLEX_PAIRS.items()}
    assert published == ours
    # alpha = 0 rows keep the vertical-slash count of their level (the study's choice)
    for length, pairs in study_budgets.FLEX_PAIRS.items():
        for level, (alpha, min_budget) in zip(FLEX_LEVELS, pairs, strict=True):
            if alpha == 0:
                assert min_budget == vertical_slash_budget(length, level).lines


def test_levels_match_within_rounding() -> None:
    # 3.333 is the level 3.33 and 1.429 the level 1.43, as grids write them either way
    assert vertical_slash_budget(16384, 10 / 3).lines == 576
    assert vertical_slash_budget(16384, 1.429).source == PUBLISHED


def test_unpublished_lengths_and_levels_are_ours_and_monotone() -> None:
    mid = vertical_slash_budget(24576, 10)
    assert 315 < mid.lines < 448 and mid.source.startswith("ours")
    short = vertical_slash_budget(4096, 10)
    assert short.lines < 315 and "(L/16384)^0.78" in short.source
    between = vertical_slash_budget(16384, 12)
    assert 240 < between.lines < 315 and "power of C" in between.source
    # sparser asks for fewer lines at every length
    for length in (2048, 16384, 100_000, 262_144):
        counts = [vertical_slash_budget(length, c).lines for c in (2, 5, 10, 20, 30)]
        assert counts == sorted(counts, reverse=True), (length, counts)
    assert vertical_slash_budget(64, 1.43).lines <= 64


def test_flexprefill_unpublished_lengths_take_the_nearest() -> None:
    assert flexprefill_budget(32768, 5) == study_budgets.StudyBudget(
        alpha=0.7, min_budget=512, source=PUBLISHED
    )
    far = flexprefill_budget(128000, 10)
    assert (far.alpha, far.min_budget) == (0.55, 512) and "65536" in far.source
    # alpha = 0 away from the table: min_budget is the vertical-slash count there
    sparse = flexprefill_budget(128000, 20)
    assert (sparse.alpha, sparse.min_budget) == (0.0, 480)


def test_study_rule_is_the_default_and_exact_is_a_choice() -> None:
    for name in ("vertical-slash", "flexprefill"):
        spec = specs.get_spec(name)
        assert spec.defaults()["budget_rule"] == "study"
        assert spec.resolve({"budget_rule": "exact"})["budget_rule"] == "exact"
        with pytest.raises(specs.KernelInputError, match=r"budget_rule.*one of"):
            spec.resolve({"budget_rule": "loose"})
    assert specs.task_knobs("vertical-slash", "niah-multikey") == {"window": 512}
    assert specs.task_knobs("vertical-slash", "story-retrieval") == {"window": 512}
    assert specs.task_knobs("vertical-slash", "variable-tracking") == {}
    assert specs.task_knobs("flexprefill", "niah-multikey") == {}


torch = pytest.importorskip("torch")


def test_vertical_slash_runs_the_study_count(qkv) -> None:  # type: ignore[no-untyped-def]
    from scalelaw.kernels import get_method

    q, k, v = qkv(length=2048, d=32)
    study = get_method("vertical-slash").prefill(q, k, v, compression=3.0)
    n = vertical_slash_budget(2048, 3).lines
    assert study.stats["lines_per_head"] == n
    assert "study's budget for level C=3" in study.note or study.reached
    exact = get_method("vertical-slash", budget_rule="exact").prefill(q, k, v, compression=3.0)
    assert exact.stats["lines_per_head"] != n
    assert exact.reached


def test_flexprefill_runs_the_study_pair(qkv) -> None:  # type: ignore[no-untyped-def]
    from scalelaw.kernels import get_method

    q, k, v = qkv(length=2048, d=32)
    res = get_method("flexprefill").prefill(q, k, v, compression=20.0)
    budget = flexprefill_budget(2048, 20)
    assert res.stats["alpha"] == budget.alpha == 0.0
    assert res.stats["min_budget"] == budget.min_budget
