"""Tolerable compression: the largest ratio whose accuracy is not worse than dense by a margin.

For one (model, length, method, task) the hypotheses H0_k: "at ratio C_k the score is lower than
dense by `margin` or more" are tested in the fixed order of increasing C, each at level `alpha`,
stopping at the first one not rejected (a fixed-sequence procedure, as in Learn-then-Test). The
family-wise error rate, the chance of declaring any ratio tolerable whose true loss reaches the
margin, stays at or under `alpha` without any multiplicity correction, because a later hypothesis
is only tested once every earlier one is rejected.

Each test is a one-sided non-inferiority test of a difference: with counts (`correct` out of
`samples`) the Farrington-Manning score test, whose variance is taken at the restricted maximum
likelihood under H0 (so a perfect 100/100 score is not a zero-variance certainty), with a small
continuity correction; with
per-sample variances (`score_var`, `samples`) a Welch z test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtr

from scalelaw.data import DataError


def restricted_mle(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, delta: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood (p1, p2) of two binomials under p1 - p2 = delta (closed form).

    Farrington & Manning (1990): the restricted estimate is the root of a cubic, taken in its
    trigonometric form; arrays broadcast.
    """
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    d = np.asarray(delta, dtype=float)
    p1, p2 = x1 / n1, x2 / n2
    theta = n2 / n1
    a = 1 + theta
    b = -(1 + theta + p1 + theta * p2 + d * (theta + 2))
    c = d * d + d * (2 * p1 + theta + 1) + p1 + theta * p2
    e = -p1 * d * (1 + d)
    v = b**3 / (3 * a) ** 3 - b * c / (6 * a * a) + e / (2 * a)
    u = np.sign(v) * np.sqrt(np.maximum(b * b / (3 * a) ** 2 - c / (3 * a), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(u != 0, v / u**3, 0.0)
    w = (np.pi + np.arccos(np.clip(ratio, -1.0, 1.0))) / 3
    r1 = np.clip(2 * u * np.cos(w) - b / (3 * a), 0.0, 1.0)
    return r1, np.clip(r1 - d, 0.0, 1.0)


def noninferiority_counts(
    correct_dense: np.ndarray,
    samples_dense: np.ndarray,
    correct_sparse: np.ndarray,
    samples_sparse: np.ndarray,
    margin: float,
) -> np.ndarray:
    """One-sided p-values for H0: p_dense - p_sparse >= margin (Farrington-Manning score test).

    The counts are treated as independent samples; when dense and sparse runs share their
    prompts the pairing is ignored, which makes the test conservative when results correlate.
    """
    xs, ns = np.asarray(correct_sparse, float), np.asarray(samples_sparse, float)
    xd, nd = np.asarray(correct_dense, float), np.asarray(samples_dense, float)
    ps, pd = restricted_mle(xs, ns, xd, nd, -margin)
    total = ns + nd
    # Miettinen-Nurminen's N / (N - 1) and a quarter-unit continuity correction keep the exact
    # size of this discrete test at or under alpha (checked by enumeration in the tests)
    se = np.sqrt((ps * (1 - ps) / ns + pd * (1 - pd) / nd) * total / (total - 1))
    diff = xs / ns - xd / nd + margin - (1 / ns + 1 / nd) / 4
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / se, np.where(diff > 0, np.inf, -np.inf))
    return 1.0 - ndtr(z)


def noninferiority_welch(
    mean_dense: np.ndarray,
    var_dense: np.ndarray,
    n_dense: np.ndarray,
    mean_sparse: np.ndarray,
    var_sparse: np.ndarray,
    n_sparse: np.ndarray,
    margin: float,
) -> np.ndarray:
    """One-sided p-values for H0: mean_dense - mean_sparse >= margin from per-sample variances."""
    se = np.sqrt(np.asarray(var_dense) / n_dense + np.asarray(var_sparse) / n_sparse)
    diff = np.asarray(mean_sparse) - np.asarray(mean_dense) + margin
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / se, np.where(diff > 0, np.inf, -np.inf))
    return 1.0 - ndtr(z)


