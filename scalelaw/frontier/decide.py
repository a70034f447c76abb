"""`decide`: at a length and a cost budget, larger-and-sparser or smaller-and-dense, how sure?

One call turns a fit (or a stacked fit, or a published card) and a cost model into a
`Decision`: the isoCost frontier per budget with P(sparse better) and its Monte Carlo error, the
advantage by length and the critical length with its interval. The command line prints it;
nothing about frontiers lives in the command.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from scalelaw.frontier.architectures import Architecture
from scalelaw.frontier.cost import cost as cost_of
from scalelaw.frontier.figures import frontier_figure
from scalelaw.frontier.isocost import (
    STUDY_COMPRESSIONS,
    CriticalLength,
    DrawsFn,
    Frontier,
    FrontierError,
    average_over_tasks,
    critical_length,
    isocost_frontier,
)
from scalelaw.frontier.latency import Timings, latency_ms
from scalelaw.spans import edges, outside, readable, readable_span

#: Lengths scanned for the critical length by default (4K to 1M tokens).
DEFAULT_LENGTHS = tuple(float(2**k) for k in range(12, 21))


@dataclass(frozen=True)
class FlopsCost:
    """Cost from the cost model: FLOPs per prefill or bytes read per decode step."""

    phase: str = "prefill"
    batch: int = 1
    bytes_per_element: float = 2.0
    causal_half: bool = False
    method: str | None = None

    def __post_init__(self) -> None:
        if self.phase not in ("prefill", "decode"):
            raise FrontierError(f"phase must be prefill or decode, got '{self.phase}'")

    @property
    def label(self) -> str:
        return "FLOPs per prefill" if self.phase == "prefill" else "bytes read per decode step"

    def __call__(self, arch: Architecture, length: float, compression: float) -> float:
        return cost_of(
            arch,
            self.phase,
            length,
            compression,
            batch=self.batch,
            bytes_per_element=self.bytes_per_element,
            causal_half=self.causal_half,
            method=self.method,
        ).total

    def lengths(self, wanted: Sequence[float]) -> list[float]:
        return list(wanted)


@dataclass(frozen=True)
class LatencyCost:
    """Cost as measured time: attention from a timings table, the rest at a throughput."""

    timings: Timings
    phase: str = "prefill"
    batch: int = 1
    bytes_per_element: float = 2.0
    throughput: float | None = None

    @classmethod
    def read(
        cls,
        path: str | Path,
        method: str,
        phase: str = "prefill",
        *,
        device: str | None = None,
        batch: int = 1,
        bytes_per_element: float = 2.0,
        throughput: float | None = None,
    ) -> LatencyCost:
        table = Timings.read(Path(path), method, phase, device=device)
        return cls(table, phase, batch, bytes_per_element, throughput)

    @property
    def label(self) -> str:
        return "prefill latency (ms)" if self.phase == "prefill" else "decode step latency (ms)"

    def __call__(self, arch: Architecture, length: float, compression: float) -> float:
        return latency_ms(
            self.timings,
            arch,
            length,
            compression,
            batch=self.batch,
            throughput=self.throughput,
            bytes_per_element=self.bytes_per_element,
        )

    def lengths(self, wanted: Sequence[float]) -> list[float]:
        """Only lengths inside the timed range (the timings cannot be extrapolated)."""
        measured = self.timings.lengths()
        return [x for x in wanted if measured[0] <= x <= measured[-1]] or list(measured)


Cost = FlopsCost | LatencyCost


@dataclass
class Decision:
    """The answer of `decide`: frontier per budget, advantage by length, critical length."""

    frontier: Frontier
    critical: CriticalLength | None
    cost_label: str
    score_label: str
    tasks: list[str]
    prob: float
    source: str = ""
    phase: str = "prefill"
    draws_fn: DrawsFn | None = field(default=None, repr=False)
    archs: list[Architecture] = field(default_factory=list, repr=False)
    cost: Any = field(default=None, repr=False)
    compressions: list[float] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list)
    #: the shortest and longest length the law was fitted on (None: not known); the figure
    #: shades the lengths outside as extrapolated
    fitted_lengths: tuple[float, float] | None = field(default=None, repr=False)
    #: the smallest and largest model size (parameters) the law was fitted on (None: not
    #: known); the table marks a best choice outside as extrapolated
    fitted_sizes: tuple[float, float] | None = field(default=None, repr=False)
    #: the smallest and largest compression the law was fitted on (None: not known); the
    #: table marks a best sparse choice outside as extrapolated
    fitted_compressions: tuple[float, float] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """One line: ``Decision('card', prefill at 128K tokens, NIAH: P(sparse better) > 0.5
        at 7 of 12 budgets; critical length 45K tokens (90% interval 30K to 70K))``."""
        p = self.frontier.budgets["p_sparse_better"].drop_nulls()
        length = self.seq_len
        at = f"{length / 1024:,.0f}K" if length >= 1024 else f"{length:g}"
        text = (
            f"Decision({self.source!r}, {self.phase} at {at} tokens, {self.score_label}: "
            f"P(sparse better) > 0.5 at {int((p > 0.5).sum())} of "
            f"{self.frontier.budgets.height} budgets"
        )
        if self.critical is not None:
            text += f"; {self.critical.describe()}"
        if self.warnings:
            text += f"; {len(self.warnings)} warning{'s' if len(self.warnings) > 1 else ''}"
        return text + ")"

    @property
    def seq_len(self) -> float:
        return float(self.frontier.meta["seq_len"])

    @property
    def n_draws(self) -> int:
        return self.frontier.n_draws

    def uncertain_budgets(self, low: float = 0.1, high: float = 0.9) -> pl.DataFrame:
        """Budgets where neither answer is likely: low < P(sparse better) < high."""
        p = pl.col("p_sparse_better")
        return self.frontier.budgets.filter(p.is_not_null() & (p > low) & (p < high))

    def extrapolated_sizes(self) -> list[str]:
        """The model sizes compared here that lie outside those the law was fitted on."""
        return [a.size for a in self.archs if outside(float(a.params()), self.fitted_sizes)]

    def extrapolated_compression(self, compression: float) -> bool:
        """Whether `compression` lies outside those the law was fitted on."""
        return outside(compression, self.fitted_compressions)

    def extrapolated_length(self, seq_len: float) -> bool:
        """Whether `seq_len` lies outside the lengths the law was fitted on."""
        return outside(seq_len, self.fitted_lengths)

    def to_frame(self, show: str = "budgets") -> pl.DataFrame:
        """The budget table (best dense, best sparse, P(sparse better)) or every configuration."""
        if show == "budgets":
            return self.frontier.budgets
        if show == "configs":
            return self.frontier.configs
        raise FrontierError(f"unknown table '{show}' (budgets or configs)")

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data: what `scalelaw frontier --format json` prints."""
        doc: dict[str, Any] = {
            "source": self.source,
            "phase": self.phase,
            "seq_len": self.seq_len,
            "cost": self.cost_label,
            "score": self.score_label,
            "n_draws": self.n_draws,
            "prob": self.prob,
            "budgets": self.frontier.budgets.to_dicts(),
            "configs": self.frontier.configs.to_dicts(),
            "warnings": self.warnings,
            "fitted_spans": {
                axis: list(span)
                for axis, span in (
                    ("N", self.fitted_sizes),
                    ("L", self.fitted_lengths),
                    ("C", self.fitted_compressions),
                )
                if span is not None
            },
            "extrapolated_sizes": self.extrapolated_sizes(),
        }
        if self.critical is not None:
            c = self.critical
            doc["critical_length"] = {
                "median": _finite(c.median),
                "lower": _finite(c.lower),
                "upper": _finite(c.upper),
                "prob": self.prob,
                "share_beyond_range": c.share_beyond,
                "by_length": c.by_length.to_dicts(),
            }
        return doc

    def plot(self, path: str | Path, *, title: str | None = None, budgets: int = 200) -> Path:
        """The frontier figure; a fine budget grid draws the frontiers as the steps they are."""
        if self.draws_fn is None:
            raise FrontierError("this decision keeps no predictions to draw")
        fine = isocost_frontier(
            self.draws_fn,
            self.archs,
            self.seq_len,
            self.cost,
            compressions=self.compressions,
            budgets=budgets,
            prob=self.prob,
        )
        return frontier_figure(
            fine,
            path,
            critical=self.critical,
            cost_label=self.cost_label,
            title=title or f"{self.source}: {self.phase}, {self.score_label}",
            fitted_lengths=self.fitted_lengths,
            extrapolated_sizes=self.extrapolated_sizes(),
        )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _check_positive(what: str, values: Sequence[float], least: float = 0.0) -> None:
    """Refuse NaN, infinite and out-of-range inputs before any fitting is done."""
    if isinstance(values, str | bytes):  # not a list of one-character numbers
        raise FrontierError(f"decide: {what}={values!r}; give a list of numbers")
    for v in values:
        try:
            # True is not a length of 1 token, nor '4096' a number the CLI would have parsed
            if isinstance(v, bool | str | bytes):
                raise TypeError
            x = float(v)
        except (TypeError, ValueError):
            raise FrontierError(f"decide: {what} holds {v!r}, which is not a number") from None
        inside = x >= least if least else x > 0
        if not math.isfinite(x) or not inside:
            bound = f">= {least:g}" if least else "> 0"
            raise FrontierError(
                f"decide: {what} holds {v!r}; every value must be finite and {bound}"
            )


