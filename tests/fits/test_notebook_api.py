"""A fit at home in a notebook: docs/notebook.md runs top to bottom and prints what it says;
`summary()` is ArviZ's numbers, `params`, `fit_report()` and `plot()` agree with the CLI's.

The doc's ```python blocks run in one namespace, as notebook cells: a block whose last
statement is an expression prints that expression's repr, as a notebook shows it. A ```text
block right after a ```python block is that cell's output: the text must match line by line
and each number to 2% (or 0.02), so sampling on another machine does not fail the doc.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import re
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from scalelaw import plots, report
from scalelaw.fits import FitResult, get_card, get_law
from scalelaw.frontier import decide, get_architecture

DOC = Path(__file__).resolve().parents[2] / "docs" / "notebook.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def cells(text: str) -> list[tuple[str, str | None]]:
    """The doc's ```python blocks in order, each with the ```text block right after it."""
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in BLOCK.finditer(text)]
    out = []
    for i, (lang, code, _, end) in enumerate(blocks):
        if lang != "python":
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        shown = None
        if nxt is not None and nxt[0] == "text" and not text[end : nxt[2]].strip():
            shown = nxt[1]
        out.append((code, shown))
    return out


def run_cell(code: str, namespace: dict[str, Any]) -> str:
    """Run one block as a notebook cell; what it printed (and its last expression's repr)."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(tree, str(DOC), "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), str(DOC), "eval"), namespace)
            if value is not None:
                print(repr(value))
    return buffer.getvalue()


def same_output(shown: str, printed: str) -> str | None:
    """Why `printed` is not the output `shown` (text exact, numbers to 2% or 0.02), or None."""
    want = [line.rstrip() for line in shown.strip("\n").splitlines()]
    got = [line.rstrip() for line in printed.strip("\n").splitlines()]
    if len(want) != len(got):
        return f"{len(got)} lines printed, {len(want)} shown"
    for a, b in zip(want, got, strict=True):
        if _shape(a) != _shape(b):
            return f"line differs:\n  shown:   {a}\n  printed: {b}"
        for x, y in zip(NUMBER.findall(a), NUMBER.findall(b), strict=True):
            if not math.isclose(float(x), float(y), rel_tol=0.02, abs_tol=0.02):
                return f"number {y} is not the {x} shown in:\n  {a}"
    return None


def _shape(line: str) -> str:
    """A line with its numbers as #, without spaces, and runs of one character as one (a
    table's column widths follow its numbers' widths)."""
    return re.sub(r"(.)\1+", r"\1", re.sub(r"\s+", "", NUMBER.sub("#", line)))


@pytest.fixture(scope="module")
def notebook() -> tuple[dict[str, Any], list[tuple[str, str | None, str]]]:
    """The doc run top to bottom: its namespace, and each cell with its shown and printed text."""
    namespace: dict[str, Any] = {"__name__": "notebook"}
    ran = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ArviZ's R-hat of a pinned level
        for code, shown in cells(DOC.read_text()):
            ran.append((code, shown, run_cell(code, namespace)))
    plt.close("all")
    return namespace, ran


def test_the_notebook_doc_runs_and_prints_what_it_shows(notebook) -> None:
    _, ran = notebook
    assert len(ran) >= 8
    assert sum(shown is not None for _, shown, _ in ran) >= 5
    for code, shown, printed in ran:
        if shown is None:
            continue
        problem = same_output(shown, printed)
        assert problem is None, f"{problem}\nin the cell:\n{code}"


def test_output_comparison_catches_a_wrong_number_and_wrong_text() -> None:
    assert same_output("alpha 1.241 [1.16, 1.38]\n", "alpha 1.2405 [1.161, 1.381]") is None
    assert same_output("alpha 1.241\n", "alpha 1.40") is not None
    assert same_output("alpha 1.241\n", "beta 1.241") is not None
    assert same_output("a\nb\n", "a") is not None
    assert same_output("│ -1.1   │\n└──────┘", "│ -1.12  │\n└─────┘") is None


def test_bayes_summary_is_arviz_summary(notebook) -> None:
    bayes: FitResult = notebook[0]["bayes"]
    names = bayes.law.param_names
    for prob, kind in ((0.9, "eti"), (0.8, "hdi")):
        ours = bayes.summary(prob=prob, ci_kind=kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs = az.summary(
                bayes.idata, var_names=names, ci_prob=prob, ci_kind=kind, round_to="none"
            )
        assert ours["param"].to_list() == list(theirs.index)
        assert "delta[QuALITY]" in ours["param"].to_list()
        pct = f"{kind}{round(prob * 100)}"
        pairs = {"lower": f"{pct}_lb", "upper": f"{pct}_ub"}
        for column in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"):
            pairs[column] = column
        for mine, arviz_column in pairs.items():
            np.testing.assert_array_equal(
                ours[mine].to_numpy(), theirs[arviz_column].to_numpy(float), err_msg=mine
            )
        median = [np.median(bayes.draws["alpha"])]
        assert ours.filter(ours["param"] == "alpha")["median"].to_list() == median


def test_params_are_the_reports_estimates(notebook) -> None:
    namespace = notebook[0]
    for result in (namespace["lsq"], namespace["bayes"]):
        params = result.params
        assert set(params) == set(result.law.param_names)
        assert isinstance(params["alpha"], float)
        assert params["delta"] == pytest.approx(
            dict(zip(result.levels["task"], result.estimates()["delta"][0], strict=True))
        )
        assert params["delta"]["QuALITY"] == 0.0  # the pinned reference level
        rows = {r["param"]: r["estimate"] for r in report.parameter_rows(result)}
        assert rows["alpha"] == params["alpha"]
        assert rows["delta[SQuAD]"] == params["delta"]["SQuAD"]  # type: ignore[index]


def test_lsq_summary_is_the_bootstrap_and_the_cli_rows(notebook) -> None:
    lsq: FitResult = notebook[0]["lsq"]
    table = lsq.summary(prob=0.8)
    alpha = table.row(table["param"].to_list().index("alpha"), named=True)
    draws = lsq.draws["alpha"]
    assert alpha["estimate"] == lsq.params["alpha"]
    assert alpha["stderr"] == pytest.approx(np.std(draws, ddof=1))
    assert [alpha["lower"], alpha["upper"]] == pytest.approx(np.quantile(draws, [0.1, 0.9]))
    rows = report.parameter_rows(lsq, 0.8)  # one implementation: the CLI reads summary()
    assert [r["param"] for r in rows] == table["param"].to_list()
    assert [r["lower"] for r in rows] == table["lower"].to_list()
    with pytest.raises(ValueError, match="bootstrap"):
        lsq.summary(ci_kind="hdi")
    card = get_card("sparse-frontier-v1:prefill").summary()
    assert card["stderr"].null_count() == card.height  # one draw: no standard error


def test_fit_report_is_the_cli_text_without_markup(notebook) -> None:
    bayes: FitResult = notebook[0]["bayes"]
    text = bayes.fit_report()
    assert text == report.fit_text(bayes)
    assert "\x1b[" not in text and "[bold" not in text and "[/]" not in text
    assert text.splitlines()[0].startswith("sparse-frontier (bayes, 96 rows)")
    assert "delta[SQuAD]" in text and "90% posterior interval" in text
    assert "diagnostics: R^2" in text and "R-hat max" in text
    assert "50% posterior interval" in bayes.fit_report(prob=0.5)
    card = get_card("sparse-frontier-v1:prefill").fit_report()
    assert card.splitlines()[0].startswith("sparse-frontier-v1:prefill (card):")


def test_plot_returns_the_figure_for_every_kind(notebook) -> None:
    namespace = notebook[0]
    bayes, lsq, table = namespace["bayes"], namespace["lsq"], namespace["table"]
    before = plt.get_fignums()
    for kind in plots.KINDS:
        fig = bayes.plot(kind, data=table)
        assert isinstance(fig, Figure) and fig.axes, kind
    assert isinstance(lsq.plot("posterior"), Figure)  # the bootstrap refits' densities
    assert plt.get_fignums() == before  # pyplot holds none of them: a notebook shows each once
    fig, ax = plt.subplots()
    assert lsq.plot("ppc", ax=ax, data=table) is fig
    assert bayes.plot("fit", ax=ax, data=table, tasks=["QuALITY"], at={"L": 16384}) is fig
    with pytest.raises(ValueError, match=r"6 panels \(one per task and L: QuALITY, L = 16K;"):
        bayes.plot("fit", ax=ax, data=table)
    with pytest.raises(ValueError, match="without ax="):
        bayes.plot("trace", ax=ax)
    with pytest.raises(ValueError, match="MCMC chains: fit with FitOptions"):
        lsq.plot("trace")
    plt.close("all")


def test_a_fit_of_an_in_memory_table_asks_for_it_in_python_terms(notebook, tmp_path) -> None:
    lsq: FitResult = notebook[0]["lsq"]
    with pytest.raises(ValueError, match="data=table") as caught:
        lsq.plot("fit")
    assert "--data" not in str(caught.value)
    with pytest.raises(ValueError, match="--data"):  # the command line keeps its flag
        plots.plot(lsq, "fit", tmp_path / "fit.png")
    assert not (tmp_path / "fit.png").exists()


def test_reprs_are_one_readable_line(notebook) -> None:
    law = get_law("sparse-frontier")
    text = repr(law)
    assert text.startswith("Law(name='sparse-frontier', 'score ~ sigmoid(eps + alpha * log(N)")
    assert "delta[task]" in text and "BinOp" not in text
    assert repr(get_law("power-law")).startswith("Law(name='power-law', 'loss ~ E + A / N**alpha'")
    bayes = notebook[0]["bayes"]
    assert repr(bayes) == (
        f"FitResult(law='sparse-frontier', backend='bayes', rows=96, converged={bayes.converged})"
    )
    qwen = [get_architecture("qwen2.5", s) for s in ("7B", "72B")]
    decision = decide("sparse-frontier-v1:prefill", qwen, seq_len=131072, tasks=["NIAH"], draws=1)
    line = repr(decision)
    assert "\n" not in line and len(line) < 250
    assert line.startswith("Decision('sparse-frontier-v1:prefill', prefill at 128K tokens, NIAH")
    assert "of 12 budgets" in line and "critical length" in line
