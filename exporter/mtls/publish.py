"""The mTLS report's publication: Datadog gauges and the summary event, and the log line that sums a run up."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog

from exporter.errors import SubmitError
from exporter.model import DEFAULT_METRIC_PREFIX, REPORT_CATALOGUE
from exporter.mtls import render
from exporter.mtls.model import Report, Verdict
from exporter.sink.datadog import DatadogSink, Point, tags_for

log = structlog.get_logger("exporter.mtls.publish")


MESH_METRIC = REPORT_CATALOGUE["mtls_coverage_pct"].name()  # istio.service.report.mtls_coverage_pct
PLAINTEXT_METRIC = REPORT_CATALOGUE["plaintext_request_rate"].name()  # istio.service.report.plaintext_request_rate
EVENT_MAX_AGE = 18 * 3600
"""Datadog accepts an event's date_happened up to 18 hours in the past."""


def points(report: Report, *, tags: Sequence[str] = (), prefix: str = DEFAULT_METRIC_PREFIX) -> list[Point]:
    """Coverage and plaintext rate for the mesh and per namespace with traffic, at the evaluation instant."""
    coverage = REPORT_CATALOGUE["mtls_coverage_pct"].name(prefix)
    plaintext = REPORT_CATALOGUE["plaintext_request_rate"].name(prefix)
    out = []
    rows = [(None, report.mesh.current)] + [
        (ns.namespace, ns.coverage.current) for ns in sorted(report.namespaces, key=lambda n: n.namespace)
    ]
    for namespace, current in rows:
        if current is None:
            continue  # no traffic: nothing sent, never a zero
        where = tags_for(namespace=namespace, extra=tags)
        out.append(Point(coverage, current.pct, report.at, where))
        out.append(Point(plaintext, current.plaintext_rate, report.at, where))
    return out


def date_happened(report: Report, *, now: float) -> int | None:
    """The window's end when Datadog accepts it as the event's date, else None (posted now, window in the text)."""
    return report.at if 0 <= now - report.at <= EVENT_MAX_AGE - 60 else None


def submit(
    report: Report,
    sink: DatadogSink,
    *,
    tags: Sequence[str] = (),
    prefix: str = DEFAULT_METRIC_PREFIX,
    now: float | None = None,
) -> list[SubmitError]:
    """Send the gauges and the summary event; what failed after retries is returned, not raised."""
    errors = list(sink.submit(points(report, tags=tags, prefix=prefix)).errors)
    dated = date_happened(report, now=time.time() if now is None else now)
    title, text = render.summary(report, dated=dated is not None)
    alert = "warning" if report.count(Verdict.STRICT_PLAINTEXT) else "info"
    try:
        sink.event(
            title=title,
            text=text,
            tags=[*tags, "report:mtls-coverage"],
            alert_type=alert,
            date_happened=dated,
        )
    except SubmitError as e:
        log.error("datadog event failed", error=str(e), status=e.status)
        errors.append(e)
    return errors


def log_summary(report: Report, **extra: Any) -> None:
    mesh = report.mesh.current
    log.info(
        "mtls report",
        evaluated_at=report.at,
        window=report.window,
        mesh_coverage_pct=None if mesh is None else round(mesh.pct, 4),
        verdicts={v.name.lower(): [n.namespace for n in report.namespaces if n.verdict is v] for v in Verdict},
        offenders=len(report.offenders),
        promql_requests=report.promql_requests,
        **extra,
    )
