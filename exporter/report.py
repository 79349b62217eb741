"""The mTLS coverage report (`exporter report mtls`): coverage over a window, plaintext callers, policy verdicts.

Coverage is 100 × mutual-TLS requests / all requests as the destination's proxy reports them,
weighted by requests over the window, for the mesh, per namespace (`destination_service_namespace`)
and per migrated service; the previous window (PromQL `offset`) gives the trend. Four grouped
PromQL requests per report, however large the mesh: all requests and plaintext requests (by
destination and caller), for this window and the previous one. The PeerAuthentication objects are
resolved by exporter.peerauth, and each namespace gets a verdict on moving to STRICT. Rendering
lives in exporter.report_render.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s

from exporter import clients, promql, report_render
from exporter.cli import parse_time
from exporter.datadog import DatadogSink, Point
from exporter.discovery import kube_error
from exporter.errors import ConfigError, ExporterError, KubeError, QueryError, SubmitError
from exporter.model import ServiceRef
from exporter.peerauth import Mode, NamespaceMode, Policy, PolicyError, Resolution, resolve
from exporter.prometheus import PrometheusClient, vector_by
from exporter.retry import RetryPolicy, call
from exporter.settings import Settings

log = structlog.get_logger("exporter.report")

CALLER_LABELS: tuple[str, ...] = ("source_workload", "source_workload_namespace")
OUTSIDE = "unknown"  # source_workload of traffic from outside the mesh (no sidecar, no identity)
MESH_METRIC = "istio.mesh.mtls_coverage_pct"
PA_GROUP, PA_VERSIONS, PA_PLURAL = "security.istio.io", ("v1", "v1beta1"), "peerauthentications"


class Verdict(StrEnum):
    """What a namespace's policy and observed traffic say about moving it to STRICT."""

    READY = "ready for STRICT"
    BLOCKED = "blocked"
    STRICT_CLEAN = "STRICT and clean"
    STRICT_PLAINTEXT = "STRICT but plaintext observed"
    DISABLED = "mTLS disabled"
    NO_TRAFFIC = "no traffic"


# --------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Coverage:
    """Requests over a window (> 0) and how many were plaintext."""

    rate: float
    """All requests per second, averaged over the window."""
    plaintext_rate: float
    seconds: float

    @property
    def requests(self) -> float:
        return self.rate * self.seconds  # increase() == rate() × window in PromQL

    @property
    def plaintext(self) -> float:
        return self.plaintext_rate * self.seconds

    @property
    def pct(self) -> float:
        if self.plaintext_rate <= 0:
            return 100.0  # exactly: no plaintext series had a request
        return max(0.0, min(100.0, 100.0 * (self.rate - self.plaintext_rate) / self.rate))


@dataclass(frozen=True)
class Trend:
    """Coverage in this window and in the previous one (None: no requests)."""

    current: Coverage | None
    previous: Coverage | None

    @property
    def change(self) -> float | None:
        """Percentage points gained since the previous window."""
        if self.current is None or self.previous is None:
            return None
        return self.current.pct - self.previous.pct


@dataclass(frozen=True)
class Caller:
    """A source workload sending plaintext to a destination service."""

    destination: ServiceRef
    workload: str
    namespace: str
    rate: float
    """Plaintext requests per second in this window (0 when it stopped)."""
    previous_rate: float | None
    """The same in the previous window; None when it sent no plaintext then."""

    @property
    def outside_mesh(self) -> bool:
        return self.workload == OUTSIDE

    @property
    def name(self) -> str:
        return "outside the mesh (unknown)" if self.outside_mesh else f"{self.namespace}/{self.workload}"


@dataclass(frozen=True)
class NamespaceReport:
    namespace: str
    coverage: Trend
    policy: NamespaceMode
    verdict: Verdict
    callers: tuple[Caller, ...]
    """Plaintext callers of this namespace's services in this window."""


@dataclass(frozen=True)
class ServiceReport:
    service: ServiceRef
    coverage: Trend


