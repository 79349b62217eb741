"""High availability: two exporter replicas (in-process `Daemon`s, each with its own `LeaseLeadership` and
its own skewed clock) against one local Kubernetes API storing the Lease with resourceVersion semantics, one
Datadog intake and a real Prometheus. A small discrete-event loop plays the part of each replica's scheduler:
leader-election steps at `next_wait()` and cycles at the replica's own interval boundaries, so every
timing below is exact and reproducible. Leadership is read from logs, /readyz and /metrics as a user would."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from exporter.cli import clients
from exporter.cli.run import leadership as from_settings
from exporter.config import Settings
from exporter.export.daemon import Daemon
from exporter.kube.client import KubeClient, api_client
from exporter.kube.lease import CLAIMED_INSTANT, LeaseLeadership
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from tests.support.procs import API_KEY
from tests.support.prom import DemoProm

LEASE = ("coordination.k8s.io/v1", "leases", "istio-system", "mesh-exporter")
INTERVAL = 10.0
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 3.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    name: str
    skew: float  # this replica's clock minus the true time
    clock: Clock
    leader: LeaseLeadership
    daemon: Daemon
    next_step: float  # true time
    next_cycle: float  # true time
    alive: bool = True
    statuses: list[tuple[float, str]] = field(default_factory=list)  # (true time, status) at each change


class Cluster:
    """Replicas driven by one loop in true time; each sees only its own (skewed) clock."""

    def __init__(self, demo_kube: FakeKubeAPI, kubeconfig: Path, settings: Settings, *, start: float) -> None:
        self.demo_kube, self.kubeconfig, self.settings, self.now = demo_kube, kubeconfig, settings, start
        self.replicas: dict[str, Replica] = {}

    def add(self, name: str, *, skew: float) -> Replica:
        clock = Clock(self.now + skew)
        leader = LeaseLeadership(
            KubeClient(api_client(str(self.kubeconfig))),
            name=self.settings.lease_name,
            namespace=self.settings.lease_namespace,
            identity=name,
            lease_duration=self.settings.lease_duration_seconds,
            renew_deadline=self.settings.renew_deadline_seconds,
            retry_period=self.settings.retry_period_seconds,
            clock=clock,
        )
        daemon = Daemon(
            self.settings,
            discovery=clients.discovery(self.settings),
            prom=clients.prometheus(self.settings),
            sink=clients.datadog(self.settings),
            clock=clock,
            leader=leader,
        )
        # like `Daemon.start()`: a first election step and a first cycle at once, then on their own periods
        replica = Replica(name, skew, clock, leader, daemon, next_step=self.now, next_cycle=self.now + 0.5)
        self.replicas[name] = replica
        return replica

    def _set(self, now: float) -> None:
        self.now = now
        for r in self.replicas.values():
            r.clock.now = now + r.skew
            status = r.leader.status() if r.alive else "dead"
            if not r.statuses or r.statuses[-1][1] != status:
                r.statuses.append((now, status))

    def run_until(self, end: float) -> None:
        while True:
            events = [(r.next_step, 0, r.name) for r in self.replicas.values() if r.alive]
            events += [(r.next_cycle, 1, r.name) for r in self.replicas.values() if r.alive]
            when, kind, name = min(events)
            if when > end:
                break
            self._set(when)
            r = self.replicas[name]
            if kind == 0:
                r.leader.step()
                r.next_step = when + r.leader.next_wait()
            else:
                r.daemon.cycle()
                own = r.clock.now
                r.next_cycle = when + (math.floor(own / INTERVAL) + 1) * INTERVAL + 0.5 - own
            self._set(when)
        self._set(end)

    def kill(self, name: str) -> None:
        """The process dies: no more steps or cycles, and the Lease is not released."""
        r = self.replicas[name]
        r.leader.stop(release=False)
        r.alive = False
        self._set(self.now)

    def became(self, name: str, status: str, *, after: float = -math.inf) -> float:
        return next(t for t, s in self.replicas[name].statuses if s == status and t >= after)


def submitted_instants(intake: FakeIntake) -> Counter[int]:
    """How many points each timestamp received."""
    return Counter(p.timestamp for p in intake.points())


def assert_no_point_twice(intake: FakeIntake) -> None:
    keys = Counter((p.metric, p.tags, p.timestamp) for p in intake.points())
    assert keys and max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:3]


def submitted_by(replica: Replica) -> float:
    """Points this replica submitted, from its own self-metrics."""
    value = replica.daemon.metrics.registry.get_sample_value("mesh_exporter_points_submitted_total")
    assert value is not None
    return value


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def cluster(demo_prom: DemoProm, demo_kube: tuple[FakeKubeAPI, Path], intake: FakeIntake) -> Iterator[Cluster]:
    settings = Settings(
        prometheus_url=demo_prom.url, datadog_url=intake.url, dd_api_key=API_KEY, kubeconfig=str(demo_kube[1]),
        interval_seconds=INTERVAL, http_port=0, leader_election=True, lease_duration_seconds=LEASE_DURATION,
        renew_deadline_seconds=RENEW_DEADLINE, retry_period_seconds=RETRY_PERIOD,
    )  # fmt: skip
    # true time starts 10 minutes before the end of the data: every window lies in the demo's last phase
    c = Cluster(demo_kube[0], demo_kube[1], settings, start=demo_prom.at - 600)
    yield c
    for r in c.replicas.values():
        r.daemon.stop()


def points_per_instant(demo_prom: DemoProm) -> int:
    """4 figures for each migrated service with traffic in the demo's last phase."""
    return 4 * sum(1 for s in demo_prom.services if s.migrated and any(c.rps for c in s.callers))


