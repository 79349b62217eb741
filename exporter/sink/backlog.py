"""Points Datadog has not accepted yet, kept to be re-sent with their original timestamps.

Bounded by age (Datadog drops points more than an hour old, so older ones are dropped here first,
counted and logged) and by count (oldest dropped first). With a spool directory the backlog is also
written to disk after every change (atomically: temporary file, fsync, rename), so a restart during
a Datadog outage loses nothing; a spool file that cannot be read is set aside with a warning.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import structlog

from exporter.sink.datadog import Point

log = structlog.get_logger("exporter.sink.backlog")

MAX_AGE_SECONDS = 3600.0  # Datadog's intake ignores points more than one hour in the past
DEFAULT_MAX_POINTS = 200_000
SPOOL_NAME = "backlog.json"
_FORMAT = 1


class Spool:
    """The backlog on disk: one JSON document, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / SPOOL_NAME

    def load(self) -> list[Point]:
        """Points saved by a previous run; a corrupt file is renamed aside (never a crash)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(raw)
            if doc.get("format") != _FORMAT:
                raise ValueError(f"unknown spool format {doc.get('format')!r}")
            return [Point(str(m), float(v), int(t), tuple(str(x) for x in tags)) for m, v, t, tags in doc["points"]]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            aside = self.path.with_name(f"{SPOOL_NAME}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.warning("spool file unreadable; set aside", path=str(self.path), moved_to=str(aside), error=str(e))
            return []

    def write(self, points: Sequence[Point]) -> None:
        if not points:
            self.path.unlink(missing_ok=True)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {"format": _FORMAT, "points": [[p.metric, p.value, p.timestamp, list(p.tags)] for p in points]}
        tmp = self.path.with_name(f".{SPOOL_NAME}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Backlog:
    """Unsent points, oldest first; thread-safe."""

    def __init__(
        self,
        *,
        max_points: int = DEFAULT_MAX_POINTS,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
        spool: Spool | None = None,
        on_drop: Callable[[str, int], None] = lambda reason, n: None,
    ) -> None:
        self.max_points = max_points
        self.max_age = max_age
        self.clock = clock
        self.spool = spool
        self.on_drop = on_drop
        self._points: list[Point] = []
        self._lock = threading.Lock()
        if spool is not None:
            loaded = spool.load()
            if loaded:
                log.info("backlog restored from spool", points=len(loaded), path=str(spool.path))
            self.add(loaded)

    def __len__(self) -> int:
        return len(self._points)

    def oldest(self) -> int | None:
        """Timestamp of the oldest waiting point; None when the backlog is empty."""
        with self._lock:
            return self._points[0].timestamp if self._points else None

    def _drop(self, reason: str, points: Sequence[Point]) -> None:
        if points:
            log.warning(
                "dropping unsent points",
                reason=reason,
                points=len(points),
                oldest=min(p.timestamp for p in points),
                newest=max(p.timestamp for p in points),
            )
            self.on_drop(reason, len(points))

    def _prune(self) -> None:
        limit = self.clock() - self.max_age
        old = [p for p in self._points if p.timestamp < limit]
        if old:
            self._points = [p for p in self._points if p.timestamp >= limit]
            self._drop("older_than_datadog_accepts", old)
        excess = len(self._points) - self.max_points
        if excess > 0:
            self._drop("backlog_full", self._points[:excess])
            del self._points[:excess]

    def add(self, points: Iterable[Point]) -> None:
        """Keep `points` (oldest first) for the next attempt; then save the spool."""
        with self._lock:
            self._points.extend(points)
            self._points.sort(key=lambda p: p.timestamp)  # stable: keeps submission order within an instant
            self._prune()
            self._save()

    def take(self) -> list[Point]:
        """Every point still worth sending, oldest first; the backlog is left empty (the spool too)."""
        with self._lock:
            self._prune()
            points, self._points = self._points, []
            return points

    def _save(self) -> None:
        if self.spool is None:
            return
        try:
            self.spool.write(self._points)
        except OSError as e:
            log.error("cannot write the spool; unsent points live in memory only", error=str(e))
