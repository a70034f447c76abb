"""Functions for laws written as Python functions.

Each works on law symbols (building an expression tree) and on numpy arrays alike, so a law
function such as ``lambda N, A, alpha: ops.sigmoid(A - alpha * ops.log(N))`` can be traced into
a law and also called directly on data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scalelaw.fits.expr import FUNCTIONS, Call, Expr, as_expr


def _apply(name: str, *args: Any) -> Any:
    if any(isinstance(a, Expr) for a in args):
        return Call(name, tuple(as_expr(a) for a in args))
    return FUNCTIONS[name][0](*(np.asarray(a, dtype=float) for a in args))


def log(x: Any) -> Any:
    return _apply("log", x)


def exp(x: Any) -> Any:
    return _apply("exp", x)


def sqrt(x: Any) -> Any:
    return _apply("sqrt", x)


def sigmoid(x: Any) -> Any:
    return _apply("sigmoid", x)


def logit(p: Any) -> Any:
    return _apply("logit", p)


def softplus(x: Any) -> Any:
    return _apply("softplus", x)


def logaddexp(a: Any, b: Any) -> Any:
    return _apply("logaddexp", a, b)


def minimum(a: Any, b: Any) -> Any:
    return _apply("minimum", a, b)


def maximum(a: Any, b: Any) -> Any:
    return _apply("maximum", a, b)
