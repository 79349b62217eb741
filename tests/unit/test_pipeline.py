"""The pipelined cycle, without servers: figures are handed on in at most two batches (what the answers
allow once only the slowest query is outstanding, then the rest), each equal to the figures of the
whole measurement; the delivery worker sends what is queued without waiting for the cycle, pauses
early rounds after a failure a retry could cure, and never loses a point."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from exporter.errors import QueryError, SubmitError
from exporter.export.delivery import Delivery
from exporter.model import CATALOGUE
from exporter.query import figures, promql
from exporter.query.prometheus import PrometheusClient
from exporter.retry import RetryPolicy
from exporter.sink.backlog import Backlog
from exporter.sink.datadog import DatadogSink, Point

A, B = ("shop", "cart"), ("shop", "idle")
LABELS = promql.SERVICE_LABELS
VALUES: dict[str, list[tuple[tuple[str, str], float]]] = {
    "requests": [(A, 4.0), (B, 0.0)],  # B: series, but no request in the window
    "ok": [(A, 3.0)],
    "mtls": [],  # no mTLS series at all: 0 %, not nothing
    "p99": [(A, 120.0)],
}


class InOrder:
    """query_each answering in a chosen order (`fail`: those queries answer with an error)."""

    def __init__(self, order: list[str], fail: tuple[str, ...] = ()) -> None:
        self.order, self.fail = order, fail

    def query_each(self, queries: Mapping[str, str], *, at: float) -> Iterator[tuple[str, Any]]:
        assert set(queries) == set(self.order)
        for name in self.order:
            if name in self.fail:
                yield name, QueryError("Prometheus answered 503", query=queries[name], status=503)
            else:
                yield name, [(dict(zip(LABELS, key, strict=True)), value) for key, value in VALUES[name]]


def batches(order: list[str], fail: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], figures.Measurement]:
    seen: list[dict[str, Any]] = []
    client = cast(PrometheusClient, InOrder(order, fail))
    m = figures.measure(client, at=1.0, window="5m", on_figures=seen.append)
    return seen, m


def test_figures_ready_before_the_slowest_query_go_first_and_the_rest_after() -> None:
    seen, m = batches(["requests", "ok", "mtls", "p99"])
    assert [sorted(b) for b in seen] == [["mtls_coverage_pct", "request_rate", "success_rate_pct"], ["p99_latency_ms"]]
    first, second = seen
    assert first == {"request_rate": {A: 4.0}, "success_rate_pct": {A: 75.0}, "mtls_coverage_pct": {A: 0.0}}
    assert second == {"p99_latency_ms": {A: 120.0}}
    # the batches are the measurement's figures, nothing more or less
    assert {f: v for b in seen for f, v in b.items()} == {f: {A: getattr(m.figures[A], f)} for f in CATALOGUE}
    assert set(m.figures) == {A}


def test_when_the_request_totals_answer_last_everything_goes_at_once() -> None:
    seen, _ = batches(["p99", "ok", "mtls", "requests"])
    assert len(seen) == 1 and set(seen[0]) == set(CATALOGUE)
    seen_ok_last, _ = batches(["requests", "p99", "mtls", "ok"])
    assert [sorted(b) for b in seen_ok_last] == [
        ["mtls_coverage_pct", "p99_latency_ms", "request_rate"],
        ["success_rate_pct"],
    ]


def test_failed_totals_hand_on_only_the_p99_and_a_failed_figure_sends_nothing() -> None:
    seen, m = batches(["requests", "ok", "mtls", "p99"], fail=("requests",))
    assert seen == [{"p99_latency_ms": {A: 120.0}}] and set(m.errors) == {"requests"}
    seen, m = batches(["requests", "mtls", "p99", "ok"], fail=("ok",))
    assert all("success_rate_pct" not in b for b in seen) and m.figures[A].success_rate_pct is None


# ---------------------------------------------------------------------------------------------- delivery
class Transport:
    """A SeriesTransport that records batches; `gate` holds each request until set; `fail` answers 503."""

    def __init__(self) -> None:
        self.sent: list[list[dict[str, Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.calls = 0

    def send_series(self, payload: bytes) -> None:
        series = json.loads(zlib.decompress(payload))["series"]
        self.calls += 1
        self.gate.wait(10)
        if self.fail:
            raise SubmitError("POST /api/v2/series -> 503", status=503, retryable=True)
        self.sent.append(series)

    def send_event(self, event: dict[str, Any]) -> None:  # pragma: no cover - not used here
        raise AssertionError("no events")


def pts(n: int, *, metric: str = "m") -> list[Point]:
    return [Point(metric, float(i), 1_000_000_000 + i, (f"i:{i}",)) for i in range(n)]


@pytest.fixture
def transport() -> Iterator[Transport]:
    t = Transport()
    yield t
    t.gate.set()


def delivery(transport: Transport) -> tuple[Delivery, Backlog]:
    backlog = Backlog(max_age=float("inf"))
    return Delivery(DatadogSink(transport, retry=RetryPolicy(attempts=1)), backlog), backlog


def test_added_points_travel_before_the_cycle_flushes(transport: Transport) -> None:
    d, backlog = delivery(transport)
    d.add(pts(3))
    deadline = threading.Event()
    for _ in range(500):  # the worker sends on its own: no flush has been asked for yet
        if transport.sent:
            break
        deadline.wait(0.01)
    assert len(transport.sent) == 1 and len(transport.sent[0]) == 3
    d.add(pts(2, metric="p99"))
    stats = d.flush(timeout=5)
    d.stop()
    assert stats is not None and stats.points == 5 and not stats.errors and len(backlog) == 0
    assert stats.requests == len(transport.sent) == 2


def test_after_a_retryable_failure_only_the_flush_sends_and_nothing_is_lost(transport: Transport) -> None:
    d, backlog = delivery(transport)
    transport.fail = True
    d.add(pts(3))
    assert d.flush(timeout=5) is not None  # the round that failed, then an empty one: both done
    calls = transport.calls
    d.add(pts(2, metric="p99"))  # Datadog is failing: queued, no early round
    threading.Event().wait(0.2)
    assert transport.calls == calls and len(backlog) == 5
    transport.fail = False
    stats = d.flush(timeout=5)
    d.stop()
    assert stats is not None and stats.points == 5 and len(backlog) == 0
    assert sorted(p["metric"] for p in transport.sent[-1]) == ["m", "m", "m", "p99", "p99"]


def test_a_flush_that_times_out_keeps_the_stats_and_stop_puts_in_flight_points_back(transport: Transport) -> None:
    d, backlog = delivery(transport)
    transport.gate.clear()  # the intake hangs
    d.add(pts(4))
    assert d.flush(timeout=0.2) is None
    d.stop()  # the worker is stuck in the request: its points come back
    assert len(backlog) == 4 and sorted(p.value for p in backlog.take()) == [0.0, 1.0, 2.0, 3.0]
