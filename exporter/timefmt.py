"""Instants as people and APIs read them: RFC 3339 in UTC, to the second (the one formatter, pure)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(at: float) -> str:
    """`2026-11-26T06:00:00Z` for unix time `at`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