@dataclass(frozen=True)
class Report:
    at: int
    """Evaluation instant (unix seconds): the end of the window."""
    window: str
    seconds: float
    mesh: Trend
    mesh_policy: NamespaceMode
    namespaces: tuple[NamespaceReport, ...]
    """Worst coverage first; namespaces without traffic last."""
    services: tuple[ServiceReport, ...]
    """Migrated services, worst coverage first, then by volume; without traffic last."""
    offenders: tuple[Caller, ...]
    """Plaintext callers now, by destination, biggest first."""
    resolved: tuple[Caller, ...]
    """Callers that sent plaintext in the previous window and none in this one."""
    ignored_policies: tuple[str, ...] = ()
    promql_requests: int = 0

    def count(self, verdict: Verdict) -> int:
        return sum(1 for ns in self.namespaces if ns.verdict is verdict)


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
def list_policies(
    api: k8s.ApiClient, *, retry: RetryPolicy | None = None, page_size: int = 500, timeout: float = 15.0
) -> list[Policy]:
    """Every PeerAuthentication in the cluster (security.istio.io v1, or v1beta1 on Istio before 1.22)."""
    custom = k8s.CustomObjectsApi(api)
    policy = retry or RetryPolicy()

    def page(version: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"limit": page_size, "_request_timeout": timeout, "_preload_content": False}
        if token:
            kwargs["_continue"] = token
        what = f"list {PA_PLURAL}.{PA_GROUP}/{version} in all namespaces"
        try:
            response: Any = custom.list_cluster_custom_object(PA_GROUP, version, PA_PLURAL, **kwargs)
            return dict(json.loads(response.data))
        except (k8s.ApiException, urllib3.exceptions.HTTPError) as e:
            raise kube_error(what, e) from None
        except ValueError as e:
            raise KubeError(f"{what}: malformed answer: {e}") from None

    for version in PA_VERSIONS:
        items: list[dict[str, Any]] = []
        token: str | None = None
        try:
            while True:
                answer = call(partial(page, version, token), what=f"list {PA_PLURAL}", policy=policy)
                items += answer.get("items") or []
                token = (answer.get("metadata") or {}).get("continue") or None
                if not token:
                    break
        except KubeError as e:
            if e.status == 404 and version != PA_VERSIONS[-1]:
                continue  # this Istio does not serve the version: try the older one
            raise
        try:
            return [Policy.from_object(item) for item in items]
        except PolicyError as e:
            raise ExporterError(str(e)) from None
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------------------------- runs
def generate(
    settings: Settings,
    *,
    at: int,
    window: str,
    prom: PrometheusClient | None = None,
    api: k8s.ApiClient | None = None,
) -> Report:
    """The report at `at` over `window`, from the clients the settings describe (or the ones given)."""
    prom = prom or clients.prometheus(settings)
    api = api or clients.kubernetes(settings)
    services = clients.discovery(settings, api).list_services()
    resolution = resolve(list_policies(api), root_namespace=settings.istio_root_namespace)
    matchers = [promql.one_of("destination_service_namespace", settings.namespaces)] if settings.namespaces else []
    before = prom.requests_made
    current, previous = measure_traffic(prom, at=at, window=window, matchers=matchers)
    return build_report(
        current,
        previous,
        services=services,
        policies=resolution,
        at=at,
        window=window,
        namespaces=settings.namespaces,
        promql_requests=prom.requests_made - before,
    )


def points(report: Report, *, tags: Sequence[str] = ()) -> list[Point]:
    """istio.mesh.mtls_coverage_pct for the mesh and per namespace with traffic, at the evaluation instant."""
    out = []
    if report.mesh.current is not None:
        out.append(Point(MESH_METRIC, report.mesh.current.pct, report.at, tuple(tags)))
    for ns in sorted(report.namespaces, key=lambda n: n.namespace):
        if ns.coverage.current is not None:
            out.append(
                Point(MESH_METRIC, ns.coverage.current.pct, report.at, (f"kube_namespace:{ns.namespace}", *tags))
            )
    return out


