"""Real Prometheus servers over backfilled synthetic meshes, for integration tests."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from exporter.meshsim import REPORTERS, Phase, Service, demo_mesh, kube_service_manifests
from exporter.sandbox.kubeapi import FakeKubeAPI
from exporter.sandbox.prom import PrometheusNotInstalled, PrometheusServer, build_tsdb

DEMO_STEP = 30.0


def _require_prometheus() -> None:
    for binary in ("promtool", "prometheus"):
        if shutil.which(binary) is None:
            pytest.fail(str(PrometheusNotInstalled(binary)), pytrace=False)


def start_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    phases: Sequence[Phase],
    *,
    end: float,
    step: float,
    reporters: Sequence[str] = REPORTERS,
) -> PrometheusServer:
    """Backfill `phases` into a fresh TSDB and start a Prometheus on it; the caller stops it."""
    _require_prometheus()
    tsdb = tmp_path_factory.mktemp("prometheus") / "tsdb"
    build_tsdb(phases, tsdb, end=end, step=step, reporters=reporters)
    return PrometheusServer(tsdb).start()


class PrometheusFactory(Protocol):
    def __call__(
        self, phases: Sequence[Phase], *, end: float, step: float, reporters: Sequence[str] = ...
    ) -> PrometheusServer: ...


@pytest.fixture(scope="session")
def make_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    """`make_prometheus(phases, end=..., step=...)`: a started server, stopped at the end of the session."""
    servers: list[PrometheusServer] = []

    def make(
        phases: Sequence[Phase], *, end: float, step: float, reporters: Sequence[str] = REPORTERS
    ) -> PrometheusServer:
        server = start_prometheus(tmp_path_factory, phases, end=end, step=step, reporters=reporters)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@dataclass(frozen=True)
class DemoProm:
    url: str
    """http://127.0.0.1:PORT"""
    phases: tuple[Phase, ...]
    at: float
    """The evaluation instant: the end of the data (the `now` given to demo_mesh), on the step grid."""
    step: float
    """Seconds between samples."""

    @property
    def services(self) -> tuple[Service, ...]:
        """The services of the last phase (the one in force at `at`)."""
        return self.phases[-1].services


@pytest.fixture(scope="session")
def demo_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProm]:
    """A Prometheus serving exporter.meshsim.demo_mesh (both reporters), 40 minutes up to `at`."""
    at = math.floor(time.time() / DEMO_STEP) * DEMO_STEP
    phases = demo_mesh(at)
    server = start_prometheus(tmp_path_factory, phases, end=at, step=DEMO_STEP)
    try:
        yield DemoProm(url=server.url, phases=phases, at=at, step=DEMO_STEP)
    finally:
        server.stop()


@pytest.fixture
def demo_kube(demo_prom: DemoProm, tmp_path: Path) -> Iterator[tuple[FakeKubeAPI, Path]]:
    """A Kubernetes API serving the demo mesh's Services, and a kubeconfig for it."""
    with FakeKubeAPI() as api:
        for manifest in kube_service_manifests(demo_prom.services):
            api.add(manifest)
        yield api, api.write_kubeconfig(tmp_path / "kubeconfig")
