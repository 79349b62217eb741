"""Statistics of benchmark runs (pure): medians, spreads and the ratios RESULTS.md reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median, minimum and maximum of some runs' values, and how many runs there were."""

    median: float
    low: float
    high: float
    runs: int


def summarize(values: Sequence[float]) -> Summary:
    """Summary of `values` (at least one, all finite)."""
    if not values:
        raise ValueError("no runs to summarize")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"not finite: {list(values)}")
    return Summary(statistics.median(values), min(values), max(values), len(values))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator ÷ denominator; None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def extrapolate(elapsed: float, *, done: int, total: int) -> float:
    """Time a sequential per-item loop needs for `total` items, from `elapsed` seconds for the first `done`."""
    if done <= 0 or total < done:
        raise ValueError(f"cannot extrapolate {done} done items to {total}")
    return elapsed * total / done
