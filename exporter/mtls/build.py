"""Builds the mTLS coverage report: coverage over a window, plaintext callers, policy verdicts.

Coverage is 100 × mutual-TLS requests / all requests as the destination's proxy reports them,
weighted by requests over the window, for the mesh, per namespace (`destination_service_namespace`)
and per migrated service; the previous window (PromQL `offset`) gives the trend. Four grouped
PromQL requests per report, however large the mesh: all requests and plaintext requests (by
destination and caller), for this window and the previous one. The PeerAuthentication objects are
resolved by exporter.mtls.policy, and each namespace gets a verdict on moving to STRICT. Rendering
lives in exporter.mtls.render, the value types in exporter.mtls.model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.errors import QueryError
from exporter.model import ServiceRef
from exporter.mtls.model import Caller, Coverage, NamespaceReport, Report, ServiceReport, Trend, Verdict
from exporter.mtls.policy import Mode, Resolution
from exporter.query import promql
from exporter.query.prometheus import PrometheusClient, vector_by

log = structlog.get_logger("exporter.mtls.build")

CALLER_LABELS: tuple[str, ...] = ("source_workload", "source_workload_namespace")


# --------------------------------------------------------------------------------------------- model


# ------------------------------------------------------------------------------------------- traffic
Key = tuple[str, ...]


@dataclass(frozen=True)
class Traffic:
    """One window's vectors: all requests per (namespace, service); plaintext per (ns, service, workload, ns)."""

    requests: dict[Key, float]
    plaintext: dict[Key, float]


def measure_traffic(
    prom: PrometheusClient, *, at: int, window: str, matchers: Sequence[promql.Matcher] = ()
) -> tuple[Traffic, Traffic]:
    """This window's and the previous window's traffic: four grouped queries, run concurrently."""
    by, callers = promql.SERVICE_LABELS, (*promql.SERVICE_LABELS, *CALLER_LABELS)
    queries = {
        (when, name): text
        for when, offset in (("current", None), ("previous", window))
        for name, text in promql.coverage_queries(
            callers=CALLER_LABELS, window=window, matchers=matchers, offset=offset
        ).items()
    }
    vectors = {}
    for key, answer in prom.query_all(queries, at=at).items():
        if isinstance(answer, QueryError):
            raise answer  # a report is all or nothing
        vectors[key] = vector_by(answer, by if key[1] == "requests" else callers, query=queries[key])
    current = Traffic(vectors[("current", "requests")], vectors[("current", "plaintext")])
    return current, Traffic(vectors[("previous", "requests")], vectors[("previous", "plaintext")])


def _coverage(traffic: Traffic, keep: Callable[[Key], bool], seconds: float) -> Coverage | None:
    rate = sum(v for k, v in traffic.requests.items() if keep(k))
    if rate <= 0:
        return None
    plaintext = sum(v for k, v in traffic.plaintext.items() if keep(k[:2]) and v > 0)
    return Coverage(rate, plaintext, seconds)


def _trend(current: Traffic, previous: Traffic, keep: Callable[[Key], bool], seconds: float) -> Trend:
    return Trend(_coverage(current, keep, seconds), _coverage(previous, keep, seconds))


def _in_namespace(namespace: str) -> Callable[[Key], bool]:
    return lambda key: key[0] == namespace


def _is_service(service: ServiceRef) -> Callable[[Key], bool]:
    return lambda key: key == (service.namespace, service.name)


def _worst_first(trend: Trend, name: Any) -> tuple[Any, ...]:
    c = trend.current
    return (c is None, c.pct if c else 0.0, -(c.rate if c else 0.0), name)


def _verdict(mode: Mode, coverage: Coverage | None, plaintext: bool) -> Verdict:
    if coverage is None:
        return Verdict.NO_TRAFFIC
    if mode is Mode.STRICT:
        return Verdict.STRICT_PLAINTEXT if plaintext else Verdict.STRICT_CLEAN
    if mode is Mode.DISABLE:
        return Verdict.DISABLED
    return Verdict.BLOCKED if plaintext else Verdict.READY


def build_report(
    current: Traffic,
    previous: Traffic,
    *,
    services: Iterable[ServiceRef],
    policies: Resolution,
    at: int,
    window: str,
    namespaces: Sequence[str] | None = None,
    promql_requests: int = 0,
) -> Report:
    """The report from the two windows' traffic, the migrated services and the resolved policies (pure)."""
    seconds = promql.duration_seconds(window)
    root = policies.mesh.namespace
    services = sorted(set(services))

    offenders: list[Caller] = []
    resolved: list[Caller] = []
    for key in sorted(set(current.plaintext) | set(previous.plaintext)):
        now, before = current.plaintext.get(key, 0.0), previous.plaintext.get(key, 0.0)
        caller = Caller(ServiceRef(key[0], key[1]), key[2], key[3], now, before if before > 0 else None)
        if now > 0:
            offenders.append(caller)
        elif before > 0:
            resolved.append(caller)
    offenders.sort(key=lambda c: (c.destination, -c.rate, c.name))
    resolved.sort(key=lambda c: (c.destination, -(c.previous_rate or 0.0), c.name))

    seen = {k[0] for k in (*current.requests, *previous.requests)} | {s.namespace for s in services}
    seen |= {ns for ns in policies.namespaces if ns != root}
    if namespaces:
        seen &= set(namespaces)
    rows = []
    for ns in seen:
        trend = _trend(current, previous, _in_namespace(ns), seconds)
        callers = tuple(c for c in offenders if c.destination.namespace == ns)
        policy = policies.of(ns)
        rows.append(NamespaceReport(ns, trend, policy, _verdict(policy.mode, trend.current, bool(callers)), callers))
    rows.sort(key=lambda r: _worst_first(r.coverage, r.namespace))

    service_rows = [ServiceReport(s, _trend(current, previous, _is_service(s), seconds)) for s in services]
    service_rows.sort(key=lambda r: _worst_first(r.coverage, r.service))
    return Report(
        at=at,
        window=window,
        seconds=seconds,
        mesh=_trend(current, previous, lambda k: True, seconds),
        mesh_policy=policies.mesh,
        namespaces=tuple(rows),
        services=tuple(service_rows),
        offenders=tuple(offenders),
        resolved=tuple(resolved),
        ignored_policies=policies.ignored,
        promql_requests=promql_requests,
    )


# ------------------------------------------------------------------------------------------- policies


# ---------------------------------------------------------------------------------------------- runs


# ------------------------------------------------------------------------------------------- command
