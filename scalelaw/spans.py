"""Where a fit's data end: when a value counts as outside the span a fit saw, and how a span
reads in a warning. At the floor, free of numpy and the fitting code, so that predictions,
frontiers and plans say it the same way without loading one another."""

from __future__ import annotations

#: How far outside a fitted span a value may lie and still count as inside: tables give
#: rounded parameter counts (7.62e9 for Qwen2.5-7B, whose decoder has 7.6156e9).
SPAN_SLACK = 0.02


def edges(span: tuple[float, float]) -> tuple[float, float]:
    """The values from which a point counts as outside `span`: its ends widened by
    `SPAN_SLACK` of their size (outward for negative ends too), and not at all when the fit saw
    one value only, where the law's dependence on that covariate was never measured."""
    lo, hi = span
    if lo == hi:
        return lo - 1e-9 * abs(lo), hi + 1e-9 * abs(hi)
    return lo - SPAN_SLACK * abs(lo), hi + SPAN_SLACK * abs(hi)


def outside(value: float, span: tuple[float, float] | None) -> bool:
    """Whether `value` lies outside `span` (`edges`; never when `span` is unknown)."""
    if span is None:
        return False
    lo, hi = edges(span)
    return not lo <= value <= hi


def readable(symbol: str, x: float) -> str:
    """A model size in billions (or millions), a length in K tokens when it is a whole number
    of them (else in tokens, so that 16,000 never reads as the 16K it differs from), anything
    else as it is."""
    if symbol == "N" and x >= 1e6:
        return f"{x / 1e9:.3g}B" if x >= 1e9 else f"{x / 1e6:.3g}M"
    if symbol == "L" and x >= 1024:
        return f"{x / 1024:,.0f}K" if x % 1024 == 0 else f"{x:,.0f}"
    return f"{x:g}"


def readable_span(symbol: str, span: tuple[float, float]) -> str:
    """'16K to 32K', or one value when the fit saw one."""
    lo, hi = span
    if lo == hi:
        return readable(symbol, lo)
    return f"{readable(symbol, lo)} to {readable(symbol, hi)}"


__all__ = ["SPAN_SLACK", "edges", "outside", "readable", "readable_span"]
