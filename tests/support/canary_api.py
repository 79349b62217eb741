"""The canary analysis endpoints served as `exporter run` serves them (cli.run.canary_routes on the daemon's
HTTP server), a CLI runner for `exporter canary analyze`, and a Prometheus over the canary meshes whose
data reaches into the future, so that the endpoints' "now" always has a full window of traffic."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.cli.run import canary_routes
from exporter.config import Settings
from exporter.export.health import HealthServer
from sandbox.meshsim import Phase, Service
from tests.support.canary_mesh import equal, flagger, fresh, sparse, worse
from tests.support.prom import PrometheusFactory

STEP = 30.0
WORSE, EQUAL, SPARSE = worse("reviews"), equal("ratings"), sparse("details")
FLAGGER_PAIRS = {"podinfo": equal("podinfo"), "bad": worse("bad"), "thin": sparse("thin")}
"""Flagger canaries by name: podinfo passes, bad fails, thin is inconclusive."""


FRESH_BEFORE, FRESH = fresh("cart")
FRESH_AGE = 300.0
"""A healthy canary of cart started this long before the Prometheus was built (see canary_prometheus)."""


def canary_services() -> tuple[Service, ...]:
    halves = [half for pair in FLAGGER_PAIRS.values() for half in flagger(pair)]
    return (WORSE, EQUAL, SPARSE, *halves)


@dataclass(frozen=True)
class CanaryProm:
    url: str
    start: float
    end: float
    fresh_start: float
    """When cart's canary started (FRESH_AGE before the Prometheus was built)."""


def canary_prometheus(make_prometheus: PrometheusFactory, *, past: float = 1800, future: float = 1800) -> CanaryProm:
    """The canary meshes from `past` seconds ago to `future` seconds ahead (on the step grid), and cart, whose
    canary starts FRESH_AGE seconds before now."""
    now = math.floor(time.time() / STEP) * STEP
    phases = (Phase(now - past, (*canary_services(), FRESH_BEFORE)),
              Phase(now - FRESH_AGE, (*canary_services(), FRESH)))  # fmt: skip
    server = make_prometheus(phases, end=now + future, step=STEP)
    return CanaryProm(server.url, now - past, now + future, now - FRESH_AGE)


@contextmanager
def serve(**settings: Any) -> Iterator[tuple[str, CollectorRegistry]]:
    """The endpoints on a loopback HTTP server built exactly as `exporter run` builds them; (base URL, registry)."""
    registry = CollectorRegistry()
    server = HealthServer(
        ready=lambda: (True, "ready\n"),
        registry=registry,
        routes=canary_routes(Settings(canary_api_enabled=True, **settings), registry),
    )
    port = server.start(0)
    try:
        yield f"http://127.0.0.1:{port}", registry
    finally:
        server.stop()


def analyze_cli(url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """`exporter canary analyze ARGS` against `url`: (exit code, JSON document if asked for, stdout+stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
    env["EXPORTER_PROMETHEUS_URL"] = url
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "canary", "analyze", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(proc.stdout) if "--output" in args and proc.stdout else {}
    return proc.returncode, doc, proc.stdout + proc.stderr
