"""Binding a law to a table: covariate arrays, group indices, observations.

Also recognises laws that are linear in their parameters (sums of ``param * f(covariates)``
terms, an intercept and group offsets), which the Bayesian backend centres and scales.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from scalelaw.data import DataError
from scalelaw.fits.expr import BinOp, Expr, Group, Name, Neg, Num
from scalelaw.fits.law import Law, additive_groups


@dataclass
class GroupIndex:
    """Row -> level index of one group effect, and which level (if any) is pinned at zero."""

    column: str
    index: np.ndarray
    levels: list[str]
    reference: int | None


@dataclass
class Design:
    covariates: dict[str, np.ndarray]
    groups: dict[str, GroupIndex]
    y: np.ndarray | None = None
    correct: np.ndarray | None = None
    samples: np.ndarray | None = None
    n: int = 0
    #: True when `correct` is score x samples with partial credit, so counts are not whole.
    fractional: bool = False
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self, start: int, stop: int) -> Design:
        """Rows start:stop only (to evaluate a large table in blocks)."""
        return self.take(np.arange(start, min(stop, self.n)))

    def take(self, rows: np.ndarray) -> Design:
        """The rows at these indices, in this order (a block, or a bootstrap resample)."""

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Design(
            covariates={k: v[rows] for k, v in self.covariates.items()},
            groups={
                k: GroupIndex(g.column, g.index[rows], g.levels, g.reference)
                for k, g in self.groups.items()
            },
            y=cut(self.y),
            correct=cut(self.correct),
            samples=cut(self.samples),
            n=len(rows),
            fractional=self.fractional,
            labels={k: v[rows] for k, v in self.labels.items()},
        )


def group_levels(law: Law, frame: pl.DataFrame, source: str = "<table>") -> dict[str, list[str]]:
    """Levels of each grouping column as seen in the data (sorted)."""
    out: dict[str, list[str]] = {}
    for column in dict.fromkeys(law.groups.values()):
        if column not in frame.columns:
            raise DataError(f"{source}: law '{law.name}' needs a '{column}' column")
        out[column] = sorted(frame[column].cast(pl.String).unique().to_list())
    return out


def reference_level(
    law: Law, column: str, levels: Sequence[str], param: str | None = None
) -> int | None:
    """The level pinned at zero under fixed effects: the law's choice if present, else the first.

    Only an additive offset (``+ delta[task]``) needs a pinned level to be identified beside
    an intercept; a per-level parameter such as ``ceiling[task]`` keeps every level free.
    """
    if law.pooling == "partial":
        return None
    if param is not None and param not in additive_groups(law):
        return None
    wanted = law.reference.get(column)
    if wanted is not None and wanted in levels:
        return list(levels).index(wanted)
    return 0


def bind(
    law: Law,
    frame: pl.DataFrame,
    levels: Mapping[str, Sequence[str]] | None = None,
    *,
    observed: bool = True,
    source: str = "<table>",
) -> Design:
    """Arrays for `law` from `frame`; `levels` fixes group levels (from a fit) for prediction."""
    covariates: dict[str, np.ndarray] = {}
    for name, column in law.columns.items():
        if column not in frame.columns:
            raise DataError(
                f"{source}: law '{law.name}' needs covariate '{name}' (column '{column}'); "
                f"columns are {', '.join(frame.columns)}"
            )
        covariates[name] = frame[column].cast(pl.Float64).to_numpy()
    if levels is None:
        levels = group_levels(law, frame, source)
    groups: dict[str, GroupIndex] = {}
    for param, column in law.groups.items():
        if column not in frame.columns:
            raise DataError(f"{source}: law '{law.name}' needs a '{column}' column")
        known = list(levels[column])
        lookup = {lv: i for i, lv in enumerate(known)}
        values = frame[column].cast(pl.String).to_list()
        unknown = sorted({v for v in values if v not in lookup})
        if unknown:
            raise DataError(
                f"{source}: {column} {unknown[0]!r} was not in the fitted data "
                f"(known: {', '.join(known)})"
            )
        groups[param] = GroupIndex(
            column,
            np.array([lookup[v] for v in values], dtype=np.int64),
            known,
            reference_level(law, column, known, param),
        )
    design = Design(covariates=covariates, groups=groups, n=frame.height)
    if observed:
        if law.response not in frame.columns:
            raise DataError(f"{source}: response column '{law.response}' is missing")
        design.y = frame[law.response].cast(pl.Float64).to_numpy()
        if law.is_count:
            design.correct, design.samples, design.fractional = _counts(law, frame, source)
        if law.transform == "log" and np.any(design.y <= 0):
            i = int(np.argmax(design.y <= 0))
            raise DataError(
                f"{source}, row {i + 1}, column '{law.response}': a log-scale law needs "
                "positive values"
            )
    return design


def _counts(law: Law, frame: pl.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Successes and trials for a count likelihood.

    Without a `correct` column the successes are score x samples. With partial credit (a needle
    task scoring 2 of 4 keys) those are not whole numbers; the binomial log-likelihood then
    extends to them through the gamma function. That is the fractional-response (quasi-binomial)
    likelihood: the same estimating equations as a per-sample Bernoulli fit of the mean score.
    """
    if "samples" not in frame.columns:
        raise DataError(
            f"{source}: the {law.likelihood} likelihood needs a 'samples' column (trials per "
            "row) beside 'correct' or 'score' (or choose --likelihood normal/beta)"
        )
    samples = frame["samples"].cast(pl.Int64).to_numpy()
    if "correct" in frame.columns:
        return frame["correct"].cast(pl.Int64).to_numpy(), samples, False
    successes = frame[law.response].cast(pl.Float64).to_numpy() * samples
    whole = np.round(successes)
    if np.allclose(successes, whole, rtol=0.0, atol=1e-6):
        return whole.astype(np.int64), samples, False
    return successes, samples, True


