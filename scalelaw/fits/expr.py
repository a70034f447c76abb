"""Law expressions: a small, safe arithmetic language shared by both fitting backends.

A law's mean is an `Expr` tree. Trees come from two places:

* strings, parsed with `parse` (Python syntax is read by `ast`, every node is checked against a
  whitelist, and nothing is ever evaluated: no attribute access, subscripts other than group
  effects ``delta[task]``, imports, lambdas, comprehensions or calls outside `FUNCTIONS`);
* plain Python functions, traced by calling them with symbols (see `trace`): arithmetic and
  numpy ufuncs (``np.log``) on symbols build the same tree.

A tree evaluates on numpy arrays (prediction, least squares) or on PyTensor variables (PyMC),
and prints back to a string that `parse` reads again, which is how fit files store laws.
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalelaw.errors import ScalelawError


class ExprError(ScalelawError):
    """An expression is not allowed or not well formed."""


#: Longest law, measured on its printed form (the form fit files store), so that every law that
#: parses can be saved and read back; spaces and redundant brackets do not count.
MAX_LENGTH = 2000
#: Longest text `parse` reads at all (spacing and brackets included), to bound the work.
MAX_INPUT = 10 * MAX_LENGTH
#: Deepest nesting of operators and calls: printing and evaluation recurse on the tree.
MAX_DEPTH = 200


#: Whitelisted functions: name -> (numpy implementation, name of the pytensor implementation).
FUNCTIONS: dict[str, tuple[Callable[..., Any], str]] = {
    "log": (np.log, "log"),
    "exp": (np.exp, "exp"),
    "sqrt": (np.sqrt, "sqrt"),
    "abs": (np.abs, "abs"),
    "log1p": (np.log1p, "log1p"),
    "expm1": (np.expm1, "expm1"),
    "tanh": (np.tanh, "tanh"),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), "sigmoid"),
    "logit": (lambda p: np.log(p) - np.log1p(-p), "logit"),
    "softplus": (lambda x: np.logaddexp(0.0, x), "softplus"),
    "minimum": (np.minimum, "minimum"),
    "maximum": (np.maximum, "maximum"),
    "logaddexp": (np.logaddexp, "logaddexp"),
}

_UFUNCS: dict[Any, str] = {
    np.log: "log",
    np.exp: "exp",
    np.sqrt: "sqrt",
    np.abs: "abs",
    np.absolute: "abs",
    np.log1p: "log1p",
    np.expm1: "expm1",
    np.tanh: "tanh",
    np.minimum: "minimum",
    np.maximum: "maximum",
    np.logaddexp: "logaddexp",
    np.add: "+",
    np.subtract: "-",
    np.multiply: "*",
    np.true_divide: "/",
    np.power: "**",
    np.negative: "neg",
}

_BINOPS: dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
}
#: numpy float arithmetic (inf or nan on overflow, never an exception) for constant parts.
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "**": np.power,
}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4}


class Expr:
    """A node of a law expression. Arithmetic on nodes builds bigger nodes."""

    def _bin(self, op: str, other: Any, reflected: bool = False) -> Expr:
        o = as_expr(other)
        return BinOp(op, o, self) if reflected else BinOp(op, self, o)

    def __add__(self, other: Any) -> Expr:
        return self._bin("+", other)

    def __radd__(self, other: Any) -> Expr:
        return self._bin("+", other, True)

    def __sub__(self, other: Any) -> Expr:
        return self._bin("-", other)

    def __rsub__(self, other: Any) -> Expr:
        return self._bin("-", other, True)

    def __mul__(self, other: Any) -> Expr:
        return self._bin("*", other)

    def __rmul__(self, other: Any) -> Expr:
        return self._bin("*", other, True)

    def __truediv__(self, other: Any) -> Expr:
        return self._bin("/", other)

    def __rtruediv__(self, other: Any) -> Expr:
        return self._bin("/", other, True)

    def __pow__(self, other: Any) -> Expr:
        return self._bin("**", other)

    def __rpow__(self, other: Any) -> Expr:
        return self._bin("**", other, True)

    def __neg__(self) -> Expr:
        return Neg(self)

    def __pos__(self) -> Expr:
        return self

    def __bool__(self) -> bool:
        raise ExprError(
            "a law cannot branch on its parameters or covariates (no if/and/or/comparisons); "
            "use minimum/maximum/sigmoid instead"
        )

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Expr:
        name = _UFUNCS.get(ufunc)
        if method != "__call__" or name is None or kwargs:
            raise ExprError(f"numpy function '{ufunc.__name__}' is not allowed in a law")
        args = [as_expr(x) for x in inputs]
        if name in _PRECEDENCE and name != "neg":
            return BinOp(name, args[0], args[1])
        if name == "neg":
            return Neg(args[0])
        return Call(name, tuple(args))

    # Subclasses implement these.
    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        raise NotImplementedError

    def names(self) -> set[str]:
        raise NotImplementedError

    def groups(self) -> dict[str, str]:
        """Group effects used: parameter name -> grouping column."""
        raise NotImplementedError

    def to_string(self, parent: int = 0) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"Expr({self.to_string()!r})"


@dataclass(frozen=True, eq=False)
class Num(Expr):
    value: float

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        return self.value

    def names(self) -> set[str]:
        return set()

    def groups(self) -> dict[str, str]:
        return {}

    def to_string(self, parent: int = 0) -> str:
        value = float(self.value)
        # whole numbers print as integers, but 1e300 as 1e+300 rather than 301 digits
        text = str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
        return f"({text})" if value < 0 else text


@dataclass(frozen=True, eq=False)
class Name(Expr):
    name: str

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        return env[self.name]

    def names(self) -> set[str]:
        return {self.name}

    def groups(self) -> dict[str, str]:
        return {}

    def to_string(self, parent: int = 0) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Group(Expr):
    """A per-level parameter, ``delta[task]``: one value per level of a label column."""

    param: str
    column: str

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        # The backend puts the already-gathered per-row values under this key.
        return env[f"{self.param}[{self.column}]"]

    def names(self) -> set[str]:
        return {self.param}

    def groups(self) -> dict[str, str]:
        return {self.param: self.column}

    def to_string(self, parent: int = 0) -> str:
        return f"{self.param}[{self.column}]"


@dataclass(frozen=True, eq=False)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        a = self.left.evaluate(env, lib)
        b = self.right.evaluate(env, lib)
        match self.op:
            case "+":
                return a + b
            case "-":
                return a - b
            case "*":
                return a * b
            case "/":
                return a / b
            case _:
                return a**b

    def names(self) -> set[str]:
        return self.left.names() | self.right.names()

    def groups(self) -> dict[str, str]:
        return _merge_groups(self.left.groups(), self.right.groups())

    def to_string(self, parent: int = 0) -> str:
        p = _PRECEDENCE[self.op]
        # Power is right-associative; the others are left-associative.
        left = self.left.to_string(p + 1 if self.op == "**" else p)
        right = self.right.to_string(p if self.op == "**" else p + 1)
        text = f"{left} {self.op} {right}" if p < 4 else f"{left}**{right}"
        return f"({text})" if p < parent else text


@dataclass(frozen=True, eq=False)
class Neg(Expr):
    operand: Expr

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        return -self.operand.evaluate(env, lib)

    def names(self) -> set[str]:
        return self.operand.names()

    def groups(self) -> dict[str, str]:
        return self.operand.groups()

    def to_string(self, parent: int = 0) -> str:
        text = f"-{self.operand.to_string(_PRECEDENCE['neg'])}"
        return f"({text})" if _PRECEDENCE["neg"] < parent else text


@dataclass(frozen=True, eq=False)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        values = [a.evaluate(env, lib) for a in self.args]
        if lib == "numpy":
            return FUNCTIONS[self.func][0](*values)
        import pytensor.tensor as pt  # deferred: heavy

        if self.func == "softplus":
            return pt.softplus(values[0])
        if self.func == "logaddexp":
            return pt.logaddexp(*values)
        return getattr(pt, FUNCTIONS[self.func][1])(*values)

    def names(self) -> set[str]:
        return set().union(*(a.names() for a in self.args))

    def groups(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for a in self.args:
            out = _merge_groups(out, a.groups())
        return out

    def to_string(self, parent: int = 0) -> str:
        return f"{self.func}({', '.join(a.to_string() for a in self.args)})"


def _merge_groups(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    for k, v in b.items():
        if a.get(k, v) != v:
            raise ExprError(f"parameter '{k}' is indexed by both '{a[k]}' and '{v}'")
    return {**a, **b}


def as_expr(x: Any) -> Expr:
    """Wrap a Python number as a constant node; pass nodes through."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool) or not isinstance(x, int | float | np.number):
        raise ExprError(f"a law can only combine numbers and symbols, not {type(x).__name__}")
    try:
        value = float(x)
    except OverflowError:
        raise ExprError(f"constant {_short(str(x))} is too large for a number") from None
    if not math.isfinite(value):
        raise ExprError("constants in a law must be finite")
    return Num(value)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse(text: str) -> Expr:
    """Parse an expression string into a tree, refusing anything outside the whitelist.

    Only `ExprError` escapes: besides the whitelist, the tree may nest at most `MAX_DEPTH`
    deep, its printed form may be at most `MAX_LENGTH` characters long, and every constant part
    (``1/0``, ``10**400``) must be a finite number.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExprError("the law expression is empty")
    if len(text) > MAX_INPUT:
        raise ExprError(f"the law expression is longer than {MAX_INPUT} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExprError(f"cannot parse law expression{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # surrogate characters (UnicodeEncodeError) and parser stack limits
        raise ExprError(f"cannot parse law expression ({type(exc).__name__})") from None
    _check_ast_depth(tree.body)
    expr = _convert(tree.body)
    check(expr)
    return expr


def _check_ast_depth(root: ast.AST) -> None:
    """Refuse deep nesting before the recursive conversion meets it."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExprError(f"the law expression nests deeper than {MAX_DEPTH} levels")
        stack.extend(
            (child, depth + 1)
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, ast.expr_context | ast.operator | ast.unaryop)
        )


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of a node."""
    if isinstance(expr, BinOp):
        return (expr.left, expr.right)
    if isinstance(expr, Neg):
        return (expr.operand,)
    if isinstance(expr, Call):
        return expr.args
    return ()


def depth(expr: Expr) -> int:
    """Nesting depth of a tree, computed without recursion (a traced tree may be deep)."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children(node))
    return deepest


