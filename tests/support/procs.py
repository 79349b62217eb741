"""Running the exporter as a process: its environment, a free port, waiting for a condition."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.intake import FakeIntake
from tests.support.prom import DemoProm

API_KEY = "dd-api-key-for-tests-0123456789"


def exporter_env(demo_prom: DemoProm, kubeconfig: Path, intake: FakeIntake, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    env.update(
        EXPORTER_PROMETHEUS_URL=demo_prom.url,
        EXPORTER_DATADOG_URL=intake.url,
        DD_API_KEY=API_KEY,
        KUBECONFIG=str(kubeconfig),
        EXPORTER_TAGS="env:test,kube_cluster_name:local",
    )
    return env | extra


def run_exporter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], env=env, capture_output=True, text=True, timeout=120
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
