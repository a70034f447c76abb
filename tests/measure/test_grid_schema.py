"""The grid's keys, types and ranges are one schema; its errors keep the grid's one-line words."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from scalelaw.measure import grid as grid_module
from scalelaw.measure.grid import GridError, GridSchema, load_grid, parse_grid

BASE: dict[str, Any] = {
    "lengths": [256, 512],
    "models": ["tiny-llama"],
    "tasks": {"niah-multikey": {"needles": 1}},
    "methods": {"quest": {}},
    "compression": [1, 4],
}
HALF = {"method": "quest", "compression": 4, "page_size": 16}
ENTRY = {"prefill": {"method": "block-sparse", "compression": 4, "block_size": 8}, "decode": HALF}


def _types(prop: dict[str, Any]) -> set[str]:
    return {o["type"] for o in prop.get("oneOf", [prop])}


def test_the_schema_declares_every_top_level_key_with_its_type() -> None:
    schema = GridSchema.model_json_schema()
    props = schema["properties"]
    assert {k: _types(v) for k, v in props.items()} == {
        "name": {"string"},
        "seed": {"integer"},
        "samples": {"integer"},
        "models": {"array"},
        "dtype": {"string"},
        "max_new_tokens": {"integer"},
        "compression_tolerance": {"number"},
        "methods": {"array", "object"},
        "tasks": {"array", "object"},
        "compression": {"array"},
        "budgets": {"array"},
        "lengths": {"array"},
        "combine": {"array"},
    }
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["lengths", "models", "tasks"]
    # the ranges are part of the schema, not only of the checks
    assert props["samples"]["minimum"] == 1 and props["max_new_tokens"]["minimum"] == 0
    assert props["lengths"]["items"] == {"type": "integer", "minimum": 1}
    assert props["compression"]["items"] == {"type": "number", "minimum": 1.0}
    assert props["compression_tolerance"]["exclusiveMinimum"] == 0
    assert all(props[k]["minItems"] == 1 for k in ("models", "lengths", "compression", "budgets"))
    # TOML has no null: an optional key is left out, never offered as null
    assert "null" not in str(props)
    entry = schema["$defs"]["CombineSchema"]
    assert entry["additionalProperties"] is False
    assert sorted(entry["required"]) == ["decode", "prefill"]
    assert set(props) == grid_module.KNOWN_KEYS


def test_the_documented_example_is_a_valid_grid() -> None:
    doc = grid_module.__doc__ or ""
    example = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert example is not None
    data = tomllib.loads(example.group(1))
    assert set(data) <= set(GridSchema.model_fields)
    assert GridSchema.model_validate(data).combine is not None


def test_a_name_that_is_not_a_string_is_refused() -> None:
    # the name becomes the sweep's label; a number there was silently turned into text
    with pytest.raises(GridError, match=r"^g.toml: 'name' must be a string, got 5$"):
        parse_grid({**BASE, "name": 5}, "g.toml")
    assert parse_grid(BASE, "dir/g.toml").name == "g"


@pytest.mark.parametrize("methods", [["dense"], ["quest"]])
def test_nan_is_not_a_compression_ratio(methods: list[str]) -> None:
    # a dense-only grid used to drop it silently; others refused it only as out of reach
    data = {**BASE, "methods": methods, "compression": [1, math.nan]}
    with pytest.raises(
        GridError, match=r"^g.toml: 'compression' holds nan, expected values >= 1.0$"
    ):
        parse_grid(data, "g.toml")


def test_a_boolean_where_an_integer_is_expected_is_refused_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    text = 'lengths = [256]\nmodels = ["tiny-llama"]\ntasks = ["niah-multikey"]\n'
    path.write_text(text + 'methods = ["quest"]\ncompression = [1, 4]\nsamples = true\n')
    with pytest.raises(
        GridError, match=r"grid.toml: 'samples' must be a positive integer, got True$"
    ):
        load_grid(path)
    path.write_text(text + 'methods = ["quest"]\ncompression = [1, true]\n')
    with pytest.raises(
        GridError, match=r"grid.toml: 'compression' holds True, expected float values$"
    ):
        load_grid(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": True}, "'seed' must be an integer, got True"),
        ({"seed": 1.0}, "'seed' must be an integer, got 1.0"),
        ({"samples": 0}, "'samples' must be a positive integer, got 0"),
        ({"models": ["a", 1]}, "'models' must be a non-empty list of model names or paths"),
        ({"models": []}, "'models' must be a non-empty list of model names or paths"),
        ({"dtype": 16}, "'dtype' must be a string, got 16"),
        ({"max_new_tokens": -1}, "'max_new_tokens' must be a non-negative integer, got -1"),
        (
            {"methods": ["quest", 1]},
            r"'methods' must be a list of names or a table of name = \{params\}",
        ),
        ({"methods": {"quest": 16}}, "'methods.quest' must be a table of parameters, got 16"),
        ({"tasks": "niah"}, "'tasks' must be a list of names or a table, got str"),
        ({"tasks": {}}, "'methods' and 'tasks' must not be empty"),
        ({"compression": 4}, "'compression' must be a non-empty list"),
        ({"compression": [1, 0.5]}, "'compression' holds 0.5, expected values >= 1.0"),
        ({"lengths": [256.0]}, "'lengths' holds 256.0, expected int values"),
        ({"budgets": [64, 0]}, "'budgets' holds 0, expected values >= 1"),
        ({"colour": 1, "shade": 2}, r"unknown key\(s\) colour, shade; known: budgets, combine, "),
        ({"lengths": None}, "'lengths' must be a non-empty list"),
        (
            {"methods": ["dense"], "compression": [2]},
            "only 'dense' is listed but 'compression' lacks 1",
        ),
        ({"combine": {}}, r"'combine' must be an array of tables \(\[\[combine\]\] with prefill"),
        ({"combine": [{**ENTRY, "x": 1}]}, r"combine\[0\]: unknown key\(s\) x; an entry has"),
        ({"combine": [{"decode": HALF}]}, r"combine\[0\]: missing 'prefill' \(an entry has both"),
        ({"combine": [{**ENTRY, "decode": 4}]}, r"combine\[0\].decode must be a table \{ method"),
        (
            {"combine": [{**ENTRY, "decode": {"compression": 4}}]},
            r"combine\[0\].decode: 'method' must be a method name, got None",
        ),
        (
            {"combine": [{**ENTRY, "decode": {"method": "quest", "compression": "4"}}]},
            r"combine\[0\].decode: 'compression' holds '4', expected float values",
        ),
        (
            {"combine": [{**ENTRY, "decode": {**HALF, "compression": [4, 0]}}]},
            r"combine\[0\].decode: 'compression' holds 0, expected values >= 1.0",
        ),
    ],
)
def test_schema_errors_keep_the_grids_words(change: dict[str, Any], message: str) -> None:
    with pytest.raises(GridError, match=rf"^g.toml: {message}"):
        parse_grid({**BASE, **change}, "g.toml")


def test_the_first_of_several_errors_is_reported() -> None:
    # unknown keys before missing ones, missing ones before bad values
    with pytest.raises(GridError, match=r"^g.toml: unknown key\(s\) colour;"):
        parse_grid({"colour": 1, "lengths": [-1], "seed": "x"}, "g.toml")
    with pytest.raises(GridError, match=r"^g.toml: missing key 'models'$"):
        parse_grid({k: v for k, v in BASE.items() if k != "models"} | {"seed": "x"}, "g.toml")
