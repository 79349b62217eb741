"""Points Datadog has not accepted yet, kept to be re-sent with their original timestamps.

Bounded by age (Datadog drops points more than an hour old, so older ones are dropped here first,
counted and logged) and by count (oldest dropped first). With a spool directory the backlog is also
written to disk after every change (atomically: temporary file, fsync, rename), so a restart during
a Datadog outage loses nothing; a spool file that cannot be read is set aside with a warning, and
every entry is validated on load (a metric name Datadog accepts, a finite value, a whole timestamp no later than
a minute from now, a list of string tags): bad entries are written aside and counted, never sent.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
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
_FUTURE_SLACK = 60.0  # a spooled point from later than this is a broken clock or a forged file


def _point(entry: object, *, latest: float) -> Point | None:
    """A spool entry as a Point, or None when it is not one this exporter could have written."""
    if not isinstance(entry, list) or len(entry) != 4:
        return None
    metric, value, ts, tags = entry
    if not isinstance(metric, str) or not _METRIC_NAME.match(metric):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts <= latest:
        return None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return None
    return Point(metric, float(value), ts, tuple(tags))


_METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,199}$")  # Datadog's metric name grammar


class Spool:
    """The backlog on disk: one JSON document, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / SPOOL_NAME
        self.set_aside = 0
        """Entries of the last load that failed validation (written to backlog.json.invalid-<time>)."""

    def check(self) -> None:
        """Create the directory and write a probe file in it; OSError when the spool could not be written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        probe = self.directory / f".{SPOOL_NAME}.probe"
        probe.write_bytes(b"")
        probe.unlink()

    def load(self, *, now: float | None = None) -> list[Point]:
        """Points saved by a previous run, each validated; a corrupt file is renamed aside and invalid
        entries are written aside (never a crash, never sent)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            log.error("cannot read the spool; starting with an empty backlog", path=str(self.path), error=e.strerror)
            return []
        try:
            doc = json.loads(raw, parse_constant=lambda name: math.nan)
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                raise ValueError("unknown spool format")
            entries = doc["points"]
            if not isinstance(entries, list):
                raise ValueError("points is not a list")
            latest = (time.time() if now is None else now) + _FUTURE_SLACK
            points: list[Point] = []
            bad: list[object] = []
            for entry in entries:
                point = _point(entry, latest=latest)
                if point is None:
                    bad.append(entry)
                else:
                    points.append(point)
            if bad:
                self.set_aside = len(bad)
                aside = self.path.with_name(f"{SPOOL_NAME}.invalid-{int(time.time())}")
                aside.write_text(json.dumps(bad, default=str, allow_nan=True), encoding="utf-8")
                log.warning("invalid spool entries set aside", entries=len(bad), kept=len(points), moved_to=str(aside))
            return points
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
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


_timestamp = operator.attrgetter("timestamp")


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
        self._taken: list[list[Point]] = []  # handed to a delivery and not settled yet: still spooled
        self._lock = threading.Lock()
        self.set_aside = 0
        if spool is not None:
            loaded = spool.load(now=clock())
            self.set_aside = spool.set_aside
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
            self._points.sort(key=_timestamp)  # stable: keeps submission order within an instant
            self._prune()
            self._save()

    def take(self) -> list[Point]:
        """Every point still worth sending, oldest first. The backlog is left empty, but the points stay
        in the spool until `settle` says what became of them, so a crash mid-delivery loses none."""
        with self._lock:
            self._prune()
            points, self._points = self._points, []
            if points:
                self._taken.append(points)
            return points

    def settle(self, taken: list[Point], unsent: Iterable[Point]) -> None:
        """The delivery of `taken` (a list `take` returned) ended: `unsent` go back, the rest are gone.
        Settling the same list twice only adds `unsent` back."""
        with self._lock:
            self._taken = [batch for batch in self._taken if batch is not taken]
            self._points.extend(unsent)
            self._points.sort(key=_timestamp)
            self._prune()
            self._save()

    def _save(self) -> None:
        if self.spool is None:
            return
        try:
            self.spool.write(sorted([*self._points, *(p for batch in self._taken for p in batch)], key=_timestamp))
        except OSError as e:
            log.error("cannot write the spool; unsent points live in memory only", error=str(e))
