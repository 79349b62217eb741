"""Durations as users write them (PromQL's `30s`, `5m`, `1h30m`, `7d`): the one parser and the one bound
of every duration setting and flag (pure)."""

from __future__ import annotations

import re

MAX_SECONDS = 366 * 86400.0  # no window, step or timeout of this program means more than a year: a typo

_DURATION = re.compile(r"^(?:[0-9]{1,12}(?:ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(text: str) -> float:
    """Seconds in a PromQL duration such as `5m` or `1h30m`; ValueError when it is not one."""
    if not _DURATION.match(text):
        raise ValueError(f"not a PromQL duration: {text!r} (expected e.g. 30s, 5m, 1h, 7d)")
    return float(sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text)))


def bounded(text: str, *, allow_zero: bool = False) -> float:
    """`seconds(text)` when longer than 0 (or 0 with `allow_zero`) and at most 366 days; ValueError otherwise."""
    value = seconds(text)
    if value <= 0 and not allow_zero:
        raise ValueError(f"must be longer than 0, got {text!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"must be at most 366d, got {text!r}")
    return value