def lease(demo_kube: FakeKubeAPI) -> dict[str, Any]:
    obj = demo_kube.get(*LEASE)
    assert obj is not None
    return obj


def test_exactly_one_submits_and_a_killed_leader_hands_over_within_a_lease_duration(
    cluster: Cluster, intake: FakeIntake, demo_prom: DemoProm
) -> None:
    start = cluster.now
    with capture_logs() as logs:
        a = cluster.add("exporter-a", skew=0.0)
        b = cluster.add("exporter-b", skew=4.3)  # b's clock runs 4.3 s ahead
        cluster.run_until(start + 40)

        assert [s for _, s in a.statuses] == ["unknown", "leader"]
        assert [s for _, s in b.statuses] == ["unknown", "follower"]
        assert submitted_by(a) > 0 and submitted_by(b) == 0
        per_instant = points_per_instant(demo_prom)
        assert set(submitted_instants(intake).values()) == {per_instant}
        # one instant per interval: a's cycles at +0.5, +10.5, +20.5 and +30.5
        assert len(submitted_instants(intake)) == 4

        # What a user sees: /readyz and /metrics of both replicas
        ports = {r.name: r.daemon.serve_http(0) for r in (a, b)}
        ready_a = requests.get(f"http://127.0.0.1:{ports['exporter-a']}/readyz", timeout=5)
        ready_b = requests.get(f"http://127.0.0.1:{ports['exporter-b']}/readyz", timeout=5)
        assert (ready_a.status_code, ready_a.text) == (200, "ready (leader)\n")
        assert (ready_b.status_code, ready_b.text) == (200, "ready (follower)\n")
        metrics_b = requests.get(f"http://127.0.0.1:{ports['exporter-b']}/metrics", timeout=5).text
        assert 'mesh_exporter_leadership{status="follower"} 1.0' in metrics_b
        assert 'mesh_exporter_leadership{status="leader"} 0.0' in metrics_b

        # kill the leader right after one of its renewals, which b observes at once
        cluster.run_until(a.next_step)
        cluster.run_until(b.next_step)
        killed_at = cluster.now
        cluster.kill("exporter-a")
        cluster.run_until(killed_at + 40)

    took_over = cluster.became("exporter-b", "leader")
    assert killed_at < took_over <= killed_at + LEASE_DURATION
    assert submitted_by(b) > 0
    # no instant twice, each one complete, and only the instants due while nobody led are missing
    assert_no_point_twice(intake)
    assert set(submitted_instants(intake).values()) == {per_instant}
    instants = sorted(submitted_instants(intake))
    missing = sum(round((later - earlier) / INTERVAL) - 1 for earlier, later in itertools.pairwise(instants))
    assert 1 <= missing <= math.ceil(LEASE_DURATION / INTERVAL)
    acquired = [e for e in logs if e["event"] == "leadership acquired"]
    assert [e["identity"] for e in acquired] == ["exporter-a", "exporter-b"]
    assert acquired[1]["transitions"] == 1
    assert any(e["event"] == "taking over an expired Lease" and e["holder"] == "exporter-a" for e in logs)
    assert lease(cluster.demo_kube)["spec"]["holderIdentity"] == "exporter-b"
    claimed = int(lease(cluster.demo_kube)["metadata"]["annotations"][CLAIMED_INSTANT])
    assert claimed == max(submitted_instants(intake))

    # a graceful stop releases the Lease: holderIdentity is cleared
    b.daemon.stop()
    assert lease(cluster.demo_kube)["spec"]["holderIdentity"] == ""


