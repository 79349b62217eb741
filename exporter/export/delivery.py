"""Delivery to Datadog off the measuring thread: a worker sends the backlog in rounds, oldest first.

A cycle `add`s each hand-over of points as soon as its queries have answered, which queues them and
asks the worker for a round without waiting, so that they travel while the slowest query is still
running; `flush` asks for a last round and waits for it, bounded. After a round failed for a reason a
retry could cure (Datadog down or throttling), added points wait for the next flush: an outage costs
one round of retries per cycle, not one per hand-over. Nothing is lost on the way: every point not
accepted goes back into the backlog, whatever the sink raises, and points still in flight when the
worker is stopped are put back too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from exporter.errors import SubmitError

if TYPE_CHECKING:  # Datadog's client loads only when something is submitted
    from exporter.sink.backlog import Backlog
    from exporter.sink.datadog import DatadogSink, Point, SubmitStats

log = structlog.get_logger("exporter.export.delivery")


def deliver(sink: DatadogSink, points: Sequence[Point]) -> SubmitStats:
    """Send `points`; whatever is not accepted comes back in `failed`, whatever happens: an unexpected
    exception in delivery keeps every point."""
    from exporter.sink.datadog import SubmitStats

    try:
        return sink.submit(points)
    except Exception as e:  # a bug or a library surprise must not cost the queue
        log.exception("delivery failed unexpectedly; points kept", points=len(points), error=str(e))
        return SubmitStats(failed=list(points), errors=[SubmitError(f"unexpected {type(e).__name__}: {e}")])


def _added(total: SubmitStats, more: SubmitStats) -> SubmitStats:
    """Two rounds as one: counts add up; `failed` is the later round's (it retried the earlier one's)."""
    return replace(
        more,
        requests=total.requests + more.requests,
        points=total.points + more.points,
        bytes=total.bytes + more.bytes,
        errors=[*total.errors, *more.errors],
        rejected=[*total.rejected, *more.rejected],
    )


class Delivery:
    """A worker thread sending `backlog` through `sink` one round at a time; `on_round(stats, seconds)`
    sees every round (self-metrics). `cancel` ends a flush's wait at once (shutdown)."""

    def __init__(
        self,
        sink: DatadogSink,
        backlog: Backlog,
        *,
        on_round: Callable[[SubmitStats, float], None] = lambda stats, seconds: None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.sink = sink
        self.backlog = backlog
        self.on_round = on_round
        self._cancel = cancel or threading.Event()
        self._cond = threading.Condition()
        self._wanted = self._done = 0
        self._since_flush: SubmitStats | None = None
        self._failing = False  # the last round failed retryably: only a flush starts the next one
        self._in_flight: list[Point] | None = None  # taken from the backlog, not acknowledged yet
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, points: Sequence[Point]) -> None:
        """Queue `points` and ask for a round without waiting for it."""
        self.backlog.add(points)
        with self._cond:
            if not self._failing:
                self._request()

    def flush(self, timeout: float | None) -> SubmitStats | None:
        """Ask for a round and wait for it, at most `timeout` seconds: the stats of every round since the
        last flush, or None when it did not end in time (the worker goes on; its stats carry over)."""
        with self._cond:
            wanted = self._request()
            self._cond.wait_for(lambda: self._done >= wanted or self._cancel.is_set(), timeout=timeout)
            if self._done < wanted:
                log.warning("delivery still running; measuring goes on", backlog=len(self.backlog))
                return None
            stats, self._since_flush = self._since_flush, None
            return stats

    def stop(self) -> None:
        """Stop the worker; points it still holds (a stuck request) go back into the backlog."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=1.0)
        with self._cond:
            held, self._in_flight = self._in_flight, None
        if held:
            log.warning("delivery was still running at shutdown; its points are kept", points=len(held))
            self.backlog.settle(held, held)

    def _request(self) -> int:  # with self._cond held
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="delivery", daemon=True)
            self._worker.start()
        self._wanted += 1
        self._cond.notify_all()
        return self._wanted

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._done < self._wanted or self._stop.is_set())
                if self._stop.is_set():
                    return
                wanted = self._wanted
            stats = self._round()
            with self._cond:
                self._since_flush = stats if self._since_flush is None else _added(self._since_flush, stats)
                self._failing = any(e.retryable for e in stats.errors)
                self._done = wanted
                self._cond.notify_all()

    def _round(self) -> SubmitStats:
        """One delivery of the whole backlog; whatever fails or raises, the points stay queued."""
        from exporter.sink.datadog import SubmitStats

        pending = self.backlog.take()
        with self._cond:
            self._in_flight = pending
        started = time.perf_counter()
        try:
            stats = deliver(self.sink, pending)  # failures come back in stats.failed
            with self._cond:
                if self._in_flight is not pending:  # stop() reclaimed these points already
                    return stats
                self._in_flight = None
            self.backlog.settle(pending, stats.failed)
            self.on_round(stats, time.perf_counter() - started)
        except Exception as e:  # never lose the round's points, never leave a flush waiting
            log.exception("delivery round crashed; points kept", error=str(e))
            with self._cond:
                held, self._in_flight = self._in_flight, None
            self.backlog.settle(pending, held or [])
            stats = SubmitStats(errors=[SubmitError(f"delivery crashed: {type(e).__name__}", retryable=True)])
        return stats
