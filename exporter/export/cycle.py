"""One export cycle, in two halves the daemon runs apart: `measure_cycle` (figures for the discovered
services at one instant) and `deliver` (the backlog and new points to Datadog, never losing them).

Clients are passed in; the daemon, `exporter once` and the benchmarks all run these same functions
(`run_cycle` is both halves in a row, for `once` and the benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from exporter.errors import QueryError, SubmitError
from exporter.model import DEFAULT_METRIC_PREFIX, Figures, ServiceRef
from exporter.query.figures import Source, service_figures

if TYPE_CHECKING:  # Datadog's client loads only when a cycle submits (`exporter once` without --submit)
    from exporter.query.prometheus import PrometheusClient
    from exporter.sink.backlog import Backlog
    from exporter.sink.datadog import DatadogSink, Point, SubmitStats

log = structlog.get_logger("exporter.export.cycle")


@dataclass
class CycleResult:
    at: int
    figures: dict[ServiceRef, Figures]
    query_errors: dict[str, QueryError] = field(default_factory=dict)
    submitted: SubmitStats | None = None
    durations: dict[str, float] = field(default_factory=dict)
    promql_requests: int = 0
    non_finite: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.query_errors and not (self.submitted and self.submitted.errors)

    @property
    def measured(self) -> bool:
        """False when the instant could not be measured at all (the request totals query failed)."""
        return "requests" not in self.query_errors


def measure_cycle(
    services: Sequence[ServiceRef],
    *,
    prom: PrometheusClient,
    at: int,
    window: str,
    namespaces: Sequence[str] | None = None,
    source: Source = "raw",
) -> CycleResult:
    """Figures of `services` at `at` (whole unix seconds); query failures are logged and returned."""
    started = time.perf_counter()
    before = prom.requests_made
    figures, m = service_figures(prom, services, at=at, window=window, namespaces=namespaces, source=source)
    result = CycleResult(at, figures, m.errors, promql_requests=prom.requests_made - before, non_finite=m.non_finite)
    result.durations["query"] = time.perf_counter() - started
    for name, error in m.errors.items():
        log.error("query failed", figure_query=name, error=str(error), status=error.status, evaluated_at=at)
    for name, count in m.non_finite.items():
        log.error("non-finite samples: figures left out", figure_query=name, figures=count, evaluated_at=at)
    return result


def deliver(sink: DatadogSink, points: Sequence[Point], backlog: Backlog | None = None) -> SubmitStats:
    """Send the backlog (oldest first) and then `points`; whatever is not accepted goes back into the
    backlog, whatever happens: an unexpected exception in delivery keeps every point."""
    pending = [*(backlog.take() if backlog is not None else []), *points]
    try:
        stats = sink.submit(pending)
    except Exception as e:  # a bug or a library surprise must not cost the queue
        from exporter.sink.datadog import SubmitStats

        log.exception("delivery failed unexpectedly; points kept", points=len(pending), error=str(e))
        stats = SubmitStats(failed=list(pending), errors=[SubmitError(f"unexpected {type(e).__name__}: {e}")])
    if backlog is not None:
        backlog.add(stats.failed)
    return stats


def run_cycle(
    services: Sequence[ServiceRef],
    *,
    prom: PrometheusClient,
    at: int,
    window: str,
    namespaces: Sequence[str] | None = None,
    sink: DatadogSink | None = None,
    tags: Sequence[str] = (),
    backlog: Backlog | None = None,
    metric_prefix: str = DEFAULT_METRIC_PREFIX,
    source: Source = "raw",
) -> CycleResult:
    """Measure `services` at `at` and submit their points when a sink is given (both halves in a row)."""
    result = measure_cycle(services, prom=prom, at=at, window=window, namespaces=namespaces, source=source)
    if sink is not None:
        from exporter.sink.datadog import points_for

        submit_started = time.perf_counter()
        result.submitted = deliver(sink, points_for(result.figures, at=at, tags=tags, prefix=metric_prefix), backlog)
        result.durations["submit"] = time.perf_counter() - submit_started
    log_cycle(result, services=len(services), backlog=backlog)
    return result


def log_cycle(result: CycleResult, *, services: int, backlog: Backlog | None) -> None:
    """The one `cycle` log line: what was measured and sent."""
    with_traffic = sum(1 for f in result.figures.values() if f.request_rate is not None)
    s = result.submitted
    log.info(
        "cycle",
        evaluated_at=result.at,
        services=services,
        services_with_traffic=with_traffic,
        promql_requests=result.promql_requests,
        points=s.points if s else 0,
        datadog_requests=s.requests if s else 0,
        failed_points=s.failed_points if s else 0,
        backlog=len(backlog) if backlog is not None else None,
        query_errors=sorted(result.query_errors),
        durations_s={k: round(v, 4) for k, v in result.durations.items()},
    )