def fixed_sequence(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Number of hypotheses rejected, testing along the last axis in order (NaN ends the sequence)."""
    p = np.asarray(pvalues, dtype=float)
    passed = np.where(np.isnan(p), False, p <= alpha)
    return np.cumprod(passed, axis=-1).sum(axis=-1)


def _label_key(frame: pl.DataFrame) -> str:
    return "model" if "model" in frame.columns else "params"


def _join_keys(dense: pl.DataFrame, sparse: pl.DataFrame, base: list[str]) -> list[str]:
    """Base keys plus the labels (phase, method) that dense rows share with sparse rows."""
    keys = list(base)
    for col in ("phase", "method"):
        if col in dense.columns and col in sparse.columns:
            shared = set(dense[col].unique().to_list()) & set(sparse[col].unique().to_list())
            if shared:
                keys.append(col)
    return keys


def tolerance_table(
    frame: pl.DataFrame,
    *,
    margin: float = 0.05,
    alpha: float = 0.05,
    source: str = "<table>",
) -> pl.DataFrame:
    """Largest tolerable ratio per (model, [phase], length, method, task).

    `frame` is an accuracy-point table (canonical columns) with dense rows (compression 1) and
    sparse rows; it needs `correct` and `samples`, or `score_var` and `samples`.
    """
    if not 0 < alpha < 1:
        raise DataError(f"alpha must lie in (0, 1), got {alpha}")
    if not 0 <= margin < 1:
        raise DataError(f"margin must lie in [0, 1), got {margin}")
    for col in ("seq_len", "compression"):
        if col not in frame.columns:
            raise DataError(f"{source}: required column '{col}' is missing")
    counts = "correct" in frame.columns and "samples" in frame.columns
    if not counts and not ("score_var" in frame.columns and "samples" in frame.columns):
        raise DataError(
            f"{source}: the tolerance test needs 'correct' and 'samples', or 'score_var' and "
            "'samples' (per-configuration sample sizes)"
        )
    if not counts and "score" not in frame.columns:
        raise DataError(f"{source}: required column 'score' is missing")
    frame = frame.with_row_index("__row", offset=1)
    model = _label_key(frame)
    base = [model, "seq_len"] + (["task"] if "task" in frame.columns else [])
    dense = frame.filter(pl.col("compression") == 1)
    sparse = frame.filter(pl.col("compression") > 1)
    if dense.height == 0:
        raise DataError(f"{source}: no dense rows (compression = 1) to compare against")
    if sparse.height == 0:
        raise DataError(f"{source}: no sparse rows (compression > 1) to test")
    keys = _join_keys(dense, sparse, base)
    dup = dense.filter(pl.struct(keys).is_duplicated())
    if dup.height:
        raise DataError(
            f"{source}, row {dup['__row'][1]}: a second dense row for the same "
            f"{', '.join(keys)}; give one dense row per configuration"
        )
    stats = ["correct", "samples"] if counts else ["score", "score_var", "samples"]
    joined = sparse.join(
        dense.select(*keys, *[pl.col(s).alias(f"dense_{s}") for s in stats], "__row"),
        on=keys,
        how="left",
        suffix="_dense",
    )
    missing = joined.filter(pl.col(f"dense_{stats[0]}").is_null())
    if missing.height:
        r = missing.row(0, named=True)
        where = ", ".join(f"{k}={r[k]}" for k in keys)
        raise DataError(f"{source}, row {r['__row']}: no dense row for {where}")
    if counts:
        p = noninferiority_counts(
            joined["dense_correct"].to_numpy(),
            joined["dense_samples"].to_numpy(),
            joined["correct"].to_numpy(),
            joined["samples"].to_numpy(),
            margin,
        )
        dense_score = joined["dense_correct"] / joined["dense_samples"]
        score = joined["correct"] / joined["samples"]
    else:
        p = noninferiority_welch(
            joined["dense_score"].to_numpy(),
            joined["dense_score_var"].to_numpy(),
            joined["dense_samples"].to_numpy(),
            joined["score"].to_numpy(),
            joined["score_var"].to_numpy(),
            joined["samples"].to_numpy(),
            margin,
        )
        dense_score, score = joined["dense_score"], joined["score"]
    joined = joined.with_columns(
        pl.Series("p_value", p), dense_score.alias("dense_score"), score.alias("sparse_score")
    )
    group = list(dict.fromkeys([*keys, *(c for c in ("phase", "method") if c in frame.columns)]))
    if model == "model" and "params" in frame.columns:
        group.append("params")
    out = (
        joined.sort([*group, "compression"])
        .group_by(group, maintain_order=True)
        .agg(
            pl.col("compression"),
            pl.col("p_value"),
            pl.col("sparse_score"),
            pl.col("dense_score").first(),
        )
    )
    rows = []
    for r in out.iter_rows(named=True):
        c = np.asarray(r["compression"], dtype=float)
        if len(np.unique(c)) != len(c):
            raise DataError(
                f"{source}: repeated compression ratio for "
                + ", ".join(f"{k}={r[k]}" for k in group)
            )
        k = int(fixed_sequence(np.asarray(r["p_value"]), alpha))
        row: dict[str, Any] = {g: r[g] for g in group}
        row |= {
            "dense_score": float(r["dense_score"]),
            "max_tolerable_compression": float(c[k - 1]) if k else 1.0,
            "score_at_max": float(r["sparse_score"][k - 1]) if k else float(r["dense_score"]),
            "stopped_at": float(c[k]) if k < len(c) else None,
            "p_at_stop": float(r["p_value"][k]) if k < len(c) else None,
            "levels_tested": len(c),
        }
        rows.append(row)
    result = pl.DataFrame(rows, infer_schema_length=None)
    return result.with_columns(
        pl.lit(margin).alias("margin"),
        pl.lit(alpha).alias("alpha"),
        pl.lit("farrington-manning" if counts else "welch-z").alias("test"),
    )


def tolerance_summary(result: pl.DataFrame, by: Sequence[str] | None = None) -> pl.DataFrame:
    """Spread of the tolerable ratio over tasks (and methods): per model size, phase and length."""
    if by is None:
        by = [c for c in ("phase", "model", "params", "seq_len") if c in result.columns]
    c = pl.col("max_tolerable_compression")
    return (
        result.group_by(list(by))
        .agg(
            pl.len().alias("n"),
            c.min().alias("min"),
            c.quantile(0.25, "nearest").alias("q25"),
            c.median().alias("median"),
            c.quantile(0.75, "nearest").alias("q75"),
            c.max().alias("max"),
        )
        .sort([b for b in by if b != "model"] or list(by))
    )
