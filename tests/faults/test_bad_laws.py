"""Law expressions: only the parser's own error escapes, and what parses round-trips.

Reproductions of laws that used to fail outside the parser (recursion, overflow, division by
zero at fit time, a covariate indexed like a group effect), the length limit measured the same
way when parsing and when saving, and a fuzz of the parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.fits import FitFileError, FitResult, Law
from scalelaw.fits.expr import (
    MAX_LENGTH,
    BinOp,
    Call,
    Expr,
    ExprError,
    Group,
    Name,
    Neg,
    Num,
    parse,
)
from scalelaw.fits.law import Param

runner = CliRunner()
FUZZ = settings(max_examples=300, derandomize=True, deadline=None)


def shape(e: Expr) -> Any:
    """The structure of a tree, for comparing two parses."""
    if isinstance(e, Num):
        return ("num", e.value)
    if isinstance(e, Name):
        return ("name", e.name)
    if isinstance(e, Group):
        return ("group", e.param, e.column)
    if isinstance(e, BinOp):
        return ("op", e.op, shape(e.left), shape(e.right))
    if isinstance(e, Neg):
        return ("neg", shape(e.operand))
    assert isinstance(e, Call)
    return ("call", e.func, tuple(shape(a) for a in e.args))


def round_trips(text: str) -> None:
    """`text` is refused with ExprError, or its printed form parses to the same tree."""
    try:
        expr = parse(text)
    except ExprError:
        return
    printed = str(expr)
    assert len(printed) <= MAX_LENGTH
    again = parse(printed)
    assert shape(again) == shape(expr), (text, printed)
    assert str(again) == printed


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("laws") / "t.csv"
    path.write_text(
        "params,seq_len,compression,task,score\n7e9,16384,1,QuALITY,0.8\n1e10,16384,2,SQuAD,0.7\n"
    )
    return str(path)


@pytest.mark.parametrize(
    ("law", "naming"),
    [
        ("-" * 1990 + "N", "nests deeper"),
        ("(" * 250 + "N" + ")" * 250, "cannot parse"),
        ("(((N)))", "no parameters"),
        ("1" * 400 + " * N", "too large"),
        ("E + 1/0*N", "'1 / 0'"),
        ("10**10000*N", "'10**10000'"),
        ("E + log(0) * N", "'log(0)'"),
        ("E + (-8)**0.5 * N", "finite"),
        ("E + N[task]", "'N' is a covariate"),
        ("delta[task] + delta * N", "'delta'"),
        ("E + \x00N", "cannot parse"),
        ("E + __import__('os') * N", "not allowed"),
        # the response's numerator: one fitted level per outcome (R^2 1.000 on any table)
        ("E + a * log(N) + d[correct]", "groups by the response column (score is correct"),
    ],
)
def test_laws_that_failed_outside_the_parser(table: str, law: str, naming: str) -> None:
    result = runner.invoke(app, ["fit", table, "--law", law, "--backend", "lsq"])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and naming in lines[0], lines


def _long_law(terms: int) -> str:
    # compact text that prints longer: the printed form puts spaces around operators
    return "+".join(f"alpha{i}*N" for i in range(terms))


def test_the_length_limit_is_measured_on_the_printed_form() -> None:
    text = _long_law(150)
    assert len(text) <= MAX_LENGTH
    with pytest.raises(ExprError, match="characters long when written out"):
        parse(text)
    fits = _long_law(100)
    assert len(str(parse(fits))) <= MAX_LENGTH


def test_a_law_too_long_to_read_back_is_not_saved(tmp_path: Path) -> None:
    # built from symbols rather than parsed, so only the save can refuse it
    names = [f"alpha{i}" for i in range(150)]
    expr: Expr = Num(0.0)
    for n in names:
        expr = expr + Name(n) * Name("N")
    law = Law("long", expr, covariates=("N",), params=tuple(Param(n) for n in names))
    card = FitResult.card(law, dict.fromkeys(names, 1.0))
    with pytest.raises(FitFileError, match="cannot save law 'long'"):
        card.save(tmp_path / "long.nc")
    assert not list(tmp_path.iterdir())


def test_a_traced_law_meets_the_same_rules() -> None:
    def overflowing(N: Any, E: Any) -> Any:
        return E + 10.0**300 * 10.0**300 * N

    with pytest.raises(ExprError):
        Law.from_function(overflowing)


# --- fuzz ---------------------------------------------------------------------------------------
NAMES = st.sampled_from(["N", "L", "C", "E", "A", "alpha", "delta", "task", "x_1", "log", "_x"])
NUMBERS = st.one_of(
    st.integers(0, 10**30).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e308", "1e-400", "0", "0.5", "1" * 400, "10", "2", "1j", "True"]),
)
ATOMS = st.one_of(NAMES, NUMBERS, st.builds(lambda a, b: f"{a}[{b}]", NAMES, NAMES))


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["+", "-", "*", "/", "**", "%", "<", "@", "//"])
    unary = st.sampled_from(["log", "exp", "sqrt", "sigmoid", "tanh", "open", "minimum"])
    binary = st.sampled_from(["minimum", "maximum", "logaddexp", "log"])
    return st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", children, ops, children),
        st.builds(lambda a, op, b: f"{a}{op}{b}", children, ops, children),
        st.builds(lambda a: f"-{a}", children),
        st.builds(lambda a: f"+{a}", children),
        st.builds(lambda a: f"({a})", children),
        st.builds(lambda f, a: f"{f}({a})", unary, children),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", binary, children, children),
    )


EXPRESSIONS = st.recursive(ATOMS, _extend, max_leaves=40)
TOKENS = st.lists(
    st.sampled_from(
        ["N", "L", "E", "a", "1", "0", "9", ".", "e", "+", "-", "*", "**", "/", "(", ")", "[",
         "]", ",", " ", "log", "exp", "_", "é", "ℕ", "\x00", "\ud800", "'", "lambda", ":"]
    ),
    max_size=40,
).map("".join)  # fmt: skip


@FUZZ
@given(EXPRESSIONS)
def test_fuzz_expressions_round_trip_or_are_refused(text: str) -> None:
    round_trips(text)


@FUZZ
@given(TOKENS)
def test_fuzz_token_soup_round_trips_or_is_refused(text: str) -> None:
    round_trips(text)


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_any_text_round_trips_or_is_refused(text: str) -> None:
    round_trips(text)


@pytest.mark.parametrize("depth", [150, 199, 200, 201, 1000, 5000])
@pytest.mark.parametrize("template", ["-{}", "log({})", "N**{}", "E + {}"])
def test_deep_nesting_round_trips_or_is_refused(depth: int, template: str) -> None:
    text = "N"
    for _ in range(depth):
        text = template.format(text)
    round_trips(text)


def test_the_python_api_refuses_the_same_laws() -> None:
    from scalelaw.fits import FitOptions, fit
    from scalelaw.fits.law import Law

    with pytest.raises(ExprError, match="'N' is a covariate and cannot be a group effect"):
        Law.from_string("E + N[task]", covariates=("N",))
    bare = Law.from_string("N", covariates=("N",))
    with pytest.raises(ValueError, match="has no parameters to fit"):
        fit("unused.csv", bare, FitOptions(backend="lsq"))
