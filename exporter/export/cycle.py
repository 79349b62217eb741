"""One export cycle: `measure_cycle` (figures of the discovered services at one instant, their points
handed on as soon as their queries answer: most of them while the p99 query still runs) and
`run_cycle` (the same, delivered to Datadog).

Clients are passed in; the daemon, `exporter once` and the benchmarks all run these same functions.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from exporter.errors import QueryError
from exporter.model import DEFAULT_METRIC_PREFIX, Figures, ServiceRef
from exporter.query import promql
from exporter.query.figures import Key, Source, measure_services

if TYPE_CHECKING:  # Datadog's client loads only when a cycle submits (`exporter once` without --submit)
    from exporter.query.prometheus import PrometheusClient
    from exporter.sink.backlog import Backlog
    from exporter.sink.datadog import DatadogSink, Point, SubmitStats

log = structlog.get_logger("exporter.export.cycle")

_gc = {"pauses": 0, "was_enabled": True}
_gc_lock = threading.Lock()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a cycle. A cycle allocates ~30 objects per service (answers,
    figures, points) that reference counting frees on its own; with the collector on, their passage
    through its generations triggers full collections that scan the whole heap: ~0.15 s of CPU per
    cycle at 10,000 services, a third of the cycle's own work (bench/RESULTS.md)."""
    with _gc_lock:
        if _gc["pauses"] == 0:
            _gc["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc["pauses"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc["pauses"] -= 1
            if _gc["pauses"] == 0 and _gc["was_enabled"]:
                gc.enable()


Services = Sequence[ServiceRef] | Callable[[], Sequence[ServiceRef]]
"""The Services to measure, or a call that lists them, made once the queries are on their way."""


@dataclass
class CycleResult:
    at: int
    figures_of: Callable[[], dict[ServiceRef, Figures]]
    """Builds `figures` (a daemon's cycle never needs them: it sends points and logs counts)."""
    services: int = 0
    with_traffic: int = 0
    query_errors: dict[str, QueryError] = field(default_factory=dict)
    submitted: SubmitStats | None = None
    durations: dict[str, float] = field(default_factory=dict)
    promql_requests: int = 0
    non_finite: dict[str, int] = field(default_factory=dict)

    @functools.cached_property
    def figures(self) -> dict[ServiceRef, Figures]:
        """Every measured Service's figures (all None without traffic)."""
        return self.figures_of()

    @property
    def ok(self) -> bool:
        return not self.query_errors and not (self.submitted and self.submitted.errors)

    @property
    def measured(self) -> bool:
        """False when the instant could not be measured at all (the request totals query failed)."""
        return "requests" not in self.query_errors


class _Listed:
    """The measured Services by group key, listed on first use (after the queries were sent)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._by_key: dict[Key, ServiceRef] | None = None

    def by_key(self) -> dict[Key, ServiceRef]:
        if self._by_key is None:
            services = self._services() if callable(self._services) else self._services
            self._by_key = {(s.namespace, s.name): s for s in services}
        return self._by_key


def measure_cycle(
    services: Services,
    *,
    prom: PrometheusClient,
    at: int,
    window: str,
    namespaces: Sequence[str] | None = None,
    source: Source = "raw",
    on_points: Callable[[list[Point]], None] | None = None,
    tags: Sequence[str] = (),
    metric_prefix: str = DEFAULT_METRIC_PREFIX,
) -> CycleResult:
    """Figures of `services` at `at` (whole unix seconds); query failures are logged and returned. With
    `on_points`, the figures' gauge points (with `tags` under each Service's own) go there as soon as
    their queries have answered: at most two hand-overs (see exporter.query.figures)."""
    started = time.perf_counter()
    before = prom.requests_made
    listed = _Listed(services)
    on_figures = None
    if on_points is not None:
        from exporter.sink.datadog import points_for, service_tags

        tags_of: dict[Key, tuple[str, ...]] = {}

        def on_figures(values: dict[str, dict[Key, float]]) -> None:
            if not tags_of:  # once a cycle: each Service's tags, by the key the answers use
                extra = tuple(tags)
                tags_of.update((key, service_tags(ref, extra)) for key, ref in listed.by_key().items())
            on_points(points_for(values, tags_of, at=at, prefix=metric_prefix))

    matchers = [promql.one_of("destination_service_namespace", namespaces)] if namespaces else []
    m = measure_services(prom, at=at, window=window, matchers=matchers, source=source, on_figures=on_figures)
    refs = listed.by_key()
    result = CycleResult(
        at,
        lambda: {s: m.figures.get(key, Figures()) for key, s in refs.items()},
        services=len(refs),
        with_traffic=sum(1 for key in m.values["request_rate"] if key in refs),
        query_errors=m.errors,
        promql_requests=prom.requests_made - before,
        non_finite=m.non_finite,
    )
    result.durations["query"] = time.perf_counter() - started
    for name, error in m.errors.items():
        log.error("query failed", figure_query=name, error=str(error), status=error.status, evaluated_at=at)
    for name, count in m.non_finite.items():
        log.error("non-finite samples: figures left out", figure_query=name, figures=count, evaluated_at=at)
    return result


def run_cycle(
    services: Services,
    *,
    prom: PrometheusClient,
    at: int,
    window: str,
    namespaces: Sequence[str] | None = None,
    sink: DatadogSink | None = None,
    tags: Sequence[str] = (),
    metric_prefix: str = DEFAULT_METRIC_PREFIX,
    source: Source = "raw",
) -> CycleResult:
    """Measure `services` at `at` and, when a sink is given, deliver each figure's points while the
    other queries still run; returns once everything was sent or failed."""
    with gc_paused():
        if sink is None:
            result = measure_cycle(services, prom=prom, at=at, window=window, namespaces=namespaces, source=source)
        else:
            result = _delivered_cycle(
                services, prom=prom, at=at, window=window, namespaces=namespaces, sink=sink, tags=tags,
                metric_prefix=metric_prefix, source=source,
            )  # fmt: skip
    log_cycle(result, services=result.services, backlog=None)
    return result


def _delivered_cycle(
    services: Services,
    *,
    sink: DatadogSink,
    prom: PrometheusClient,
    at: int,
    window: str,
    namespaces: Sequence[str] | None,
    tags: Sequence[str],
    metric_prefix: str,
    source: Source,
) -> CycleResult:
    from exporter.export.delivery import Delivery
    from exporter.sink.backlog import Backlog

    delivery = Delivery(sink, Backlog(max_age=math.inf))  # one cycle, `--at` any time: nothing ages out
    try:
        result = measure_cycle(
            services,
            prom=prom,
            at=at,
            window=window,
            namespaces=namespaces,
            source=source,
            on_points=delivery.add,
            tags=tags,
            metric_prefix=metric_prefix,
        )
        waited = time.perf_counter()
        result.submitted = delivery.flush(timeout=None)
        result.durations["submit"] = time.perf_counter() - waited
    finally:
        delivery.stop()
    return result


def log_cycle(result: CycleResult, *, services: int, backlog: Backlog | None) -> None:
    """The one `cycle` log line: what was measured and sent."""
    s = result.submitted
    log.info(
        "cycle",
        evaluated_at=result.at,
        services=services,
        services_with_traffic=result.with_traffic,
        promql_requests=result.promql_requests,
        points=s.points if s else 0,
        datadog_requests=s.requests if s else 0,
        failed_points=s.failed_points if s else 0,
        backlog=len(backlog) if backlog is not None else None,
        query_errors=sorted(result.query_errors),
        durations_s={k: round(v, 4) for k, v in result.durations.items()},
    )
