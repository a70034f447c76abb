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
    # fitted on Qwen2.5 7B-72B at 16K-64K (the study held 128K out)
    card = get_card("sparse-frontier-v1:prefill")
    inside = decide(card, QWEN, FlopsCost(), seq_len=65536, lengths=None, budgets=6)
    assert inside.warnings == [] and inside.extrapolated_sizes() == []
    small = [get_architecture("qwen2.5", s) for s in ("0.5B", "3B")]
    wide = decide(card, small + QWEN, FlopsCost(), seq_len=65536, lengths=None, budgets=6)
    assert wide.extrapolated_sizes() == ["0.5B", "3B"]
    (said,) = wide.warnings
    # the cheapest budgets can only buy the small models, dense and sparse alike: each named once
    assert said.startswith("at ") and "(7.62B to 72.7B): 0.5B, 3B; " in said, said
    long = decide(card, QWEN, FlopsCost(), seq_len=131072, lengths=None, budgets=6)
    assert long.warnings == [
        "L=128K is outside the lengths the fit saw (16K to 64K): every score is extrapolated"
    ]


def with_spans(**ranges: list[float]) -> FitResult:
    """The prefill card as if fitted on other spans (columns params, seq_len, compression)."""
    card = get_card("sparse-frontier-v1:prefill")
    return FitResult.card(card.law, dict(card.meta["values"]), ranges=ranges)


def test_a_sparse_choice_beyond_the_fitted_compressions_is_called_extrapolated() -> None:
    mild = with_spans(params=[7.62e9, 72.71e9], seq_len=[16384.0, 131072.0], compression=[1, 1.5])
    d = decide(mild, QWEN, FlopsCost(), seq_len=65536, lengths=None, budgets=6)
    picked = sorted({c for c in d.to_frame()["sparse_compression"].to_list() if c > 1.53})
    assert picked, "the card picks some compression above 1.5 at this length"
    (said,) = d.warnings
    assert said.startswith("at ") and "compression outside those the fit saw (1 to 1.5)" in said
    assert f"C={', '.join(f'{c:g}' for c in picked)};" in said
    assert d.to_dict()["fitted_spans"]["C"] == [1, 1.5]


def test_a_critical_length_beyond_the_fitted_lengths_is_said() -> None:
    # the card's critical length is about 39K (docs/frontier.md)
    short = with_spans(params=[7.62e9, 72.71e9], seq_len=[8192.0, 16384.0], compression=[1, 20])
    d = decide(short, QWEN, FlopsCost(), seq_len=16384, budgets=4)
    assert d.critical is not None and d.critical.median > 16384 * 1.02
    assert d.warnings == [
        "the critical length lies outside the lengths the fit saw (8K to 16K): there it is the "
        "law's form carried beyond its data"
    ]
    covered = with_spans(params=[7.62e9, 72.71e9], seq_len=[16384.0, 65536.0], compression=[1, 20])
    assert decide(covered, QWEN, FlopsCost(), seq_len=16384, budgets=4).warnings == []
    # every draw crosses at or below the first length scanned (128K): it may lie inside 16K-64K
    late = decide(covered, QWEN, FlopsCost(), seq_len=16384, budgets=4, lengths=[131072, 262144])
    assert late.critical is not None and late.critical.share_below == 1.0
    assert late.warnings == []


def test_a_fit_without_recorded_spans_is_not_called_extrapolated() -> None:
    card = get_card("sparse-frontier-v1:prefill")
    bare = FitResult.card(card.law, dict(card.meta["values"]))  # coefficients alone: no spans
    small = [get_architecture("qwen2.5", "0.5B"), *QWEN]
    d = decide(bare, small, FlopsCost(), seq_len=524288, lengths=None, budgets=6)
    assert d.warnings == [] and d.extrapolated_sizes() == []
