"""Grids with token budgets and [[combine]] entries: expansion, identity and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scalelaw.measure.grid import GridError, load_grid, parse_grid

REPO = Path(__file__).resolve().parents[2]


def grid(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "lengths": [256, 512],
        "models": ["tiny-llama"],
        "tasks": {"niah-multikey": {"needles": 1}},
        "samples": 2,
        "max_new_tokens": 3,
    }
    return {**base, **extra}


def test_config_ids_of_a_plain_grid_are_unchanged() -> None:
    # pinned before budgets and combined runs existed: stores of earlier sweeps stay resumable
    g = parse_grid(
        grid(compression=[1, 4], methods={"block-sparse": {"block_size": 8}, "quest": {}}), "g"
    )
    ids = {c.label(): (c.config_id, c.compute_id) for c in g.configurations()}
    assert ids["tiny-llama niah-multikey L=256 block-sparse C=1"] == (
        "a1e4d6f3c15d3974",
        "e55bc30d5debe956",
    )
    assert ids["tiny-llama niah-multikey L=256 block-sparse C=4"][0] == "80f9cb402b62bccb"
    assert ids["tiny-llama niah-multikey L=256 quest C=1"] == (
        "f8faf14366820a32",
        "e55bc30d5debe956",
    )
    assert ids["tiny-llama niah-multikey L=512 quest C=4"][0] == "c2619961d9c1e301"


def test_budgets_become_the_ratio_of_each_length() -> None:
    g = parse_grid(grid(compression=[1, 2], budgets=[64, 128, 256], methods=["quest"]), "g.toml")
    points = {(c.seq_len, c.compression): c.budget for c in g.configurations()}
    assert points == {
        (256, 1.0): None,
        (256, 2.0): 128,  # the listed ratio 2 is also 256 / 128: one configuration
        (256, 4.0): 64,
        (512, 1.0): None,
        (512, 2.0): 256,
        (512, 4.0): 128,
        (512, 8.0): 64,
    }
    # budget 256 keeps the whole 256-token prompt: skipped there, with a note
    assert g.notes == ("g.toml: budget 256 keeps every token at L=256 (C <= 1); skipped there, "
                       "the dense point is compression = 1",)  # fmt: skip


def test_a_budget_does_not_enter_the_identity() -> None:
    by_ratio = parse_grid(grid(compression=[4], methods=["quest"], lengths=[512]), "g")
    by_budget = parse_grid(grid(budgets=[128], methods=["quest"], lengths=[512]), "g")
    (a,), (b,) = by_ratio.configurations(), by_budget.configurations()
    assert b.budget == 128 and a.budget is None
    assert a.config_id == b.config_id and a.compute_id == b.compute_id
    assert b.label() == "tiny-llama niah-multikey L=512 quest C=4 (budget 128)"


def test_a_budget_beyond_reach_is_refused_naming_method_length_and_budget() -> None:
    with pytest.raises(GridError, match=r"g.toml: budget 8: quest cannot reach C=32 at L=256"):
        parse_grid(grid(budgets=[8], methods=["quest"]), "g.toml")


def test_budgets_that_give_nothing_are_refused() -> None:
    with pytest.raises(GridError, match="no configuration to measure"):
        parse_grid(grid(budgets=[512, 1024], methods=["quest"]), "g.toml")
    with pytest.raises(GridError, match=r"missing key 'compression' \(or 'budgets'\)"):
        parse_grid(grid(methods=["quest"]), "g.toml")
    with pytest.raises(GridError, match="'budgets' holds 0"):
        parse_grid(grid(budgets=[0], methods=["quest"]), "g.toml")


COMBINE = {
    "prefill": {"method": "block-sparse", "compression": [1, 4], "block_size": 8},
    "decode": {"method": "quest", "compression": 4, "page_size": 16},
}


def test_combine_entries_expand_to_every_ratio_pair() -> None:
    methods = {"quest": {"page_size": 16}}
    g = parse_grid(grid(combine=[COMBINE], methods=methods, compression=[4]), "g.toml")
    configs = g.configurations()
    combined = [c for c in configs if c.combined]
    pairs = [(c.compression, c.decode_compression) for c in combined]
    assert pairs == [(1.0, 4.0), (4.0, 4.0)] * 2
    first = combined[0]
    assert first.method_label == "block-sparse+quest"
    assert first.method_params == '{"block_size":8}' and first.decode_params == '{"page_size":16}'
    assert first.label() == "tiny-llama niah-multikey L=256 block-sparse+quest C=1+4"
    # a dense prefill leaves quest alone: the combined point shares the run of quest with the
    # same knobs
    quest = next(c for c in configs if c.method == "quest" and c.seq_len == 256)
    assert first.compute_id == quest.compute_id and first.config_id != quest.config_id
    assert len({c.config_id for c in configs}) == len(configs)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**COMBINE, "prefill": {"method": "snapkv", "compression": 4}},
            r"g.toml: combine\[0\].prefill: 'snapkv' is a decode method; the prefill slot takes "
            "block-sparse, vertical-slash, flexprefill",
        ),
        (
            {**COMBINE, "decode": {"method": "flexprefill", "compression": 4}},
            r"combine\[0\].decode: 'flexprefill' is a prefill method; the decode slot takes quest",
        ),
        (
            {**COMBINE, "decode": {"method": "dense", "compression": 1}},
            r"combine\[0\].decode: 'dense' is not a sparse method",
        ),
        ({"prefill": COMBINE["prefill"]}, r"combine\[0\]: missing 'decode'"),
        ({**COMBINE, "both": 1}, r"combine\[0\]: unknown key\(s\) both"),
        (
            {**COMBINE, "decode": {"method": "quest", "page": 16, "compression": 4}},
            r"combine\[0\].decode: quest: unknown knob 'page'",
        ),
        (
            {**COMBINE, "decode": {"method": "quest"}},
            r"combine\[0\].decode: missing 'compression'",
        ),
        (
            {**COMBINE, "decode": {"method": "quest", "compression": 64}},
            r"combine\[0\].decode: quest cannot reach C=64 at L=256",
        ),
    ],
)
def test_combine_entries_are_checked_by_the_method_spec(entry: dict, message: str) -> None:
    with pytest.raises(GridError, match=message):
        parse_grid(grid(combine=[entry]), "g.toml")


def test_a_grid_of_combined_runs_alone_loads_and_budgets_need_methods() -> None:
    assert len(parse_grid(grid(combine=[COMBINE]), "g").configurations()) == 4
    with pytest.raises(GridError, match="'budgets' apply to the methods"):
        parse_grid(grid(combine=[COMBINE], budgets=[64]), "g.toml")


def test_example_grid_validates() -> None:
    g = load_grid(REPO / "examples" / "grids" / "combined.toml")
    assert g.combine and g.budgets
    assert any(c.combined for c in g.configurations())
