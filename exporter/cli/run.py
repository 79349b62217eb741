"""`exporter run`: the daemon, built from the settings (clients, Lease campaign, backlog and spool)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.cli import clients
from exporter.errors import ConfigError, QueryError

if TYPE_CHECKING:
    from exporter.config import Settings
    from exporter.kube import lease
    from exporter.kube.client import KubeClient

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from exporter.export.health import Route


def leadership(settings: Settings, kube: KubeClient) -> lease.LeaseLeadership | None:
    """The replica's campaign per the settings; None when EXPORTER_LEADER_ELECTION is off."""
    if not settings.leader_election:
        return None
    from exporter.kube import lease

    return lease.LeaseLeadership(
        kube,
        name=settings.lease_name,
        namespace=settings.lease_namespace,
        identity=lease.identity(),
        lease_duration=settings.lease_duration_seconds,
        renew_deadline=settings.renew_deadline_seconds,
        retry_period=settings.retry_period_seconds,
    )


def canary_routes(
    settings: Settings, registry: CollectorRegistry, stopping: threading.Event | None = None
) -> dict[str, Route]:
    """The canary analysis endpoints per the settings (none unless EXPORTER_CANARY_API_ENABLED), on their
    own Prometheus client and bounded pool. Once `stopping` is set, retry waits end at once, so an analysis
    caught in an outage never holds the process's exit for more than one query timeout."""
    if not settings.canary_api_enabled:
        return {}
    from exporter.canary.service import CanaryService
    from exporter.export.canary_api import GuardedEndpoints

    # Each analysis runs its queries 4 at a time, so the pool grows with the admitted analyses (up to the 10
    # connections requests keeps per host) and they do not queue behind each other's queries.
    prom = clients.prometheus(settings, parallel=min(10, 4 * settings.canary_api_concurrency))
    if stopping is not None:

        def sleep(seconds: float) -> None:
            if stopping.wait(seconds):
                raise QueryError("shutting down", query="-")

        prom.retry = replace(prom.retry, sleep=sleep)
    service = CanaryService(prom, step=settings.canary_api_step_seconds)
    token = settings.canary_api_token.get_secret_value() if settings.canary_api_token else None
    guarded = GuardedEndpoints(
        service.endpoints(),
        registry=registry,
        workers=settings.canary_api_concurrency,
        deadline=settings.canary_api_deadline_seconds,
        token=token or None,
    )
    return guarded.routes()


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.export.daemon import Daemon  # the scheduler and HTTP server load only for the daemon
    from exporter.sink.backlog import Backlog, Spool

    spool = Spool(Path(settings.spool_dir)) if settings.spool_dir else None
    if spool is not None:
        try:
            spool.check()  # at start, not at the first outage: a spool that cannot be written keeps nothing
        except OSError as e:
            raise ConfigError("EXPORTER_SPOOL_DIR", f"cannot write there: {e.strerror}") from None
    api = clients.kubernetes(settings)
    daemon = Daemon(
        settings,
        discovery=clients.discovery(settings, api),
        leader=leadership(settings, api),
        prom=clients.prometheus(settings),
        sink=clients.datadog(settings),
        backlog=Backlog(max_points=settings.backlog_max_points, spool=spool),
    )
    daemon.routes.update(canary_routes(settings, daemon.metrics.registry, daemon.stop_event))
    code = daemon.run()
    # stop() has flushed or spooled the backlog within its deadlines; a worker thread still stuck in a
    # request that never answers (a hung Kubernetes API or Prometheus) must not hold the exit: the
    # interpreter would join the scheduler's pool threads, so the process ends here without them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="the daemon: a cycle every interval, /healthz /readyz /metrics")
    run.set_defaults(func=cmd_run)