def test_a_restarted_replica_never_resubmits_an_instant(
    cluster: Cluster, intake: FakeIntake, demo_prom: DemoProm
) -> None:
    """The leader dies right after submitting; its successor's clock is behind, so its instants repeat a's."""
    start = cluster.now
    a = cluster.add("exporter-a", skew=0.0)
    cluster.run_until(start + 30.6)  # a's cycles at 0.5, 10.5, 20.5, 30.5 submitted
    last_a = max(submitted_instants(intake))
    cluster.kill("exporter-a")
    b = cluster.add("exporter-b", skew=-25.0)  # b starts 25 s behind: its first instants are ones a did
    cluster.run_until(cluster.now + 60)
    assert cluster.became("exporter-b", "leader") <= start + 30.6 + LEASE_DURATION
    assert_no_point_twice(intake)
    instants = sorted(submitted_instants(intake))
    assert [t for t in instants if t > last_a], "b never submitted"
    assert min(t for t in instants if t > last_a) == last_a + INTERVAL  # nothing lost once b leads either
    assert submitted_by(b) > 0 and submitted_by(a) > 0


def test_stale_and_foreign_holders(cluster: Cluster, intake: FakeIntake, demo_prom: DemoProm) -> None:
    start = cluster.now
    future_instant = int(start // INTERVAL * INTERVAL + 40)
    # A Lease left by a replica that is long gone, which had claimed an instant 40 s ahead of ours
    cluster.demo_kube.add({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "mesh-exporter", "namespace": "istio-system",
                     "annotations": {CLAIMED_INSTANT: str(future_instant)}},
        "spec": {"holderIdentity": "exporter-old-5d8f", "leaseDurationSeconds": 15, "leaseTransitions": 4,
                 "renewTime": "2020-01-01T00:00:00.000000Z", "acquireTime": "2020-01-01T00:00:00.000000Z"},
    })  # fmt: skip
    a = cluster.add("exporter-a", skew=0.0)
    b = cluster.add("exporter-b", skew=-3.0)
    cluster.run_until(start + 14.9)
    # renewTime is years old, but expiry is measured from when we first saw the Lease: no takeover yet
    assert a.leader.status() == b.leader.status() == "follower"
    assert intake.points() == []
    cluster.run_until(start + 15.0)
    leaders = [r for r in (a, b) if r.leader.status() == "leader"]
    assert len(leaders) == 1
    assert lease(cluster.demo_kube)["spec"]["leaseTransitions"] == 5
    cluster.run_until(start + 70)
    assert_no_point_twice(intake)
    assert min(submitted_instants(intake)) == future_instant + INTERVAL  # the old claim is honoured

    # A foreign holder that keeps renewing (another tool, with its own 10 s lease duration)
    leaders[0].daemon.stop()  # releases
    foreign = lease(cluster.demo_kube)
    foreign["spec"].update(holderIdentity="someone-else", leaseDurationSeconds=10)
    for k in ("resourceVersion", "uid", "creationTimestamp"):
        foreign["metadata"].pop(k)
    leaders[0].alive = False
    others = [r for r in (a, b) if r is not leaders[0]]
    before = len(intake.points())
    t = cluster.now
    for renewal in range(8):  # renews every 5 s for 40 s
        foreign["spec"]["renewTime"] = f"2026-01-01T00:00:{renewal:02d}.000000Z"
        cluster.demo_kube.add(foreign)
        cluster.run_until(t + 5 * (renewal + 1))
    assert [r.leader.status() for r in others] == ["follower"]
    assert len(intake.points()) == before  # nobody submitted under a foreign holder
    last_foreign_renewal = t + 35
    cluster.run_until(t + 60)
    took_over = cluster.became(others[0].name, "leader", after=t)
    # its 10 s count from when the follower saw the last renewal, at its next step
    assert last_foreign_renewal + 10 <= took_over <= last_foreign_renewal + RETRY_PERIOD + 10
    assert len(intake.points()) > before
    assert_no_point_twice(intake)


def test_a_benign_write_to_the_lease_does_not_cost_a_cycle(cluster: Cluster, intake: FakeIntake) -> None:
    start = cluster.now
    cluster.add("exporter-a", skew=0.0)
    cluster.run_until(start + 10.2)  # the last election step was at +9; the next cycle comes at +10.5
    # someone annotates the Lease (kubectl annotate): the leader's cached resourceVersion is now stale
    obj = lease(cluster.demo_kube)
    obj["metadata"].setdefault("annotations", {})["team"] = "platform"
    cluster.demo_kube.add(obj)
    cluster.run_until(start + 10.6)
    assert len(submitted_instants(intake)) == 2
    conflicts = [r for r in cluster.demo_kube.requests if r.method == "PUT" and r.status == 409]
    assert len(conflicts) == 1
    assert lease(cluster.demo_kube)["metadata"]["annotations"]["team"] == "platform"