def submit(report: Report, sink: DatadogSink, *, tags: Sequence[str] = ()) -> list[SubmitError]:
    """Send the gauges and the summary event; what failed after retries is returned, not raised."""
    errors = list(sink.submit(points(report, tags=tags)).errors)
    title, text = report_render.summary(report)
    alert = "warning" if report.count(Verdict.STRICT_PLAINTEXT) else "info"
    try:
        sink.event(title=title, text=text, tags=[*tags, "report:mtls-coverage"], alert_type=alert)
    except SubmitError as e:
        log.error("datadog event failed", error=str(e), status=e.status)
        errors.append(e)
    return errors


def _log_summary(report: Report, **extra: Any) -> None:
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


def weekly_job(settings: Settings, *, clock: Callable[[], float] = time.time) -> Callable[[], None]:
    """The daemon's weekly job: the report over EXPORTER_REPORT_WINDOW ending now, sent to Datadog.

    The sink is built now, so a missing DD_API_KEY fails at start; the job itself never raises (a
    failure is logged with its cause, and the next week runs again).
    """
    sink = clients.datadog(settings)

    def job() -> None:
        at = int(clock())
        try:
            report = generate(settings, at=at, window=settings.report_window)
            errors = submit(report, sink, tags=settings.tags)
        except ExporterError as e:
            log.error("mtls report failed", evaluated_at=at, error=str(e))
            return
        except Exception as e:  # a bug must not kill the scheduler thread; logged with its traceback
            log.exception("mtls report crashed", evaluated_at=at, error=str(e))
            return
        _log_summary(report, submit_errors=[str(e) for e in errors])

    return job


# ------------------------------------------------------------------------------------------- command
def _window(text: str) -> str:
    try:
        seconds = promql.duration_seconds(text)
    except ValueError as e:
        raise ConfigError("--window", str(e)) from None
    if seconds <= 0:
        raise ConfigError("--window", f"must be longer than 0, got {text!r}")
    return text


def cmd_mtls(args: argparse.Namespace, settings: Settings) -> int:
    window = _window(args.window) if args.window else settings.report_window
    sink = clients.datadog(settings) if args.submit else None  # a missing key fails before any query
    at = args.at if args.at is not None else int(time.time())
    report = generate(settings, at=at, window=window)
    text = report_render.RENDERERS[args.output](report)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise ConfigError("--out", f"cannot write {args.out}: {e.strerror}") from None
    else:
        sys.stdout.write(text)
    _log_summary(report)
    if sink is None:
        return 0
    errors = submit(report, sink, tags=settings.tags)
    for error in errors:
        print(f"exporter: submission failed: {error}", file=sys.stderr)
    if not errors:
        print(f"submitted {len(points(report))} gauges and 1 event to Datadog", file=sys.stderr)
    return 1 if errors else 0


def register(subparsers: Any) -> None:
    """Add `report mtls` to the CLI."""
    report = subparsers.add_parser("report", help="reports; `report mtls`: the weekly mTLS coverage report")
    kinds = report.add_subparsers(dest="report", metavar="REPORT", required=True)
    mtls = kinds.add_parser(
        "mtls",
        help="mTLS coverage over a window: plaintext callers, policy per namespace, readiness for STRICT",
        description="mTLS coverage (100 × mutual-TLS requests / all, destination-reported, weighted by requests) "
        "for the mesh, each namespace and each migrated service over --window ending at --at, compared with "
        "the previous window; every caller still sending plaintext; the PeerAuthentication mode of each "
        "namespace and a verdict on moving it to STRICT.",
    )
    mtls.add_argument(
        "--window", metavar="DURATION", help="PromQL duration of the window (default EXPORTER_REPORT_WINDOW: 7d)"
    )
    mtls.add_argument("--at", type=parse_time, metavar="TIME", help="end of the window: RFC 3339 or unix seconds")
    mtls.add_argument("--output", choices=sorted(report_render.RENDERERS), default="markdown")
    mtls.add_argument("--out", metavar="FILE", help="write the report to FILE instead of stdout")
    mtls.add_argument(
        "--submit", action="store_true", help=f"also send {MESH_METRIC} gauges and a summary event to Datadog"
    )
    mtls.set_defaults(func=cmd_mtls)
