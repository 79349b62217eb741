"""`exporter run`: the daemon, built from the settings (clients, Lease campaign, backlog and spool)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.cli import clients

if TYPE_CHECKING:
    from exporter.config import Settings
    from exporter.kube import lease
    from exporter.kube.client import KubeClient


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


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.export.daemon import Daemon  # the scheduler and HTTP server load only for the daemon
    from exporter.sink.backlog import Backlog, Spool

    spool = Spool(Path(settings.spool_dir)) if settings.spool_dir else None
    api = clients.kubernetes(settings)
    daemon = Daemon(
        settings,
        discovery=clients.discovery(settings, api),
        leader=leadership(settings, api),
        prom=clients.prometheus(settings),
        sink=clients.datadog(settings),
        backlog=Backlog(max_points=settings.backlog_max_points, spool=spool),
    )
    return daemon.run()


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="the daemon: a cycle every interval, /healthz /readyz /metrics")
    run.set_defaults(func=cmd_run)
