"""The decision-calibration benchmark: its truths, its scores, its resumable results file."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest


@pytest.fixture(scope="module")
def dc(benchmark_script):
    return benchmark_script("decision_calibration")


def test_truths_and_grid_are_the_issue_s(dc) -> None:
    grid = dc.grid()
    assert grid.height == 3 * 3 * 11 * 3  # 7B/14B/32B x 16K-64K x 11 ratios x 3 tasks
    assert sorted(grid["seq_len"].unique().to_list()) == [16384, 32768, 65536]
    from scalelaw.fits import predict_draws

    floor = predict_draws(dc.truth("floor"), grid)
    assert floor.min() >= 0.25 and floor.max() <= 0.85
    card, kappa = (predict_draws(dc.truth(n), grid) for n in ("card", "kappa"))
    at_32k = (grid["seq_len"] == 32768).to_numpy()
    assert np.allclose(card[:, at_32k], kappa[:, at_32k])  # the slopes agree at the pivot
    assert not np.allclose(card, kappa)


def test_scores_count_confident_errors_and_brier(dc) -> None:
    rows = [
        {"true": [1.0, 0.0, 1.0, 0.0], "stack": [0.97, 0.96, 0.5, 0.01]},
        {"true": [1.0, float("nan")], "stack": [0.02, 0.4]},
    ]
    s = dc.score(rows, "stack")
    assert s["points"] == 5  # the NaN decision point is not scored
    assert s["confident_wrong"] == 2  # 0.96 when dense wins, 0.02 when sparse wins
    expected = np.mean([(0.97 - 1) ** 2, 0.96**2, 0.5**2, 0.01**2, (0.02 - 1) ** 2])
    assert np.isclose(s["brier"], expected)
    assert sum(n for _, _, n, _, _ in s["reliability"]) == 5


def test_a_rerun_resumes_from_the_results_file(dc, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "d.jsonl"
    done = {"truth": "card", "seed": 0, "true": [1.0], "stack": [0.9], "single": [1.0],
            "weights": {"a": 1.0}, "headline": None, "seconds": 1.0}  # fmt: skip
    out.write_text(json.dumps(done) + "\n")
    monkeypatch.setattr(dc, "one_set", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    dc.main(["--sets", "1", "--truths", "card", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "1 sets, 1 decision points, 0 confident errors, Brier 0.0100" in printed
    assert isinstance(dc.grid(), pl.DataFrame)


def test_a_confident_error_is_shown_against_each_form_alone(dc, tmp_path, capsys) -> None:
    out = tmp_path / "d.jsonl"
    row = {"truth": "kappa", "seed": 3, "true": [0.0, 1.0], "stack": [0.99, 0.9],
           "weights": {"a": 0.8, "b": 0.2}, "forms": {"a": [1.0, 1.0], "b": [0.6, 0.8]},
           "headline": None, "seconds": 1.0}  # fmt: skip
    out.write_text(json.dumps(row) + "\n")
    dc.main(["--seeds", "3", "--truths", "kappa", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "Confident errors in set 3: 1 (largest stacking weight: a 0.80)" in printed
    assert "- a alone: P = 1.00" in printed and "- b alone: P = 0.60" in printed
    assert dc.seed_list("11,0-2") == [11, 0, 1, 2]
