"""Fitted laws that disagree beyond the grid: the stack is uncertain where one law is sure."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("stacked_decision")


def test_stack_of_fitted_laws_is_uncertain_where_one_law_is_certain_and_wrong(bench) -> None:
    result = bench.run()
    weights = result["weights"]
    assert all(0.05 < w < 0.95 for w in weights.values()), weights  # mixed, not 0/1
    p = result["p_sparse_better"]
    certain_wrong = [
        i
        for i, (one, truth) in enumerate(zip(p["sparse-frontier"], p["truth"], strict=True))
        if abs(one - truth) > 0.99
    ]
    assert certain_wrong, p  # the one-slope law is sure and wrong at some budget
    for i in certain_wrong:
        assert 0.1 < p["stack"][i] < 0.9, p
    # where all agree, the stack keeps the answer
    agree = [i for i in range(len(p["truth"])) if i not in certain_wrong]
    assert all(abs(p["stack"][i] - p["truth"][i]) < 0.1 for i in agree), p