def decide(
    source: Any,
    architectures: Sequence[Architecture],
    cost: Cost | None = None,
    *,
    seq_len: float,
    lengths: Sequence[float] | None = DEFAULT_LENGTHS,
    compressions: Sequence[float] = STUDY_COMPRESSIONS,
    tasks: Sequence[str] | None = None,
    draws: int = 1000,
    prob: float = 0.9,
    budgets: Sequence[float] | int = 12,
    fit_options: Any = None,
) -> Decision:
    """Best dense against best sparse at every budget, and the critical length.

    `source` is a fit, a stacked fit, a published card, or the name of any of them (a fit file
    path or a card name). Given a data table (a polars frame, or a CSV, Parquet or JSON Lines
    path) the law family is fitted to it and stacked (`scalelaw.fits.family.fit_family`, with
    `fit_options`), so the decision carries the doubt about the law's form; pin one law by
    fitting it first and passing the fit. `cost` defaults to prefill FLOPs. Scores are averaged over `tasks`
    (default: every task the source knows). Each probability is computed per draw; its Monte
    Carlo error is in the budget table (`p_mc_error`). `lengths=None` skips the critical length.
    """
    # deferred: `scalelaw.fits` loads the fitting code and scipy (about 0.8 s), which costing
    # a method or listing architectures does not need
    from scalelaw.fits import levels, predict_draws
    from scalelaw.fits.family import is_table, load_or_fit

    _check_positive("seq_len", [seq_len])
    _check_positive("lengths", lengths or [])
    _check_positive("compressions", compressions, least=1.0)
    if isinstance(budgets, bool) or (isinstance(budgets, int) and budgets < 1):
        raise FrontierError(f"decide: budgets={budgets!r}; give a count >= 1 or a list of costs")
    if not isinstance(budgets, int):
        _check_positive("budgets", budgets)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise FrontierError(f"decide: draws={draws!r}; give a whole number >= 1")
    if isinstance(prob, bool) or not isinstance(prob, numbers.Real) or not 0 < prob < 1:
        raise FrontierError(f"decide: prob={prob!r}; give a probability between 0 and 1")
    if isinstance(tasks, str):  # a single name, not the list of its letters
        raise FrontierError(f"decide: tasks={tasks!r}; give a list of task names")
    src = load_or_fit(source, fit_options)
    if is_table(source):
        name = f"{source if isinstance(source, str | Path) else 'table'} (law family, stacked)"
    else:
        name = source if isinstance(source, str) else getattr(source.law, "name", "fit")
    cost = cost or FlopsCost()
    known = levels(src).get("task", [])
    chosen = list(tasks) if tasks else list(known)
    unknown = [t for t in chosen if known and t not in known]
    if unknown:
        raise FrontierError(f"task '{unknown[0]}' is not a task of {name} ({', '.join(known)})")
    archs = list(architectures)
    if not archs:
        raise FrontierError("give at least one architecture")

    def raw(points: Any) -> np.ndarray:
        # joint: the dense and sparse points of one comparison share their law in every draw
        return predict_draws(src, points, draws, joint=True)

    draws_fn = average_over_tasks(raw, chosen) if chosen else raw
    front = isocost_frontier(
        draws_fn, archs, seq_len, cost, compressions=compressions, budgets=budgets, prob=prob
    )
    crit = None
    scan = cost.lengths(lengths) if lengths else []
    if len(archs) >= 2 and len(scan) >= 2:
        crit = critical_length(draws_fn, archs, scan, cost, compressions=compressions, prob=prob)
    what = (
        f"mean over {len(chosen)} tasks" if len(chosen) > 1 else (chosen[0] if chosen else "score")
    )
    warnings = []
    headline = src.headline() if hasattr(src, "headline") else None
    if headline:
        warnings.append(f"this fit is {headline}")
    spans = fitted_axes(src)
    warnings += extrapolation_warnings(front, archs, seq_len, spans, crit)
    return Decision(
        frontier=front,
        critical=crit,
        cost_label=cost.label,
        score_label=what,
        tasks=chosen,
        prob=prob,
        source=str(name),
        phase=cost.phase,
        draws_fn=draws_fn,
        archs=archs,
        cost=cost,
        compressions=list(compressions),
        warnings=warnings,
        fitted_lengths=spans["L"],
        fitted_sizes=spans["N"],
        fitted_compressions=spans["C"],
    )


