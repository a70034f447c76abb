"""Grid validation refuses ratios a method cannot reach, naming method, length and ratio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scalelaw.measure.grid import GridError, parse_grid


def grid(methods: dict, lengths: list[int], compression: list[float]) -> dict:
    return {
        "lengths": lengths,
        "compression": compression,
        "models": ["tiny-llama"],
        "methods": methods,
        "tasks": ["niah-multikey"],
    }


def test_quest_beyond_its_one_page_floor_is_refused():
    # 64 tokens in pages of 16: the newest page alone is C = 4; C = 200 used to run dense
    with pytest.raises(GridError, match=r"quest cannot reach C=200 at L=64: it reaches C 1 to 4"):
        parse_grid(grid({"quest": {}}, [64, 4096], [1, 200]), "g.toml")


def test_block_as_long_as_the_prompt_is_refused():
    data = grid({"block-sparse": {"block_size": 256}}, [256], [1, 2])
    with pytest.raises(GridError, match=r"g.toml: block-sparse cannot reach C=2 at L=256"):
        parse_grid(data, "g.toml")


def test_every_unreachable_point_is_counted_and_the_fix_named():
    data = grid({"vertical-slash": {}}, [512, 1024, 2048], [1, 10, 20])
    with pytest.raises(GridError) as err:
        parse_grid(data, "g.toml")
    msg = str(err.value)
    assert "vertical-slash cannot reach C=10 at L=512" in msg and "more)" in msg
    assert "scalelaw kernels list --seq-len" in msg


def test_reachable_grids_load_and_bad_knobs_are_left_to_the_run():
    ok = grid({"block-sparse": {"block_size": 8}, "snapkv": {"recent_tokens": 8}}, [256], [1, 4])
    assert len(parse_grid(ok, "g.toml").configurations()) == 4
    # within 10% of the range still counts: the run reports the C it achieved
    assert parse_grid(grid({"quest": {}}, [64], [4.3]), "g.toml")
    assert parse_grid(grid({"quest": {"page": 16}}, [64], [200]), "g.toml")
    assert parse_grid(grid({"no-such-method": {}}, [64], [200]), "g.toml")


def test_validation_does_not_import_torch():
    code = (
        "import sys; from scalelaw.measure.grid import parse_grid; "
        "parse_grid({'lengths': [512], 'models': ['m'], "
        "'methods': ['vertical-slash', 'quest'], 'compression': [1, 2], 'tasks': ['t']}, 'g'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compression_tolerance_is_a_positive_number_outside_the_identity():
    base = grid({"quest": {}}, [256], [1, 4])
    default = parse_grid(base, "g.toml")
    assert default.compression_tolerance == 0.10
    loose = parse_grid({**base, "compression_tolerance": 0.25}, "g.toml")
    assert loose.compression_tolerance == 0.25
    # it judges runs, it changes no numbers: the configurations are the same ones
    ids = [c.config_id for c in default.configurations()]
    assert [c.config_id for c in loose.configurations()] == ids
    for bad in (0, -0.1, "10%", True, float("inf"), float("nan")):
        with pytest.raises(GridError, match=r"g.toml: 'compression_tolerance' must be a positive"):
            parse_grid({**base, "compression_tolerance": bad}, "g.toml")
