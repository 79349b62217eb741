"""The mTLS report's publication: Datadog gauges and the summary event, and the log line that sums a run up."""

from __future__ import annotations

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


def points(report: Report, *, tags: Sequence[str] = (), prefix: str = DEFAULT_METRIC_PREFIX) -> list[Point]:
    """<prefix>.report.mtls_coverage_pct for the mesh and per namespace with traffic, at the evaluation instant."""
    metric = REPORT_CATALOGUE["mtls_coverage_pct"].name(prefix)
    out = []
    if report.mesh.current is not None:
        out.append(Point(metric, report.mesh.current.pct, report.at, tags_for(extra=tags)))
    for ns in sorted(report.namespaces, key=lambda n: n.namespace):
        if ns.coverage.current is not None:
            out.append(Point(metric, ns.coverage.current.pct, report.at, tags_for(namespace=ns.namespace, extra=tags)))
    return out


def submit(
    report: Report, sink: DatadogSink, *, tags: Sequence[str] = (), prefix: str = DEFAULT_METRIC_PREFIX
) -> list[SubmitError]:
    """Send the gauges and the summary event; what failed after retries is returned, not raised."""
    errors = list(sink.submit(points(report, tags=tags, prefix=prefix)).errors)
    title, text = render.summary(report)
    alert = "warning" if report.count(Verdict.STRICT_PLAINTEXT) else "info"
    try:
        sink.event(title=title, text=text, tags=[*tags, "report:mtls-coverage"], alert_type=alert)
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