def fitted_axes(src: Any) -> dict[str, tuple[float, float] | None]:
    """The smallest and largest N, L and C that `src` was fitted on
    (`scalelaw.fits.fitted_spans`; None for an axis not recorded)."""
    from scalelaw.fits.prediction import fitted_spans  # deferred: scalelaw.fits (0.8 s)

    spans = fitted_spans(src)
    return {axis: spans.get(axis) for axis in ("N", "L", "C")}


def extrapolation_warnings(
    front: Frontier,
    archs: Sequence[Architecture],
    seq_len: float,
    spans: dict[str, tuple[float, float] | None],
    critical: CriticalLength | None = None,
) -> list[str]:
    """A line for each way the decision reaches beyond what the law was fitted on (`spans`,
    by covariate N, L and C): the decision's length; the model sizes, and the compressions,
    best at some budgets; the critical length. There the scores, and P(sparse better) with
    them, come from the law's form alone, and a wrong form is not caught by any interval."""
    said = []
    sizes, lengths, ratios = spans.get("N"), spans.get("L"), spans.get("C")
    if lengths is not None and outside(seq_len, lengths):
        said.append(
            f"L={readable('L', seq_len)} is outside the lengths the fit saw "
            f"({readable_span('L', lengths)}): every score is extrapolated"
        )
    params = {a.size: float(a.params()) for a in archs}
    rows = list(front.budgets.iter_rows(named=True))
    if sizes is not None:
        far: dict[str, None] = {}  # ordered, each size once
        hit = 0
        for row in rows:
            strays = [
                row[f"{tag}_size"]
                for tag in ("dense", "sparse")
                if row[f"{tag}_size"] and outside(params[row[f"{tag}_size"]], sizes)
            ]
            hit += bool(strays)
            far.update(dict.fromkeys(strays))
        if hit:
            said.append(
                f"at {hit} of {len(rows)} budgets the best choice is a model size outside "
                f"those the fit saw ({readable_span('N', sizes)}): {', '.join(far)}; those scores "
                "and P(sparse better) are extrapolated"
            )
    if ratios is not None:
        picked = [
            float(row["sparse_compression"])
            for row in rows
            if row["sparse_size"] and outside(float(row["sparse_compression"]), ratios)
        ]
        if picked:
            said.append(
                f"at {len(picked)} of {len(rows)} budgets the best sparse choice uses a "
                f"compression outside those the fit saw ({readable_span('C', ratios)}): C="
                f"{', '.join(f'{c:g}' for c in sorted(set(picked)))}; those scores and "
                "P(sparse better) are extrapolated"
            )
    if critical is not None and lengths is not None:
        said += _critical_beyond(critical, lengths)
    return said


def _critical_beyond(critical: CriticalLength, lengths: tuple[float, float]) -> list[str]:
    """A line when the critical length, or an end of its interval, lies outside the fitted
    lengths (`describe`, printed with it, gives the numbers). A draw that crosses at or below
    the first length scanned is known only to cross there or earlier: it counts as outside
    only when that length is itself below the fitted ones."""
    start = float(critical.by_length["seq_len"].min())  # type: ignore[arg-type]

    def beyond(x: float) -> bool:
        if not math.isfinite(x):
            return False  # never crosses within the scan: `describe` says so
        if critical.share_below > 0 and x <= start:
            return x < edges(lengths)[0]
        return outside(x, lengths)

    if critical.share_beyond == 1.0:
        return []
    if beyond(critical.median):
        what = "the critical length lies outside"
    elif critical.n_draws > 1 and (beyond(critical.lower) or beyond(critical.upper)):
        what = f"the critical length's {critical.prob:.0%} interval reaches outside"
    else:
        return []
    return [
        f"{what} the lengths the fit saw ({readable_span('L', lengths)}): there it is the law's "
        "form carried beyond its data"
    ]