def check(expr: Expr) -> None:
    """The rules every law expression meets, whether parsed or traced (see `parse`).

    Raises `ExprError` naming the first rule broken.
    """
    if depth(expr) > MAX_DEPTH:
        raise ExprError(f"the law expression nests deeper than {MAX_DEPTH} levels")
    _constant(expr)
    _check_group_names(expr)
    check_length(expr)


def check_length(expr: Expr) -> str:
    """The printed form of `expr`, refused when longer than `MAX_LENGTH` characters.

    Fit files store this form, so the same limit holds when a law is parsed, traced or saved.
    """
    text = expr.to_string()
    if len(text) > MAX_LENGTH:
        raise ExprError(
            f"the law expression is {len(text)} characters long when written out; "
            f"the limit is {MAX_LENGTH}"
        )
    return text


def _constant(expr: Expr) -> float | None:
    """The value of a part without names (None when it has names); it must be finite.

    A constant such as ``1/0`` or ``10**400`` would otherwise fail, or turn every prediction
    into inf, only when the law is first evaluated during a fit.
    """
    if isinstance(expr, Num):
        return float(expr.value)
    if isinstance(expr, Name | Group):
        return None
    values = [_constant(c) for c in children(expr)]
    if any(v is None for v in values):
        return None
    args = [np.float64(v) for v in values]
    value = math.nan
    try:
        with np.errstate(all="ignore"):
            if isinstance(expr, Neg):
                value = float(-args[0])
            elif isinstance(expr, Call):
                value = float(FUNCTIONS[expr.func][0](*args))
            elif isinstance(expr, BinOp):
                value = float(_ARITHMETIC[expr.op](*args))
    except (ArithmeticError, ValueError, TypeError):
        pass
    if not math.isfinite(value):
        raise ExprError(
            f"the constant part '{_short(expr.to_string())}' of the law is not a finite number"
        )
    return value