def test_a_leader_that_cannot_renew_stops_submitting_before_its_lease_can_expire(
    cluster: Cluster, intake: FakeIntake
) -> None:
    start = cluster.now
    with capture_logs() as logs:
        a = cluster.add("exporter-a", skew=0.0)
        b = cluster.add("exporter-b", skew=2.0)
        cluster.run_until(start + 30)
        cluster.run_until(a.next_step)  # a renews; b, stepping at the same instant, reads right after
        renewed = cluster.now
        assert a.next_step == b.next_step == renewed + RETRY_PERIOD
        cluster.demo_kube.set_unavailable(True)
        before = len(intake.points())
        cluster.run_until(renewed + RENEW_DEADLINE - 0.01)
        assert a.leader.status() == "leader"  # renewals failing, but still within the renew deadline
        cluster.run_until(renewed + RENEW_DEADLINE)
        # a has given up 5 s before b, who saw the last renewal at `renewed`, could take the Lease over
        assert a.leader.status() == "unknown" and not a.leader.may_submit(10**10)
        assert b.leader.status() == "unknown"  # b cannot read the Lease either: not "follower"
        cluster.run_until(renewed + 40)
    assert len(intake.points()) == before  # no cycle submitted during the outage
    lost = [e for e in logs if e["event"] == "leadership lost"]
    assert len(lost) == 1 and "renew deadline" in lost[0]["reason"]
    assert cluster.became("exporter-a", "unknown", after=start + 1) == renewed + RENEW_DEADLINE

    # the API comes back: one of them leads again and submissions resume, none twice
    cluster.demo_kube.set_unavailable(False)
    cluster.run_until(cluster.now + 40)
    assert sorted(r.leader.status() for r in (a, b)) == ["follower", "leader"]
    assert len(intake.points()) > before
    assert_no_point_twice(intake)


def test_background_campaign_in_real_time(demo_kube: tuple[FakeKubeAPI, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """start() campaigns in a thread on the real clock; a graceful stop hands over at the next retry."""
    api, kubeconfig = demo_kube
    settings = Settings(kubeconfig=str(kubeconfig), leader_election=True, lease_duration_seconds=2,
                        renew_deadline_seconds=1.5, retry_period_seconds=0.2)  # fmt: skip
    kube = KubeClient(api_client(str(kubeconfig)))
    assert from_settings(settings.model_copy(update={"leader_election": False}), kube) is None
    monkeypatch.setenv("POD_NAME", "exporter-7c9d-a")
    a = from_settings(settings, KubeClient(api_client(str(kubeconfig))))
    monkeypatch.setenv("POD_NAME", "exporter-7c9d-b")
    b = from_settings(settings, KubeClient(api_client(str(kubeconfig))))
    assert a is not None and b is not None and (a.identity, b.identity) == ("exporter-7c9d-a", "exporter-7c9d-b")
    try:
        a.start()  # the first step runs before start() returns
        assert a.status() == "leader"
        b.start()
        assert b.status() == "follower"
        time.sleep(1.0)  # several renewals: a keeps the Lease
        assert (a.status(), b.status()) == ("leader", "follower")
        stopped = time.monotonic()
        a.stop()
        while b.status() != "leader" and time.monotonic() - stopped < 5:
            time.sleep(0.02)
        assert b.status() == "leader"
        assert time.monotonic() - stopped < 2  # well within the 2 s lease duration: the Lease was released
        assert lease(api)["spec"]["holderIdentity"] == "exporter-7c9d-b"
    finally:
        a.stop()
        b.stop()
    assert lease(api)["spec"]["holderIdentity"] == ""


def test_lease_calls_set_the_kubernetes_gauge(cluster: Cluster) -> None:
    """mesh_exporter_upstream_up{upstream="kubernetes"} follows the Lease's calls too, not only discovery's:
    a replica whose Lease cannot be renewed shows 0 even when no discovery ran since."""
    a = cluster.add("exporter-a", skew=0.0)
    gauge = lambda: a.daemon.metrics.registry.get_sample_value(  # noqa: E731
        "mesh_exporter_upstream_up", {"upstream": "kubernetes"}
    )
    assert gauge() is None  # absent before the first call
    a.leader.step()  # creates the Lease: the API worked
    assert gauge() == 1 and a.leader.status() == "leader"
    cluster.demo_kube.fail_next(1, 503, path_prefix="/apis/coordination.k8s.io")
    a.leader.step()  # one read per step: it fails
    assert gauge() == 0
    a.leader.step()  # and the next one renews
    assert gauge() == 1
