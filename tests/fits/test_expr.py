"""The law expression language: what it accepts, what it refuses, and round trips."""

from __future__ import annotations

import numpy as np
import pytest

from scalelaw.fits import ExprError, Law, parse
from scalelaw.fits.expr import Group


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("N.__class__", "attribute access"),
        ("__import__('os')", "not allowed"),
        ("__builtins__", "may not start with '_'"),
        ("lambda x: x", "lambdas are not allowed"),
        ("open('f')", "function 'open' is not allowed"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("np.log(N)", "attribute access"),
        ("log(N, 2)", "takes 1 argument"),
        ("log(x=N)", "no keyword arguments"),
        ("N if C else L", "'IfExp' is not allowed"),
        ("[N for N in L]", "'ListComp' is not allowed"),
        ("'text'", "is not a number"),
        ("N % 2", "operator 'Mod' is not allowed"),
        ("a[b[c]]", "only group effects"),
        ("N +", "cannot parse"),
        ("import os", "cannot parse"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        parse(text)


def test_round_trip_keeps_meaning() -> None:
    text = "E + A / N**alpha - B * D**(-beta) + sigmoid(-k * (log(N) - m)) + delta[task]"
    tree = parse(text)
    again = parse(tree.to_string())
    env = {
        "E": 1.5,
        "A": 400.0,
        "N": 1e9,
        "alpha": 0.3,
        "B": 410.0,
        "D": 2e10,
        "beta": 0.28,
        "k": 0.7,
        "m": 20.0,
        "delta[task]": 0.25,
    }
    assert tree.evaluate(env) == pytest.approx(again.evaluate(env))
    expected = (
        1.5 + 400 / 1e9**0.3 - 410 * 2e10**-0.28 + 1 / (1 + np.exp(0.7 * (np.log(1e9) - 20))) + 0.25
    )
    assert tree.evaluate(env) == pytest.approx(expected)
    assert tree.groups() == {"delta": "task"}


def test_power_is_right_associative_and_neg_binds_looser() -> None:
    assert parse("2**3**2").evaluate({}) == 512
    assert parse("-2**2").evaluate({}) == -4
    assert parse(parse("(-2)**2").to_string()).evaluate({}) == 4


def test_python_function_traces_to_same_law() -> None:
    def law(N, D, E, A, B, alpha, beta):
        return E + A / N**alpha + B / np.power(D, beta) + 0 * np.log(N)

    from_fn = Law.from_function(law, covariates=["N", "D"])
    assert from_fn.covariates == ("N", "D")
    assert set(from_fn.param_names) == {"A", "B", "E", "alpha", "beta"}
    from_text = Law.from_string(from_fn.expr.to_string(), covariates=["N", "D"])
    env = {"N": 1e9, "D": 2e10, "E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
    assert from_fn.expr.evaluate(env) == pytest.approx(from_text.expr.evaluate(env))


def test_function_with_group_effect() -> None:
    def law(N, task, eps, alpha, delta):
        return eps + alpha * np.log(N) + delta[task]

    fitted = Law.from_function(law, covariates=["N"], link="logit")
    assert fitted.groups == {"delta": "task"}
    assert any(isinstance(t, Group) for t in [fitted.expr.right])  # type: ignore[attr-defined]


def test_function_cannot_branch() -> None:
    def law(N, a):
        return a if N > 1 else 0

    with pytest.raises(ExprError, match=r"cannot be traced|branch"):
        Law.from_function(law, covariates=["N"])


def test_law_checks_its_parameters() -> None:
    with pytest.raises(ExprError, match="no covariates"):
        Law.from_string("a + b")
    with pytest.raises(ExprError, match="unknown prior"):
        Law.from_string("a * log(N)", priors={"a": "cauchy(0, 1)"})
    with pytest.raises(ExprError, match="not a number"):
        Law.from_string("a * log(N)", priors={"a": "__import__('os')"})