def _check_group_names(expr: Expr) -> None:
    """A group effect's parameter and column are not also plain names of the law."""
    plain: set[str] = set()
    grouped: dict[str, str] = {}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Name):
            plain.add(node.name)
        elif isinstance(node, Group):
            grouped[node.param] = node.column
        stack.extend(children(node))
    for param, column in grouped.items():
        if param in plain:
            raise ExprError(
                f"'{param}' is used both as a group effect {param}[{column}] and as a plain name"
            )
        if column in plain:
            raise ExprError(
                f"'{column}' names the grouping column of {param}[{column}] and cannot also "
                "be a parameter or covariate"
            )
        if column in grouped:
            raise ExprError(f"'{column}' is both a group effect and a grouping column")


def _convert(node: ast.AST) -> Expr:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExprError(f"constant {node.value!r} is not a number")
        return as_expr(node.value)
    if isinstance(node, ast.Name):
        _check_name(node.id)
        return Name(node.id)
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExprError(f"operator '{type(node.op).__name__}' is not allowed")
        return BinOp(op, _convert(node.left), _convert(node.right))
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return Neg(_convert(node.operand))
        if isinstance(node.op, ast.UAdd):
            return _convert(node.operand)
        raise ExprError(f"operator '{type(node.op).__name__}' is not allowed")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ExprError("only plain function names may be called (no attribute access)")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ExprError(
                f"function '{name}' is not allowed; allowed: {', '.join(sorted(FUNCTIONS))}"
            )
        if node.keywords:
            raise ExprError(f"function '{name}' takes no keyword arguments")
        arity = 2 if name in ("minimum", "maximum", "logaddexp") else 1
        if len(node.args) != arity:
            raise ExprError(f"function '{name}' takes {arity} argument(s), got {len(node.args)}")
        return Call(name, tuple(_convert(a) for a in node.args))
    if isinstance(node, ast.Subscript):
        if not (isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Name)):
            raise ExprError("only group effects of the form param[column] may be indexed")
        _check_name(node.value.id)
        _check_name(node.slice.id)
        return Group(node.value.id, node.slice.id)
    if isinstance(node, ast.Attribute):
        raise ExprError("attribute access is not allowed in a law expression")
    if isinstance(node, ast.Lambda):
        raise ExprError("lambdas are not allowed in a law expression")
    raise ExprError(f"'{type(node).__name__}' is not allowed in a law expression")


