"""Two real `exporter run` processes with EXPORTER_LEADER_ELECTION on, as the Deployment runs them:
one leads and submits, the other stays ready as a follower; SIGKILL the leader and the follower
takes over within a lease duration (plus a retry period), with no point submitted twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests

from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from tests.support.procs import API_KEY, exporter_env, free_port, wait_for
from tests.support.prom import DemoProm

LEASE = 3.0


def readyz(port: int) -> str:
    try:
        r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
    except requests.ConnectionError:
        return "down"
    return f"{r.status_code} {r.text.strip()}"


def test_one_leader_submits_and_a_killed_leader_is_replaced(
    demo_prom: DemoProm, demo_kube: tuple[FakeKubeAPI, Path]
) -> None:
    api, kubeconfig = demo_kube
    with FakeIntake(api_key=API_KEY) as intake:
        procs: dict[str, tuple[subprocess.Popen[str], int]] = {}
        for pod in ("exporter-a", "exporter-b"):
            port = free_port()
            env = exporter_env(
                demo_prom, kubeconfig, intake,
                EXPORTER_LEADER_ELECTION="true", POD_NAME=pod, EXPORTER_LEASE_NAMESPACE="istio-system",
                EXPORTER_LEASE_DURATION_SECONDS=str(LEASE), EXPORTER_RENEW_DEADLINE_SECONDS="2",
                EXPORTER_RETRY_PERIOD_SECONDS="0.5", EXPORTER_INTERVAL_SECONDS="1", EXPORTER_HTTP_PORT=str(port),
            )  # fmt: skip
            proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "run"], env=env, stderr=subprocess.DEVNULL, text=True
            )
            procs[pod] = (proc, port)
        try:
            roles = {}

            def settled() -> bool:
                roles.update({pod: readyz(port) for pod, (_, port) in procs.items()})
                return sorted(roles.values()) == ["200 ready (follower)", "200 ready (leader)"]

            wait_for(settled, "one leader and one ready follower", timeout=60)
            leader = next(pod for pod, role in roles.items() if "leader" in role)
            follower = next(pod for pod in procs if pod != leader)
            metrics = requests.get(f"http://127.0.0.1:{procs[follower][1]}/metrics", timeout=5).text
            assert 'mesh_exporter_leadership{status="follower"} 1.0' in metrics
            wait_for(lambda: len(intake.points()) > 0, "the leader's first points", timeout=30)
            lease = api.get("coordination.k8s.io/v1", "leases", "istio-system", "mesh-exporter")
            assert lease is not None and lease["spec"]["holderIdentity"] == leader

            procs[leader][0].send_signal(signal.SIGKILL)  # no release: the follower must wait out the lease
            killed_at = time.monotonic()
            wait_for(lambda: readyz(procs[follower][1]) == "200 ready (leader)", "the takeover", timeout=30)
            took = time.monotonic() - killed_at
            before = len(intake.requests)
            wait_for(lambda: len(intake.requests) > before, "the new leader's points", timeout=30)
        finally:
            for proc, _ in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, _ in procs.values():
                proc.wait(timeout=30)
        assert took <= LEASE + 0.5 + 1.0  # lease duration + retry period + polling slack
        counts = Counter((p.metric, p.tags, p.timestamp) for p in intake.points())
        assert max(counts.values()) == 1  # no instant submitted by both replicas
        assert procs[follower][0].returncode == 0
