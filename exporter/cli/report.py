"""`exporter report mtls`: the weekly mTLS coverage report from the clients the settings describe.

Writes Markdown, JSON or HTML; with --submit, also the Datadog gauges and the summary event; with
--fail-on, exits EXIT_GATE (3) afterwards when a gate condition holds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.cli import clients
from exporter.cli.common import duration_flag, parse_time
from exporter.errors import ConfigError, ExporterError
from exporter.mtls import gate, render
from exporter.mtls.policy import Policy, PolicyError, resolve
from exporter.query import promql

if TYPE_CHECKING:  # the clients (Kubernetes, Prometheus, Datadog) load when the report runs (start-up time)
    from exporter.config import Settings
    from exporter.kube.client import KubeClient
    from exporter.mtls.model import Report
    from exporter.query.prometheus import PrometheusClient


def policies(kube: KubeClient) -> list[Policy]:
    from exporter.kube.policies import list_peer_authentications

    try:
        return [Policy.from_object(item) for item in list_peer_authentications(kube)]
    except PolicyError as e:
        raise ExporterError(str(e)) from None


def generate(
    settings: Settings,
    *,
    at: int,
    window: str,
    prom: PrometheusClient | None = None,
    kube: KubeClient | None = None,
) -> Report:
    """The report at `at` over `window`, from the clients the settings describe (or the ones given)."""
    from exporter.mtls.build import build_report, measure_traffic

    prom = prom or clients.prometheus(settings)
    kube = kube or clients.kubernetes(settings)
    services = clients.discovery(settings, kube).list_services()
    resolution = resolve(policies(kube), root_namespace=settings.istio_root_namespace)
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


def check_writable(out: str) -> None:
    """ConfigError (exit 2) unless `out` can be written: an existing writable file, or a new one in a
    writable directory."""
    path = Path(out)
    if path.is_dir():
        reason = "it is a directory"
    elif path.exists():
        reason = "" if os.access(path, os.W_OK) else "permission denied"
    elif not path.parent.is_dir():
        reason = f"no such directory {path.parent}"
    else:
        reason = "" if os.access(path.parent, os.W_OK) else "permission denied"
    if reason:
        raise ConfigError("--out", f"cannot write {out}: {reason}")


EXIT_GATE = 3
"""`--fail-on` held: the report was written (and submitted), and a condition the pipeline gates on is true."""


def cmd_mtls(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.mtls.publish import log_summary, points, submit
    from exporter.sink.datadog import global_tags

    if args.window:
        duration_flag("--window", args.window)
    try:
        conditions = gate.parse(args.fail_on) if args.fail_on else ()
    except ValueError as e:
        raise ConfigError("--fail-on", str(e)) from None
    window = args.window or settings.report_window
    if args.out:
        check_writable(args.out)  # before any query: a report nobody can keep is not worth computing
    sink = clients.datadog(settings) if args.submit else None  # a missing key fails before any query
    at = args.at if args.at is not None else int(time.time())
    report = generate(settings, at=at, window=window)
    text = render.RENDERERS[args.output](report)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise ConfigError("--out", f"cannot write {args.out}: {e.strerror}") from None
    else:
        sys.stdout.write(text)
    failed = gate.failures(report, conditions)
    log_summary(report, gate_failures=failed)
    errors = [] if sink is None else submit(report, sink, tags=global_tags(settings), prefix=settings.metric_prefix)
    if sink is not None and not errors:  # the errors were logged once each, where they happened (sink, publish)
        print(f"submitted {len(points(report))} gauges and 1 event to Datadog", file=sys.stderr)
    for line in failed:
        print(f"exporter: --fail-on {line}", file=sys.stderr)
    return 1 if errors else EXIT_GATE if failed else 0


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
    mtls.add_argument("--output", choices=sorted(render.RENDERERS), default="markdown")
    mtls.add_argument("--out", metavar="FILE", help="write the report to FILE instead of stdout")
    mtls.add_argument(
        "--submit",
        action="store_true",
        help="also send the coverage and plaintext-rate gauges and a summary event to Datadog",
    )
    mtls.add_argument(
        "--fail-on",
        metavar="CONDITIONS",
        help="comma-separated: strict-plaintext, coverage-drop[:POINTS], unverified; when one holds, exit "
        f"{EXIT_GATE} after writing (and submitting) the report",
    )
    mtls.set_defaults(func=cmd_mtls)
