"""One export cycle: figures for the discovered services at one instant, then (optionally) Datadog.

Clients are passed in; the daemon, `exporter once` and the benchmarks all run this same function.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from exporter.errors import QueryError
from exporter.model import Figures, ServiceRef
from exporter.query.figures import Source, service_figures

if TYPE_CHECKING:  # Datadog's client loads only when a cycle submits (`exporter once` without --submit)
    from exporter.query.prometheus import PrometheusClient
    from exporter.sink.backlog import Backlog
    from exporter.sink.datadog import DatadogSink, SubmitStats

log = structlog.get_logger("exporter.export.cycle")


@dataclass
class CycleResult:
    at: int
    figures: dict[ServiceRef, Figures]
    query_errors: dict[str, QueryError] = field(default_factory=dict)
    submitted: SubmitStats | None = None
    durations: dict[str, float] = field(default_factory=dict)
    promql_requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.query_errors and not (self.submitted and self.submitted.errors)


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
    source: Source = "raw",
) -> CycleResult:
    """Measure `services` at `at` (whole unix seconds) and submit their points when a sink is given.

    With a backlog, points left over from earlier cycles go first (oldest first) and whatever
    Datadog does not accept now goes back into it.
    """
    started = time.perf_counter()
    before = prom.requests_made
    figures, errors = service_figures(prom, services, at=at, window=window, namespaces=namespaces, source=source)
    result = CycleResult(at, figures, errors, promql_requests=prom.requests_made - before)
    result.durations["query"] = time.perf_counter() - started
    for name, error in errors.items():
        log.error("query failed", figure_query=name, error=str(error), status=error.status)
    if sink is not None:
        from exporter.sink.datadog import points_for

        submit_started = time.perf_counter()
        pending = backlog.take() if backlog is not None else []
        result.submitted = sink.submit([*pending, *points_for(figures, at=at, tags=tags)])
        if backlog is not None:
            backlog.add(result.submitted.failed)
        result.durations["submit"] = time.perf_counter() - submit_started
    with_traffic = sum(1 for f in figures.values() if f.request_rate is not None)
    log.info(
        "cycle",
        evaluated_at=at,
        services=len(services),
        services_with_traffic=with_traffic,
        promql_requests=result.promql_requests,
        points=result.submitted.points if result.submitted else 0,
        datadog_requests=result.submitted.requests if result.submitted else 0,
        failed_points=result.submitted.failed_points if result.submitted else 0,
        backlog=len(backlog) if backlog is not None else None,
        query_errors=sorted(errors),
        durations_s={k: round(v, 4) for k, v in result.durations.items()},
    )
    return result