def _check_name(name: str) -> None:
    if name.startswith("_"):
        raise ExprError(f"name '{name}' is not allowed (names may not start with '_')")
    if name in FUNCTIONS:
        raise ExprError(f"'{name}' is a function and cannot be used as a name")


class _TracedParam(Name):
    """A symbol handed to a traced function; indexing it by a column makes a group effect."""

    def __getitem__(self, column: Any) -> Expr:
        if isinstance(column, Name):
            return Group(self.name, column.name)
        if isinstance(column, str):
            return Group(self.name, column)
        raise ExprError(f"'{self.name}' can only be indexed by a column name")


def trace(func: Callable[..., Any]) -> tuple[Expr, list[str]]:
    """Build an expression tree by calling `func` with one symbol per argument.

    Returns the tree and the argument names in order. Functions may use arithmetic, numpy ufuncs
    (``np.log``) and the functions of `scalelaw.fits.ops`.
    """
    sig = inspect.signature(func)
    names = []
    for p in sig.parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise ExprError(f"law function '{func.__name__}' may not take *args or **kwargs")
        names.append(p.name)
    symbols = {n: _TracedParam(n) for n in names}
    try:
        out = func(**symbols)
    except ExprError:
        raise
    except Exception as exc:
        raise ExprError(
            f"law function '{func.__name__}' cannot be traced: {type(exc).__name__}: {exc}"
        ) from None
    expr = as_expr(out)
    check(expr)
    return expr, names