@dataclass
class LinearForm:
    """eta = intercept + sum(coef * feature) + offset + group terms."""

    intercept: str | None
    slopes: list[tuple[str, Expr]]
    offsets: list[Expr]
    groups: list[str]


def linear_form(law: Law) -> LinearForm | None:
    """Decompose the law's expression if it is linear in its parameters, else None."""
    covs = set(law.covariates)
    params = set(law.param_names)
    intercept: str | None = None
    slopes: list[tuple[str, Expr]] = []
    offsets: list[Expr] = []
    groups: list[str] = []

    def terms(e: Expr, sign: float) -> list[tuple[float, Expr]]:
        if isinstance(e, BinOp) and e.op in "+-":
            return terms(e.left, sign) + terms(e.right, sign if e.op == "+" else -sign)
        if isinstance(e, Neg):
            return terms(e.operand, -sign)
        return [(sign, e)]

    for sign, term in terms(law.expr, 1.0):
        if isinstance(term, Name) and term.name in params:
            if intercept is not None or sign < 0:
                return None
            intercept = term.name
        elif isinstance(term, Group):
            if sign < 0 or term.param in groups:
                return None
            groups.append(term.param)
        elif term.names() <= covs:
            offsets.append(term if sign > 0 else Neg(term))
        elif isinstance(term, BinOp) and term.op == "*":
            for coef, feat in ((term.left, term.right), (term.right, term.left)):
                if isinstance(coef, Name) and coef.name in params and feat.names() <= covs:
                    slopes.append((coef.name, feat if sign > 0 else BinOp("*", Num(-1.0), feat)))
                    break
            else:
                return None
        else:
            return None
    names = [s for s, _ in slopes] + ([intercept] if intercept else []) + groups
    if len(names) != len(set(names)):
        return None
    return LinearForm(intercept, slopes, offsets, groups)
