"""`decide` is the frontier API (the command prints it: tests/commands/test_deciding.py), and
stacked fits carry law doubt."""

from __future__ import annotations

import numpy as np
import pytest

from scalelaw.fits import FitResult, get_card, get_law
from scalelaw.fits.stacking import StackedFit
from scalelaw.frontier import FlopsCost, decide, get_architecture

QWEN = [get_architecture("qwen2.5", s) for s in ("7B", "14B", "32B", "72B")]


def test_a_stack_of_disagreeing_laws_is_unsure_where_each_law_is_certain() -> None:
    law = get_law("sparse-frontier-v1:prefill")
    values = dict(get_card("sparse-frontier-v1:prefill").meta["values"])
    # two laws that agree on the grid's scale but not on what compression costs far out
    mild = FitResult.card(law, {**values, "gamma": -0.6})
    harsh = FitResult.card(law, {**values, "gamma": -1.6})
    for f in (mild, harsh):
        f.meta["data_hash"] = "same"
    stacked = StackedFit([mild, harsh], np.array([0.5, 0.5]), "test")
    single = decide(harsh, QWEN, FlopsCost(), seq_len=524288, lengths=None, tasks=["QuALITY"])
    mixed = decide(stacked, QWEN, FlopsCost(), seq_len=524288, lengths=None, tasks=["QuALITY"])
    p_single = np.array(single.to_frame()["p_sparse_better"].to_list(), dtype=float)
    p_mixed = np.array(mixed.to_frame()["p_sparse_better"].to_list(), dtype=float)
    assert set(np.unique(p_single[np.isfinite(p_single)])) <= {0.0, 1.0}
    unsure = mixed.uncertain_budgets()
    assert unsure.height >= 1
    assert np.nanmax(np.abs(p_mixed - p_single)) >= 0.4


def test_task_errors_name_the_source() -> None:
    with pytest.raises(ValueError, match="task 'Poetry' is not a task"):
        decide("sparse-frontier-v1:prefill", QWEN, seq_len=131072, tasks=["Poetry"])


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"budgets": [float("nan")]}, "budgets holds"),
        ({"budgets": [1e16, -1.0]}, "budgets holds"),
        ({"lengths": [0.0, 4096.0]}, "lengths holds"),
        ({"seq_len": float("inf")}, "seq_len holds"),
        ({"compressions": [0.5, 2.0]}, "compressions holds"),
        ({"seq_len": "abc"}, "seq_len holds 'abc', which is not a number"),
        ({"budgets": -3}, "budgets=-3"),
        ({"draws": 0}, "draws=0"),
        ({"prob": 1.5}, "prob=1.5"),
    ],
)
def test_nan_zero_and_negative_inputs_are_refused(kwargs: dict, what: str) -> None:
    args = {"seq_len": 131072.0, **kwargs}
    with pytest.raises(ValueError, match=f"decide: {what}"):
        decide("sparse-frontier-v1:prefill", QWEN, **args)


def test_a_choice_outside_the_fitted_sizes_or_lengths_is_called_extrapolated() -> None:
    card = get_card("sparse-frontier-v1:prefill")  # fitted on Qwen2.5 7B-72B, 16K-128K
    inside = decide(card, QWEN, FlopsCost(), seq_len=131072, lengths=None, budgets=6)
    assert inside.warnings == [] and inside.extrapolated_sizes() == []
    small = [get_architecture("qwen2.5", s) for s in ("0.5B", "3B")]
    wide = decide(card, small + QWEN, FlopsCost(), seq_len=131072, lengths=None, budgets=6)
    assert wide.extrapolated_sizes() == ["0.5B", "3B"]
    (said,) = wide.warnings
    # the cheapest budgets can only buy the small models
    assert said.startswith("at ") and "(7.62B to 72.7B): 0.5B" in said, said
    long = decide(card, QWEN, FlopsCost(), seq_len=524288, lengths=None, budgets=6)
    assert long.warnings == [
        "L=512K is outside the lengths the law was fitted on (16K to 128K): every score is "
        "extrapolated"
    ]


def test_a_fit_without_recorded_spans_is_not_called_extrapolated() -> None:
    card = get_card("sparse-frontier-v1:prefill")
    bare = FitResult.card(card.law, dict(card.meta["values"]))  # coefficients alone: no spans
    small = [get_architecture("qwen2.5", "0.5B"), *QWEN]
    d = decide(bare, small, FlopsCost(), seq_len=524288, lengths=None, budgets=6)
    assert d.warnings == [] and d.extrapolated_sizes() == []
