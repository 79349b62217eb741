"""The fault suite's mesh and daemon, shared with the memory probe that runs in a fresh process."""

from __future__ import annotations

import time
from pathlib import Path

from exporter.config import Settings
from exporter.export.daemon import Daemon
from exporter.kube.client import KubeClient, api_client
from exporter.kube.discovery import KubeDiscovery
from exporter.query.prometheus import PrometheusClient
from exporter.retry import RetryPolicy
from exporter.sink.backlog import Backlog, Spool
from exporter.sink.datadog import DatadogAPI, DatadogSink
from sandbox.meshsim import LATENCY_FAST, LATENCY_SLOW, Caller, Service, Version

KEY = "dd-fault-suite-key-0123456789"
STEP = 30


T0 = int(time.time()) // STEP * STEP


SERVICES = (
    Service("shop", "cart", (Caller("web", "frontend", 20.0),), (Version(error_rate=0.02),)),
    Service("shop", "api", (Caller("web", "frontend", 8.0, mtls_share=0.5),), (Version(latency=LATENCY_FAST),)),
    Service("pay", "api", (Caller("checkout", "shop", 4.0),), (Version(error_rate=0.1, latency=LATENCY_SLOW),)),
    Service("legacy", "gw", (Caller("unknown", "unknown", 2.0, mtls_share=0.0),), (Version(),)),
)


PER_INSTANT = 4 * len(SERVICES)


def make_daemon(
    url: str, intake_url: str, kubeconfig: Path, *, spool: Path | None = None, sink: DatadogSink | None = None
) -> Daemon:
    settings = Settings(
        prometheus_url=url, datadog_url=intake_url, dd_api_key=KEY, kubeconfig=str(kubeconfig), http_port=0
    )
    return Daemon(
        settings,
        discovery=KubeDiscovery(KubeClient(api_client(str(kubeconfig))), label_selector="migrated=true"),
        prom=PrometheusClient(url, timeout=1.0, retry=RetryPolicy(attempts=2, base_wait=0.01)),
        sink=sink
        or DatadogSink(
            DatadogAPI(intake_url, api_key=KEY, timeout=2.0), retry=RetryPolicy(attempts=3, base_wait=0.01, max_wait=2)
        ),
        backlog=Backlog(spool=Spool(spool) if spool else None),
    )
