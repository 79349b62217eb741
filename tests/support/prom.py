"""Real Prometheus servers over backfilled synthetic meshes (the fixtures in tests/conftest.py use these)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pytest

from sandbox.meshsim import REPORTERS, Phase, Service
from sandbox.prom import PrometheusNotInstalled, PrometheusServer, build_tsdb

DEMO_STEP = 30.0
DEMO_AHEAD = 1800.0  # longer than a whole test session on a loaded machine


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
