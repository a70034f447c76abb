"""Fit figures fit to publish (issue 21): every row of the table in a panel (faceted by length),
the band of the expected score and of a new measurement, human labels, a colour-blind-safe
palette, 200 dpi PNG; ArviZ's posterior and predictive figures with titles and task offsets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from PIL import Image

from scalelaw import plots
from scalelaw.fits import FitOptions, fit, get_card, get_law, simulate

#: Okabe-Ito, without its yellow
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": task}
            for n in (7e9, 14e9, 32e9, 72e9)
            for length in (16384.0, 32768.0, 65536.0)
            for c in (1.0, 2.0, 5.0, 10.0)
            for task in ("QuALITY", "SQuAD")
        ]
    )
    return simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=100, seed=0)


@pytest.fixture(scope="module")
def card():  # type: ignore[no-untyped-def]
    return get_card("sparse-frontier-v1:prefill")


@pytest.fixture(scope="module")
def lsq(table):  # type: ignore[no-untyped-def]
    return fit(table, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=20, seed=0))


def _points_drawn(fig) -> int:  # type: ignore[no-untyped-def]
    return sum(
        len(c.get_offsets())
        for a in fig.axes
        for c in a.collections
        if isinstance(c, PathCollection)
    )


def test_fit_figure_shows_every_row_one_panel_per_task_and_length(card, table) -> None:
    fig = plots.figure(card, "fit", data=table)
    titles = [a.get_title() for a in fig.axes if a.get_visible() and a.axison]
    assert len(titles) == 6  # 2 tasks x 3 lengths, not the most common length alone
    assert "QuALITY, L = 16K" in titles and "SQuAD, L = 64K" in titles
    assert _points_drawn(fig) == table.height  # every row of the table is a point


def test_fit_figure_has_both_bands_and_says_which_is_which(card, table) -> None:
    fig = plots.figure(card, "fit", data=table)
    panel = fig.axes[0]
    bands = [c for c in panel.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2 * 4  # per model size: expected score and a new measurement
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "90% band of the expected score" in texts
    assert "90% band of a new measurement" in texts
    # the predictive band (binomial counts of 100 samples) is wider than the expectation's
    widths = []
    for band in bands[:2]:
        ys = band.get_paths()[0].vertices[:, 1]
        widths.append(np.ptp(ys))
    assert widths[0] >= widths[1] > 0


def test_fit_figure_labels_are_human_and_colours_colour_blind_safe(card, table) -> None:
    fig = plots.figure(card, "fit", data=table)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:4] == ["N = 7B", "N = 14B", "N = 32B", "N = 72B"]
    ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]
    assert {"1", "2", "5", "10"} <= set(ticks)
    colours = [matplotlib.colors.to_hex(line.get_color()).upper() for line in fig.axes[0].lines]
    assert colours == OKABE_ITO[:4]
    assert plots.human("N", 7.62e9) == "7.6B" and plots.human("L", 131072) == "128K"
    assert plots.labelled("C", 10.0) == "C = 10" and plots.human("L", 2**20) == "1M"


def test_fit_figure_at_fixes_a_length_and_fits_callers_axes(card, table) -> None:
    fig = plots.figure(card, "fit", data=table, at={"L": 32768})
    assert sorted(a.get_title() for a in fig.axes) == ["QuALITY, L = 32K", "SQuAD, L = 32K"]
    own, ax = plt.subplots()
    assert plots.figure(card, "fit", ax=ax, data=table, tasks=["SQuAD"], at={"seq_len": 16384})
    assert ax.get_title() == "SQuAD, L = 16K"
    with pytest.raises(ValueError, match=r"6 panels .*one per task and L"):
        plots.figure(card, "fit", ax=ax, data=table)
    with pytest.raises(ValueError, match="the table has L = 16384, 32768, 65536"):
        plots.figure(card, "fit", data=table, at={"L": 1000})
    plt.close(own)


def test_png_is_written_at_200_dpi(card, table, tmp_path) -> None:
    path = tmp_path / "table.csv"
    table.write_csv(path)
    out = plots.plot(card, "fit", tmp_path / "fit.png", data=str(path))
    dpi = Image.open(out).info["dpi"]
    assert dpi[0] == pytest.approx(200, abs=1)
    assert plots.plot(card, "fit", tmp_path / "fit.svg", data=str(path)).read_text().count("<svg")


def test_posterior_figure_has_a_title_and_the_task_offsets(lsq) -> None:
    fig = plots.figure(lsq, "posterior")
    assert fig._suptitle is not None
    assert fig._suptitle.get_text().startswith("sparse-frontier: densities of 20 bootstrap")
    assert "delta[QuALITY] = 0: the reference" in fig._suptitle.get_text()
    titles = {a.get_title() for a in fig.axes}
    assert {"alpha", "beta", "eps", "gamma", "delta[SQuAD]"} <= titles
    assert "delta[QuALITY]" not in titles  # pinned at 0: no density to draw


def test_ppc_figure_has_a_title_and_a_legend(lsq, table) -> None:
    fig = plots.figure(lsq, "ppc", data=table)
    assert "posterior predictive check" in fig._suptitle.get_text()
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0] == f"observed ({table.height} rows)"
    assert texts[1].startswith("replicated tables")
