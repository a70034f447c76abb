"""Frontier and tolerance figures fit to publish (issue 21): a legend for C, no legend entry
for a band that is not drawn, extrapolated lengths shaded, censored tolerance levels marked as
">=", PNG at 200 dpi. The figures are caught as they are saved and their artists inspected."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle
from PIL import Image

from scalelaw.fits import FitResult, get_card, get_law
from scalelaw.fits.stacking import StackedFit
from scalelaw.frontier import decide, get_architecture
from scalelaw.frontier.figures import frontier_figure, tolerance_figure

SIZES = ("7B", "14B", "32B", "72B")


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """Every Figure saved while the test runs."""
    caught: list[Figure] = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        caught.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return caught


def _legend(ax) -> list[str]:  # type: ignore[no-untyped-def]
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _qwen() -> list:  # type: ignore[type-arg]
    return [get_architecture("qwen2.5", s) for s in SIZES]


def test_one_draw_frontier_has_a_legend_for_c_and_no_interval_entry(saved, tmp_path) -> None:
    d = decide("sparse-frontier-v1:prefill", _qwen(), seq_len=131072, draws=1)
    out = d.plot(tmp_path / "frontier.png")
    fig = saved[-1]
    left, middle, right = fig.axes[:3]
    entries = _legend(left)
    assert [e for e in entries if e.startswith("sparse, C = ")] == [
        "sparse, C = 1.43",
        "sparse, C = 5",
        "sparse, C = 20",
    ]
    assert "band" not in left.get_legend().get_title().get_text()  # one draw: no band drawn
    assert not any("interval" in e for e in _legend(right))
    assert not any("interval" in e for e in _legend(middle))
    assert Image.open(out).info["dpi"][0] == pytest.approx(200, abs=1)


def test_lengths_outside_the_fitted_range_are_shaded(saved, tmp_path) -> None:
    d = decide("sparse-frontier-v1:prefill", _qwen(), seq_len=131072, draws=1)
    fitted = (16384.0, 131072.0)  # the study's grid, which the card was fitted on
    frontier_figure(d.frontier, tmp_path / "f.png", critical=d.critical, fitted_lengths=fitted)
    right = saved[-1].axes[2]
    assert "extrapolated (outside the fitted lengths)" in _legend(right)
    shaded = [
        p
        for p in right.patches
        if isinstance(p, Polygon | Rectangle) and str(p.get_label()).startswith("extrapolated")
    ]
    first = shaded[0]
    if isinstance(first, Rectangle):
        end = first.get_x() + first.get_width()
    else:
        end = max(first.get_xy()[:, 0])
    assert end == pytest.approx(16384.0)  # the first span ends where the fitted range starts
    beyond = decide("sparse-frontier-v1:prefill", _qwen(), seq_len=524288, lengths=None, draws=1)
    frontier_figure(beyond.frontier, tmp_path / "beyond.png", fitted_lengths=fitted)
    assert "extrapolated: fitted 16K-128K" in saved[-1].axes[0].get_title()


def test_a_posterior_frontier_draws_and_labels_its_bands(saved, tmp_path) -> None:
    law = get_law("sparse-frontier-v1:prefill")
    values = dict(get_card("sparse-frontier-v1:prefill").meta["values"])
    fits = [FitResult.card(law, {**values, "gamma": g}) for g in (-0.8, -1.2)]
    for f in fits:
        f.meta["data_hash"] = "same"
    stacked = StackedFit(fits, np.array([0.5, 0.5]), "test")
    d = decide(stacked, _qwen(), seq_len=131072, tasks=["QuALITY"], draws=200)
    d.plot(tmp_path / "frontier.png")
    left, _, right = saved[-1].axes[:3]
    assert "90% band" in left.get_legend().get_title().get_text()
    assert "90% interval" in _legend(right)


def _tolerance_rows() -> pl.DataFrame:
    rows = []
    for model, params in (("small", 7e9), ("large", 72e9)):
        for length in (16384.0, 131072.0):
            for task, top in (("QuALITY", 5.0), ("NIAH", 20.0)):
                rows.append(
                    {
                        "model": model,
                        "params": params,
                        "seq_len": length,
                        "task": task,
                        "max_tolerable_compression": top,
                        # NIAH passed every ratio tested: its limit is at least 20, not 20
                        "stopped_at": None if task == "NIAH" else 7.5,
                        "margin": 0.05,
                        "alpha": 0.05,
                    }
                )
    return pl.DataFrame(rows)


def test_tolerance_figure_marks_censored_levels(saved, tmp_path) -> None:
    out = tolerance_figure(_tolerance_rows(), tmp_path / "tolerance.png")
    ax = saved[-1].axes[0]
    assert ">= : every ratio tested passed" in _legend(ax)
    assert Image.open(out).info["dpi"][0] == pytest.approx(200, abs=1)
    # the censored points are drawn as triangles, the others not
    triangles = [
        c for c in ax.collections if len(c.get_offsets()) and len(c.get_paths()[0].vertices) == 4
    ]
    ys = sorted(float(y) for c in triangles for _, y in c.get_offsets())
    assert ys == [20.0] * 4


def test_a_decision_knows_the_lengths_its_law_was_fitted_on(tmp_path) -> None:
    """A fit records its covariates' span (kept in the file); a decision from it, and from the
    study's card, passes the span of lengths to the figure, which shades what lies beyond."""
    import warnings

    from scalelaw.fits import FitOptions, fit, load_fit, simulate
    from scalelaw.frontier import FlopsCost

    card = get_card("sparse-frontier-v1:prefill")
    grid = pl.DataFrame(
        {
            "params": np.repeat([7.6e9, 1.5e10, 3.3e10], 6),
            "seq_len": np.tile(np.repeat([8192.0, 32768.0], 3), 3),
            "compression": np.tile([1.0, 5.0, 20.0], 6),
            "task": ["QuALITY"] * 18,
        }
    )
    table = simulate(card, grid, samples=200, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(table, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=10))
    assert result.meta["ranges"]["seq_len"] == [8192.0, 32768.0]
    again = load_fit(result.save(tmp_path / "fit.nc"))
    assert again.meta["ranges"]["seq_len"] == [8192.0, 32768.0]
    archs = [get_architecture("qwen2.5", s) for s in ("7B", "14B")]
    d = decide(again, archs, FlopsCost(), seq_len=131072, lengths=None, budgets=3)
    assert d.fitted_lengths == (8192.0, 32768.0)
    from_card = decide(card, archs, FlopsCost(), seq_len=131072, lengths=None, budgets=3)
    assert from_card.fitted_lengths == (16384.0, 65536.0)  # the study held 128K out


def test_sizes_outside_the_fitted_ones_are_faded_and_starred(saved, tmp_path) -> None:
    small = [get_architecture("qwen2.5", "0.5B"), *_qwen()]
    d = decide("sparse-frontier-v1:prefill", small, seq_len=131072, lengths=None, draws=1)
    d.plot(tmp_path / "f.png")
    left = saved[-1].axes[0]
    entries = _legend(left)
    assert "0.5B*" in entries and "7B" in entries and "7B*" not in entries
    assert "outside the fitted sizes" in left.get_legend().get_title().get_text()
    inside = decide("sparse-frontier-v1:prefill", _qwen(), seq_len=131072, lengths=None, draws=1)
    inside.plot(tmp_path / "g.png")
    assert "outside" not in saved[-1].axes[0].get_legend().get_title().get_text()
