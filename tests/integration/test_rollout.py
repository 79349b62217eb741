"""`exporter rollout` against the local Kubernetes API (real `kubernetes` client) and a real Prometheus.

The rollout's clock and wait are injected (a fake clock that jumps by the step interval, inside the
Prometheus data), so the real code runs every step, analysis and patch without sleeping. Every test
asserts on the objects the API holds (at the end, and at every wait), never on what the code meant to send.
SIGTERM is sent to a real `python -m exporter rollout` subprocess.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from kubernetes import client

from exporter.cli.rollout import analyzer_for
from exporter.config import Settings
from exporter.errors import QueryError
from exporter.kube.client import KubeClient, api_client
from exporter.kube.istio import Kube
from exporter.model import ServiceRef
from exporter.retry import RetryPolicy
from exporter.rollout.engine import ANALYSIS, LEFT, PROMOTED, ROLLED_BACK, SIGNAL, Rollout
from exporter.rollout.plan import Plan, RolloutError
from exporter.sink.datadog import DatadogAPI, DatadogSink
from sandbox.intake import FakeIntake, Reply
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import Phase, Service
from sandbox.proxy import Fault, FaultProxy
from tests.support.canary_mesh import (
    CANARY_REPLICAS,
    HEADER,
    NEW_IMAGE,
    OLD_IMAGE,
    STABLE_REPLICAS,
    destination_rule,
    equal,
    hpa,
    istiod,
    requests_for,
    rerouted,
    rollout_objects,
    shared_virtual_service,
    sparse,
    worse,
)
from tests.support.prom import PrometheusFactory

STEP = 30.0
INTERVAL = 300.0
DD_KEY = "dd-api-key-rollout-tests-0123456789"
PLANTED = "pl4nted-pa55w0rd"
"""A password planted in the Prometheus URL: it must never reach an Event, a log line or the summary."""


@dataclass(frozen=True)
class Data:
    url: str
    t0: float
    """Start of the data; it runs 60 minutes."""


def phased(name: str) -> tuple[Service, Service]:
    """Too little traffic for the first 15 minutes, then plenty: a step holds, then advances."""
    return sparse(name, rps=2.0), equal(name)


@pytest.fixture(scope="module")
def data(make_prometheus: PrometheusFactory) -> Data:
    end = math.floor(time.time() / STEP) * STEP
    t0 = end - 3600
    early, late = phased("stock")
    common = (equal("reviews"), worse("ratings"), sparse("details"), equal("cart"), equal("orders"))
    phases = (Phase(t0, (*common, early)), Phase(t0 + 900, (*common, late)))
    server = make_prometheus(phases, end=end, step=STEP, reporters=("destination",))
    return Data(server.url, t0)


class DeploymentController:
    """Plays kube-controller-manager's part: an HPA keeps its Deployment's replicas within [min, max]; a
    Deployment whose spec changed is reported rolled out, through the status subresource with a
    resourceVersion guard (so it races with the rollout as the real one does)."""

    def __init__(self, server: FakeKubeAPI, kubeconfig: Path) -> None:
        self.server = server
        self.apps = client.AppsV1Api(api_client(str(kubeconfig)))
        self.stuck: set[str] = set()

    def sync(self) -> None:
        for scaler in self.server.objects("autoscaling/v2", "horizontalpodautoscalers"):
            spec, ns = scaler["spec"], scaler["metadata"]["namespace"]
            target = self.server.get("apps/v1", "deployments", ns, spec["scaleTargetRef"]["name"])
            assert target is not None
            have = target["spec"]["replicas"]
            want = min(max(have, spec.get("minReplicas", 1)), spec["maxReplicas"])
            if want != have:
                self.apps.patch_namespaced_deployment(target["metadata"]["name"], ns, {"spec": {"replicas": want}})
        for obj in self.server.objects("apps/v1", "deployments"):
            meta = obj["metadata"]
            if meta["name"] in self.stuck or (obj.get("status") or {}).get("observedGeneration") == meta["generation"]:
                continue
            n = obj["spec"].get("replicas", 1)
            counts = {"replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}
            body = {"metadata": {"resourceVersion": meta["resourceVersion"]},
                    "status": {"observedGeneration": meta["generation"], **counts}}  # fmt: skip
            try:
                self.apps.patch_namespaced_deployment_status(meta["name"], meta["namespace"], body)
            except client.ApiException as e:
                if e.status != 409:  # 409: changed meanwhile, seen on the next sync
                    raise


@dataclass
class Cluster:
    server: FakeKubeAPI
    kubeconfig: Path
    controller: DeploymentController


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Cluster]:
    with FakeKubeAPI() as server:
        server.add(istiod("1.24.2"))
        for name in ("reviews", "ratings", "details", "cart", "orders", "stock"):
            for obj in rollout_objects(name):
                server.add(obj)
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        controller = DeploymentController(server, kubeconfig)
        controller.sync()  # every Deployment starts rolled out
        yield Cluster(server, kubeconfig, controller)


@dataclass
class FakeClock:
    """Unix time that jumps by each wait. Step waits (a minute or more) are counted: `hooks[n]` runs during the
    n-th, `stop_at` simulates SIGTERM in it. Shorter waits (readiness polls) let the controller sync."""

    now: float
    hooks: dict[int, Callable[[], None]] = field(default_factory=dict)
    stop_at: int | None = None
    stop_at_poll: int | None = None
    controller: DeploymentController | None = None
    observe: Callable[[], None] | None = None
    """Called at every wait and poll, before the controller syncs."""
    waits: int = 0
    polls: int = 0
    stop: bool = False

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        if self.observe is not None:
            self.observe()
        if seconds < 60:
            self.polls += 1
            if self.controller is not None:
                self.controller.sync()
            self.stop = self.stop or self.polls == self.stop_at_poll
            return self.stop
        self.waits += 1
        if self.waits in self.hooks:
            self.hooks[self.waits]()
        if self.stop_at == self.waits:
            self.stop = True
        return self.stop

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.observe is not None:
            self.observe()
        self.polls += 1
        if self.controller is not None:
            self.controller.sync()

    def stopped(self) -> bool:
        return self.stop

    def stop_reason(self) -> str:
        return "SIGTERM" if self.stop else ""


def vs(api: FakeKubeAPI, name: str) -> dict[str, Any]:
    obj = api.get("networking.istio.io/v1", "virtualservices", "shop", name)
    assert obj is not None
    return obj


def image(api: FakeKubeAPI, deployment: str) -> str:
    obj = api.get("apps/v1", "deployments", "shop", deployment)
    assert obj is not None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def weights(obj: dict[str, Any]) -> dict[str, int]:
    """Subset → weight on the weighted route named `primary` (asserting they sum to 100)."""
    primary = next(h for h in obj["spec"]["http"] if h.get("name") == "primary")
    out = {d["destination"]["subset"]: d["weight"] for d in primary["route"]}
    assert sum(out.values()) == 100, out
    return out


def annotation(service: str) -> str:
    return f"{service}.shop.rollout.mesh-exporter.io/state"


def record(obj: dict[str, Any], service: str = "") -> dict[str, Any]:
    """The rollout record of `service` (default: the VirtualService's own name) in the VirtualService."""
    return dict(json.loads(obj["metadata"]["annotations"][annotation(service or obj["metadata"]["name"])]))


def user_fields(obj: dict[str, Any]) -> Any:
    """Everything in the VirtualService the rollout must never touch."""
    http = [h for h in obj["spec"]["http"] if not h.get("name", "").startswith("mesh-exporter-canary-header")]
    primary = next(h for h in http if h["name"] == "primary")
    stripped = [{k: v for k, v in d.items() if k != "weight"} for d in primary["route"]]
    return (obj["spec"]["hosts"], obj["metadata"]["labels"], http[0], primary["timeout"], primary["retries"], stripped)


def make_rollout(
    data: Data,
    cluster: Cluster,
    name: str,
    clock: FakeClock,
    *,
    events: DatadogSink | None = None,
    dry_run: bool = False,
    out: io.StringIO | None = None,
    kube_type: type[Kube] = Kube,
    **overrides: Any,
) -> Rollout:
    overrides.setdefault("image", NEW_IMAGE)
    plan = Plan(service=ServiceRef("shop", name), interval_s=INTERVAL, window="5m", **overrides)
    analyzer = analyzer_for(plan, Settings(prometheus_url=data.url))
    kube = kube_type(KubeClient(api_client(str(cluster.kubeconfig)), retry=RetryPolicy(sleep=lambda s: None)))
    clock.controller = clock.controller or cluster.controller
    return Rollout(plan, kube, analyzer, clock=clock, waiter=clock, events=events, dry_run=dry_run, out=out)


def write_watch(observe: Callable[[], None]) -> type[Kube]:
    """The real client, calling `observe()` after every write it makes (VirtualService, Deployment, HPA), so a
    test looks at what the API holds after each one (answered or refused)."""

    class Watched(Kube):
        def patch_istio(self, plural: str, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            try:
                return super().patch_istio(plural, namespace, name, ops)
            finally:
                observe()

        def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            try:
                return super().patch_deployment(namespace, name, ops)
            finally:
                observe()

        def patch_hpa(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            try:
                return super().patch_hpa(namespace, name, ops)
            finally:
                observe()

    return Watched


def by_name(obj: dict[str, Any]) -> dict[str, Any]:
    return {h["name"]: h for h in obj["spec"]["http"]}


def snapshots(api: FakeKubeAPI, name: str, clock: FakeClock, count: int = 12) -> list[dict[str, Any]]:
    """The VirtualService as the API holds it during each of the first `count` waits."""
    seen: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        clock.hooks.setdefault(n, lambda: seen.append(vs(api, name)))
    return seen


def replicas(api: FakeKubeAPI, deployment: str) -> tuple[int, int]:
    """(spec.replicas, status.availableReplicas) of the Deployment as the API holds it."""
    obj = api.get("apps/v1", "deployments", "shop", deployment)
    assert obj is not None
    return obj["spec"]["replicas"], (obj.get("status") or {}).get("availableReplicas", 0)


def k8s_events(api: FakeKubeAPI, vs_name: str) -> list[dict[str, Any]]:
    """core/v1 Events the API holds about the VirtualService, in the order they were created."""
    found = [
        e for e in api.objects("v1", "events")
        if e["involvedObject"] == {**e["involvedObject"], "kind": "VirtualService", "name": vs_name}
    ]  # fmt: skip
    return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))


# ------------------------------------------------------------------------------------------------ tests
def test_promotion_walks_every_step_with_the_header_route_then_promotes(data: Data, api: Cluster) -> None:
    server = api.server
    before = vs(server, "reviews")
    clock = FakeClock(data.t0 + 900)
    seen = snapshots(server, "reviews", clock)
    with FakeIntake(api_key=DD_KEY) as intake:
        sink = DatadogSink(DatadogAPI(intake.url, api_key=DD_KEY))
        with structlog.testing.capture_logs() as logs:
            outcome = make_rollout(data, api, "reviews", clock, events=sink, header=("x-canary", "true")).run()
        events = intake.events()
    assert outcome == PROMOTED
    # during the rollout: 5 → 10 → 25 → 50 %, the header route just before ours (with its settings), user
    # fields intact
    assert [weights(s)["canary"] for s in seen] == [5, 10, 25, 50]
    for s in seen:
        assert [h["name"] for h in s["spec"]["http"]] == [
            "admin",
            "mesh-exporter-canary-header.reviews.shop.1",
            "primary",
        ]
        header = s["spec"]["http"][1]
        assert header["match"] == [{"headers": {"x-canary": {"exact": "true"}}}]
        assert (header["timeout"], header["retries"]) == ("3s", {"attempts": 2, "perTryTimeout": "1s"})
        canary = {"host": "reviews.shop.svc.cluster.local", "subset": "canary", "port": {"number": 80}}
        assert header["route"] == [{"destination": canary}]
        assert user_fields(s) == user_fields(before)
        assert record(s)["phase"] == "progressing"
    # at the end: stable runs the new image and takes all traffic; no header route left
    after = vs(server, "reviews")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert [h["name"] for h in after["spec"]["http"]] == ["admin", "primary"]
    assert user_fields(after) == user_fields(before)
    assert record(after)["phase"] == "promoted"
    assert image(server, "reviews-stable") == image(server, "reviews-canary") == NEW_IMAGE
    # preflight reported the versions; every step and verdict is a log event and a Datadog event
    preflight = next(e for e in logs if e["event"] == "rollout preflight")
    assert (preflight["kubernetes_version"], preflight["istio_version"]) == ("v1.32.0", "1.24.2")
    assert [e["verdict"] for e in logs if e["event"] == "canary verdict"] == ["pass"] * 4
    assert all("service:reviews" in e["tags"] and "kube_namespace:shop" in e["tags"] for e in events)
    titles = [e["title"] for e in events]
    assert titles[0] == "Rollout of shop/reviews started" and titles[-1] == "Rollout of shop/reviews promoted"
    assert sum("passed" in t for t in titles) == 4


def test_bad_canary_is_rolled_back_within_a_second_of_the_verdict(data: Data, api: Cluster) -> None:
    server = api.server
    before = vs(server, "ratings")
    clock = FakeClock(data.t0 + 900)
    seen = snapshots(server, "ratings", clock)
    decided: list[float] = []
    rollout = make_rollout(data, api, "ratings", clock, failure_limit=2)
    analyze = rollout.analyzer

    def timed(at: float, targets: Any) -> Any:
        verdict = analyze(at, targets)
        decided.append(time.monotonic())
        return verdict

    rollout.analyzer = timed
    outcome = rollout.run()
    finished = time.monotonic()
    assert outcome == ROLLED_BACK
    assert [weights(s)["canary"] for s in seen] == [5, 5]  # failed twice at 5 %, never advanced
    assert record(seen[1])["failures"] == 1  # the first failure was recorded on the object
    assert finished - decided[-1] < 1.0  # every rollback patch went out within a second of the verdict
    after = vs(server, "ratings")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert user_fields(after) == user_fields(before)
    assert record(after)["phase"] == "rolled-back"
    assert record(after)["reason"].startswith("failed 2 analyses in a row")
    assert image(server, "ratings-canary") == OLD_IMAGE  # canary image restored
    assert image(server, "ratings-stable") == OLD_IMAGE


def test_inconclusive_holds_the_step_then_advances(data: Data, api: Cluster) -> None:
    server = api.server
    clock = FakeClock(data.t0 + 300)  # first analysis over [t0+5m, t0+10m]: 30 canary requests
    seen = snapshots(server, "stock", clock)
    with structlog.testing.capture_logs() as logs:
        outcome = make_rollout(data, api, "stock", clock, hold_limit=3).run()
    assert outcome == PROMOTED
    verdicts = [e["verdict"] for e in logs if e["event"] == "canary verdict"]
    assert verdicts == ["inconclusive", "inconclusive", "pass", "pass", "pass", "pass"]
    assert [weights(s)["canary"] for s in seen] == [5, 5, 5, 10, 25, 50]
    assert [record(s)["holds"] for s in seen[:3]] == [0, 1, 2]
    assert weights(vs(server, "stock")) == {"stable": 100, "canary": 0}


def test_too_long_inconclusive_rolls_back(data: Data, api: Cluster) -> None:
    server = api.server
    outcome = make_rollout(data, api, "details", FakeClock(data.t0 + 900), hold_limit=2).run()
    assert outcome == ROLLED_BACK
    after = vs(server, "details")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["reason"].startswith("inconclusive 3 times at 5 %")
    assert image(server, "details-canary") == OLD_IMAGE


def test_concurrent_edit_is_detected_reported_and_not_overwritten(data: Data, api: Cluster) -> None:
    server = api.server

    def someone_edits() -> None:  # during the first wait, a person changes the route's timeout
        obj = vs(server, "cart")
        next(h for h in obj["spec"]["http"] if h["name"] == "primary")["timeout"] = "9s"
        obj["metadata"]["labels"]["edited-by"] = "alice"
        server.add(obj)

    clock = FakeClock(data.t0 + 900, hooks={1: someone_edits})
    with structlog.testing.capture_logs() as logs, pytest.raises(RolloutError, match="409 Conflict"):
        make_rollout(data, api, "cart", clock).run()
    after = vs(server, "cart")
    primary = next(h for h in after["spec"]["http"] if h["name"] == "primary")
    assert primary["timeout"] == "9s" and after["metadata"]["labels"]["edited-by"] == "alice"  # their edit stands
    assert weights(after) == {"stable": 100, "canary": 0}  # and the rollout rolled back on the error
    assert record(after)["phase"] == "rolled-back" and "409" in record(after)["reason"]
    assert image(server, "cart-canary") == OLD_IMAGE
    assert any(e["event"] == "rollout conflict" for e in logs)
    conflicts = [
        r for r in server.requests if r.method == "PATCH" and r.status == 409 and "/virtualservices/" in r.path
    ]
    assert len(conflicts) == 2  # the step-2 patch, then the rollback's first try; neither was applied


def test_resume_after_restart_continues_from_the_recorded_step(data: Data, api: Cluster) -> None:
    server = api.server
    first = FakeClock(data.t0 + 900, stop_at=2)  # stopped during the wait at 10 %
    assert make_rollout(data, api, "reviews", first, on_sigterm="leave").run() == LEFT
    held = vs(server, "reviews")
    assert weights(held)["canary"] == 10
    assert record(held) | {"reason": ""} == {
        "image": NEW_IMAGE, "previous_image": OLD_IMAGE, "host": "reviews.shop.svc.cluster.local",
        "phase": "progressing", "step": 1, "weight": 10,
        "holds": 0, "failures": 0, "reason": "", "stable_previous_image": "",
        "stable_replicas": STABLE_REPLICAS, "canary_replicas": CANARY_REPLICAS,
        "canary_hpa": "", "canary_hpa_min": 0, "canary_hpa_max": 0,
    }  # fmt: skip

    def canary_image_patches() -> int:
        return sum(
            r.method == "PATCH" and r.status == 200 and r.path.endswith("/deployments/reviews-canary")
            and b"/image" in r.body
            for r in server.requests
        )  # fmt: skip

    before = canary_image_patches()
    second = FakeClock(first.now)
    seen = snapshots(server, "reviews", second)
    assert make_rollout(data, api, "reviews", second).run() == PROMOTED
    assert [weights(s)["canary"] for s in seen] == [10, 25, 50]  # from the recorded step, not from 5 %
    assert canary_image_patches() == before  # the canary already had its image
    assert replicas(server, "reviews-canary")[0] == CANARY_REPLICAS  # from the record: given back after promotion
    assert image(server, "reviews-stable") == NEW_IMAGE
    assert weights(vs(server, "reviews")) == {"stable": 100, "canary": 0}


def test_restart_finishes_an_interrupted_rollback(data: Data, api: Cluster) -> None:
    server = api.server
    obj = vs(server, "ratings")  # as left by a rollout that died mid-rollback: traffic still at 25 %
    primary = next(h for h in obj["spec"]["http"] if h["name"] == "primary")
    primary["route"][0]["weight"], primary["route"][1]["weight"] = 75, 25
    state = {"image": NEW_IMAGE, "previous_image": OLD_IMAGE, "host": "ratings.shop.svc.cluster.local",
             "phase": "rolling-back", "step": 2, "weight": 25, "holds": 0, "failures": 2,
             "reason": "failed 2 analyses in a row"}  # fmt: skip
    obj["metadata"]["annotations"] = {annotation("ratings"): json.dumps(state)}
    server.add(obj)
    canary = server.get("apps/v1", "deployments", "shop", "ratings-canary")
    assert canary is not None
    canary["spec"]["template"]["spec"]["containers"][0]["image"] = NEW_IMAGE
    server.add(canary)
    assert make_rollout(data, api, "ratings", FakeClock(data.t0 + 900)).run() == ROLLED_BACK
    assert weights(vs(server, "ratings")) == {"stable": 100, "canary": 0}
    assert record(vs(server, "ratings"))["phase"] == "rolled-back"
    assert image(server, "ratings-canary") == OLD_IMAGE


def test_a_rollout_of_another_image_in_progress_is_refused(data: Data, api: Cluster) -> None:
    server = api.server
    assert make_rollout(data, api, "reviews", FakeClock(data.t0 + 900, stop_at=1), on_sigterm="leave").run()
    other = make_rollout(data, api, "reviews", FakeClock(data.t0 + 900), image="registry.local/shop/app:2.0")
    with pytest.raises(RolloutError, match=r"rollout of registry\.local/shop/app:1\.1 is in progress"):
        other.run()
    assert weights(vs(server, "reviews"))["canary"] == 5  # untouched


def test_dry_run_prints_every_patch_and_changes_nothing(data: Data, api: Cluster) -> None:
    server = api.server
    before = {n: vs(server, n) for n in ("reviews",)} | {
        d: server.get("apps/v1", "deployments", "shop", d) for d in ("reviews-stable", "reviews-canary")
    }
    out = io.StringIO()
    clock = FakeClock(data.t0 + 900)
    seen_before = len(server.requests)
    rollout = make_rollout(data, api, "reviews", clock, dry_run=True, out=out, header=("x-canary", "1"))
    assert rollout.run() == PROMOTED
    assert clock.waits == clock.polls == 0  # nothing to wait for: nothing changed
    after = {n: vs(server, n) for n in ("reviews",)} | {
        d: server.get("apps/v1", "deployments", "shop", d) for d in ("reviews-stable", "reviews-canary")
    }
    assert after == before  # resourceVersions included
    assert {r.method for r in server.requests[seen_before:]} == {"GET"}
    text = out.getvalue()
    patches = [json.loads(block.split("\n", 2)[2]) for block in text.strip().split("\n\n")]
    headers = [block.split("\n", 1)[0] for block in text.strip().split("\n\n")]
    assert headers == [
        "# canary image",
        "# step 1/5: canary 5 %, stable 95 %",
        "# step 2/5: canary 10 %, stable 90 %",
        "# step 3/5: canary 25 %, stable 75 %",
        "# capacity for 50 %: 2 replicas (stable had 3)",
        "# step 4/5: canary 50 %, stable 50 %",
        "# capacity for 100 %: 3 replicas (stable had 3)",
        "# promotion: canary 100 %",
        "# promotion: stable gets the canary image",
        "# promotion: stable 100 % (now on the new image)",
        "# promotion done",
    ]  # fmt: skip  (ceil(3 × 25 / 100) = 1 replica is what the canary has; ceil(3 × 50 / 100) = 2)
    assert all(p[0]["path"] == "/metadata/resourceVersion" for p in patches)
    vs_patches = [p for h, p in zip(headers, patches, strict=True) if "step" in h or "canary 100" in h]
    step_weights = [[op["value"] for op in p if op["path"].endswith("/weight")] for p in vs_patches]
    assert step_weights == [[95, 5], [90, 10], [75, 25], [50, 50], [0, 100]]
    assert [p[1] for h, p in zip(headers, patches, strict=True) if "capacity" in h] == [
        {"op": "add", "path": "/spec/replicas", "value": 2}, {"op": "add", "path": "/spec/replicas", "value": 3}
    ]  # fmt: skip
    assert patches[0][1] == {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": NEW_IMAGE}


@pytest.mark.parametrize("left", ["annotation", "route", "both"])
def test_a_rollout_left_by_the_first_layout_is_refused_by_name_and_nothing_is_written(
    data: Data, api: Cluster, left: str
) -> None:
    server = api.server
    obj = vs(server, "reviews")  # what the first layout left mid-rollout: its record, its header route, 75/25
    if left != "route":
        obj["metadata"]["annotations"] = {"mesh-exporter.io/rollout": json.dumps({"image": NEW_IMAGE, "weight": 25})}
    if left != "annotation":
        canary = [{"destination": {"host": "reviews", "subset": "canary"}}]
        match = [{"headers": {"x-canary": {"exact": "true"}}}]
        obj["spec"]["http"].insert(0, {"name": "mesh-exporter-canary-header", "match": match, "route": canary})
    server.add(obj)
    before, mark = vs(server, "reviews"), len(server.requests)
    named = {
        "annotation": "annotation mesh-exporter.io/rollout",
        "route": "HTTP route mesh-exporter-canary-header",
        "both": "annotation mesh-exporter.io/rollout and HTTP route mesh-exporter-canary-header",
    }[left]
    with pytest.raises(RolloutError) as raised:
        make_rollout(data, api, "reviews", FakeClock(data.t0 + 900), header=("x-canary", "true")).run()
    assert str(raised.value) == (
        f"VirtualService shop/reviews holds the {named} of a rollout by an earlier mesh-exporter; finish or roll it "
        "back with that version, or remove them (kubectl edit), then run this again"
    )
    assert vs(server, "reviews") == before and image(server, "reviews-canary") == OLD_IMAGE
    assert not [r for r in server.requests[mark:] if r.method != "GET"]


def test_preflight_names_what_is_missing_and_warns_on_istio_version(data: Data, api: Cluster) -> None:
    server = api.server
    server.add(istiod("1.20.1"))
    with pytest.raises(RolloutError, match="VirtualService shop/nothing not found"):
        make_rollout(data, api, "nothing", FakeClock(data.t0)).run()
    with structlog.testing.capture_logs() as logs, pytest.raises(RolloutError, match="has no subset 'preview'"):
        make_rollout(data, api, "reviews", FakeClock(data.t0), canary_subset="preview").run()
    warning = next(e for e in logs if e["event"] == "istio version outside the supported range")
    assert warning["istio_version"] == "1.20.1"
    assert weights(vs(server, "reviews")) == {"stable": 100, "canary": 0}


def cli_env(data_url: str, api: Cluster, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    return env | {"EXPORTER_PROMETHEUS_URL": data_url, "KUBECONFIG": str(api.kubeconfig)} | extra


@contextmanager
def controller_running(api: Cluster) -> Iterator[None]:
    """The Deployment controller syncing every 20 ms, as in a cluster, while a subprocess rolls out."""
    done = threading.Event()

    def control() -> None:
        while not done.wait(0.02):
            api.controller.sync()

    thread = threading.Thread(target=control, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_prometheus_hangs_rolls_back_within_a_second(
    data: Data, api: Cluster, sig: signal.Signals
) -> None:
    server = api.server
    intake = FakeIntake(api_key=DD_KEY).start()
    proxy = FaultProxy(data.url).start()
    env = cli_env(proxy.url, api, DD_API_KEY=DD_KEY, EXPORTER_DATADOG_URL=intake.url, EXPORTER_TAGS="env:test")
    with controller_running(api):
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", "orders",
             "--canary-image", NEW_IMAGE, "--step-interval", "3s", "--analysis-timeout", "2s", "--window", "5m"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while weights(vs(server, "orders"))["canary"] != 5:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
            assert image(server, "orders-canary") == NEW_IMAGE
            proxy.set_fault(lambda r: Fault(delay_s=30.0))  # Prometheus hangs from now on
            while not proxy.requests:  # the step's analysis is in flight, hanging
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.005)
            time.sleep(0.3)
            proc.send_signal(sig)
            signalled = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
            events = intake.events()
        finally:
            intake.stop()
            proxy.stop()
            if proc.poll() is None:
                proc.kill()
    # measured on the stand-in's request log: when the first write after the signal arrived
    writes = [r for r in server.requests if r.method == "PATCH" and r.received > signalled]
    first = writes[0]
    assert first.path.endswith("/virtualservices/orders")
    assert first.received - signalled < 1.0, f"first rollback write {first.received - signalled:.3f}s after {sig.name}"
    assert [op["value"] for op in json.loads(first.body) if op["path"].endswith("/weight")] == [100, 0]
    assert proc.returncode == 1, stderr  # SIGINT as SIGTERM: rolled back because of a signal, not 130
    after = vs(server, "orders")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and record(after)["reason"] == f"interrupted ({sig.name})"
    assert image(server, "orders-canary") == OLD_IMAGE
    assert f"rolled-back (signal: interrupted ({sig.name}))" in stderr
    assert "did not finish" not in stderr  # the reason is the signal, not the Prometheus timeout
    assert DD_KEY not in stderr
    assert [e["title"] for e in events] == [
        "Rollout of shop/orders started", "Rollout of shop/orders: canary at 5 %", "Rollout of shop/orders rolled back",
    ]  # fmt: skip
    assert all({"service:orders", "kube_namespace:shop", "env:test"} <= set(e["tags"]) for e in events)
    assert [(e["reason"], e["type"]) for e in k8s_events(server, "orders")] == [
        ("RolloutStarted", "Normal"), ("RolloutStep", "Normal"), ("RolledBack", "Warning"),
    ]  # fmt: skip


def test_sigterm_while_the_kubernetes_api_and_datadog_hang_rolls_back_within_a_second(data: Data, api: Cluster) -> None:
    server = api.server
    api.controller.stuck.add("orders-canary")  # the rollout polls the canary's readiness...
    intake = FakeIntake(api_key=DD_KEY).start()
    intake.set_fault(lambda r: Reply(202, delay_s=4.0))  # ...while every Datadog event takes 4 s
    env = cli_env(data.url, api, DD_API_KEY=DD_KEY, EXPORTER_DATADOG_URL=intake.url)
    with controller_running(api):
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", "orders",
             "--canary-image", NEW_IMAGE, "--ready-timeout", "2s"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while image(server, "orders-canary") != NEW_IMAGE:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
            # ...and the API server holds its answers about the canary for 4 s: a poll is soon hanging
            server.slow_next(2, 4.0, path_prefix="/apis/apps/v1/namespaces/shop/deployments/orders-canary")
            time.sleep(1.5)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            _, stderr = proc.communicate(timeout=40)
        finally:
            intake.stop()
            if proc.poll() is None:
                proc.kill()
    writes = [r for r in server.requests if r.method == "PATCH" and r.received > signalled]
    first = writes[0]
    assert first.path.endswith("/virtualservices/orders")
    assert first.received - signalled < 1.0, f"first rollback write {first.received - signalled:.3f}s after SIGTERM"
    assert proc.returncode == 1, stderr
    after = vs(server, "orders")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and record(after)["reason"] == "interrupted (SIGTERM)"
    assert image(server, "orders-canary") == OLD_IMAGE


def test_a_stop_during_a_hung_step_write_rolls_back_at_once_and_the_late_write_is_refused(
    data: Data, api: Cluster
) -> None:
    server = api.server
    clock = FakeClock(data.t0 + 900)
    path = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/reviews"
    stopped_at: list[float] = []

    class SlowStepWrite(Kube):
        """The real client; when the 10 % write goes out, the API server holds it 2 s and a stop comes 0.2 s in."""

        def patch_istio(self, plural: str, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            if any(op["path"].endswith("/weight") and op["value"] == 10 for op in ops):
                server.slow_next(1, 2.0, path_prefix=path)

                def stop() -> None:
                    stopped_at.append(time.monotonic())
                    clock.stop = True

                threading.Timer(0.2, stop).start()
            return super().patch_istio(plural, namespace, name, ops)

    rollout = make_rollout(data, api, "reviews", clock, kube_type=SlowStepWrite)
    assert rollout.run() == ROLLED_BACK
    assert rollout.cause == SIGNAL
    time.sleep(2.2)  # the held step write is answered meanwhile
    writes = [r for r in server.requests if r.method == "PATCH" and r.path == path]
    rollback = next(r for r in writes if r.received > stopped_at[0])
    assert rollback.received - stopped_at[0] < 1.0
    late = next(r for r in writes if b'"value": 10}' in r.body or b'"value":10}' in r.body)
    assert late.status == 409  # the abandoned write arrived first, was held, and lost to the rollback's guard
    after = vs(server, "reviews")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and record(after)["reason"] == "interrupted (SIGTERM)"


def test_a_canary_that_never_rolls_out_is_rolled_back_before_any_traffic(data: Data, api: Cluster) -> None:
    server = api.server
    api.controller.stuck.add("reviews-canary")  # e.g. its pods crash-loop
    clock = FakeClock(data.t0 + 900)
    with pytest.raises(RolloutError, match="Deployment shop/reviews-canary not rolled out after 30s"):
        make_rollout(data, api, "reviews", clock, ready_timeout_s=30.0).run()
    assert clock.waits == 0 and clock.polls >= 30  # polled for the whole timeout, never reached a step
    after = vs(server, "reviews")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and "not rolled out" in record(after)["reason"]
    assert image(server, "reviews-canary") == OLD_IMAGE


def test_an_interrupt_while_stable_rolls_out_the_new_image_restores_both_images(data: Data, api: Cluster) -> None:
    server = api.server
    api.controller.stuck.add("reviews-stable")  # promotion waits for stable's new pods
    clock = FakeClock(data.t0 + 900, stop_at_poll=4)  # poll 1: canary rolls out; 2-4: stable does not
    seen = snapshots(server, "reviews", clock)
    rollout = make_rollout(data, api, "reviews", clock)
    assert rollout.run() == ROLLED_BACK
    assert rollout.cause == SIGNAL and rollout.reason == "interrupted (SIGTERM)"
    assert [weights(s)["canary"] for s in seen] == [5, 10, 25, 50]
    after = vs(server, "reviews")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["reason"] == "interrupted (SIGTERM)"
    assert image(server, "reviews-stable") == image(server, "reviews-canary") == OLD_IMAGE


NOT_A_NAME = "not a Kubernetes object name (lower-case DNS subdomain, at most 253)"


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (("--steps", "5,50"), "--steps: the last step must be 100 (promotion)"),
        (("--virtual-service", "Bad!"), f"--virtual-service: {NOT_A_NAME}: 'Bad!'"),
        (("--virtual-service", "shop/Bad!"), f"--virtual-service: {NOT_A_NAME}: 'Bad!'"),
        (("--destination-rule", "Bad!"), f"--destination-rule: {NOT_A_NAME}: 'Bad!'"),
        (("--stable-deployment", "x_"), f"--stable-deployment: {NOT_A_NAME}: 'x_'"),
        (("--canary-deployment", "a" * 254), f"--canary-deployment: {NOT_A_NAME}: '{'a' * 254}'"),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_flag(
    data: Data, api: Cluster, flags: tuple[str, ...], line: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    env |= {"EXPORTER_PROMETHEUS_URL": data.url, "KUBECONFIG": str(api.kubeconfig)}
    mark = len(api.server.requests)
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", "reviews",
         "--canary-image", NEW_IMAGE, *flags],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"exporter: config error: {line}"]
    assert weights(vs(api.server, "reviews")) == {"stable": 100, "canary": 0}
    assert len(api.server.requests) == mark  # refused before any call to the API


def test_prometheus_down_is_an_error_that_rolls_back_never_a_verdict(data: Data, api: Cluster) -> None:
    server = api.server
    down = Data("http://127.0.0.1:9", data.t0)  # nothing listens: every query fails after its retries
    with pytest.raises(QueryError, match="cannot reach Prometheus"):
        make_rollout(down, api, "reviews", FakeClock(data.t0 + 900)).run()
    after = vs(server, "reviews")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and "cannot reach Prometheus" in record(after)["reason"]
    assert image(server, "reviews-canary") == OLD_IMAGE


def test_on_error_leave_keeps_the_state_for_a_person_to_decide(data: Data, api: Cluster) -> None:
    server = api.server

    def someone_edits() -> None:  # in our route: a conflict (an edit elsewhere would be built upon)
        obj = vs(server, "cart")
        obj["metadata"]["labels"]["edited-by"] = "bob"
        next(h for h in obj["spec"]["http"] if h["name"] == "primary")["timeout"] = "9s"
        server.add(obj)

    clock = FakeClock(data.t0 + 900, hooks={1: someone_edits})
    with pytest.raises(RolloutError, match="409 Conflict"):
        make_rollout(data, api, "cart", clock, on_error="leave").run()
    after = vs(server, "cart")
    assert after["metadata"]["labels"]["edited-by"] == "bob"
    assert weights(after) == {"stable": 95, "canary": 5}  # left where it was
    assert record(after)["phase"] == "progressing" and record(after)["step"] == 0
    assert image(server, "cart-canary") == NEW_IMAGE


# ------------------------------------------------------------------------ ownership on a shared VirtualService
HEADER_PREFIX = "mesh-exporter-canary-header"


def header_routes(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in obj["spec"]["http"] if h["name"].startswith(HEADER_PREFIX)}


@pytest.mark.parametrize(("ours", "outcome"), [("cart", PROMOTED), ("ratings", ROLLED_BACK)])
def test_on_a_shared_virtual_service_nothing_outside_our_routes_ever_changes(
    data: Data, api: Cluster, ours: str, outcome: str
) -> None:
    server = api.server
    server.add(shared_virtual_service(ours))  # shared with widgets' own 80/20 canary, same subset names
    before = vs(server, "storefront")
    original = by_name(before)
    seen: list[dict[str, Any]] = []

    def look() -> None:
        seen.append(vs(server, "storefront"))

    clock = FakeClock(data.t0 + 900, observe=look)  # at every wait and poll...
    with structlog.testing.capture_logs() as logs:
        rollout = make_rollout(
            data,
            api,
            ours,
            clock,
            virtual_service="storefront",
            header=HEADER,
            failure_limit=1,
            kube_type=write_watch(look),
        )  # fmt: skip  (...and after every write)
        assert rollout.run() == outcome
    after = vs(server, "storefront")
    ours_weights = {by_name(s)[ours]["route"][1]["weight"] for s in seen}
    assert ours_weights == ({0, 5, 10, 25, 50, 100} if outcome == PROMOTED else {0, 5})  # promotion observed too
    mine = f"{HEADER_PREFIX}.{ours}.shop.1"
    # with the header, only the requests our /<ours>/ route took (every host, in-mesh) go elsewhere: to our canary
    captured = {r: ours for r in requests_for(before, header=True) if r.gateway == "mesh" and r.path == f"/{ours}/x"}
    canary = [{"destination": {"host": f"{ours}.shop.svc.cluster.local", "subset": "canary"}}]
    for s in [*seen, after]:
        changed = rerouted(before, s)  # first-match routing on the stored object, with and without the header
        assert {r: was for r, (was, _) in changed.items()} == (captured if header_routes(s) else {})
        assert all(route == canary for _, route in changed.values())
        routes = by_name(s)
        # widgets' routes, the catch-all, and `<ours>.shop` (a literal host for Istio, not ours) never change
        for name in ("widgets", "widgets-fqdn", f"{ours}-api", "default"):
            assert routes[name] == original[name]
        assert [{k: v for k, v in d.items() if k != "weight"} for d in routes[ours]["route"]] == [
            {k: v for k, v in d.items() if k != "weight"} for d in original[ours]["route"]
        ]  # ours: only the weights move
        assert s["spec"]["hosts"] == before["spec"]["hosts"] and s["spec"]["gateways"] == before["spec"]["gateways"]
        assert set(s["metadata"].get("annotations") or {}) <= {annotation(ours)}
        assert set(header_routes(s)) <= {mine}
    assert any(header_routes(s) for s in seen) and captured
    assert [d["weight"] for d in by_name(after)[ours]["route"]] == [100, 0]
    assert [h["name"] for h in after["spec"]["http"]] == [h["name"] for h in before["spec"]["http"]]
    assert record(after, ours)["phase"] == outcome
    warning = next(e for e in logs if e["event"] == "route host is not the service's for istio")
    assert (warning["route"], warning["host"]) == (f"{ours}-api", f"{ours}.shop")
    vs_writes = {r.path for r in server.requests if r.method == "PATCH" and "/virtualservices/" in r.path}
    assert vs_writes == {"/apis/networking.istio.io/v1/namespaces/shop/virtualservices/storefront"}


@pytest.mark.parametrize(("other", "outcome"), [("reviews", PROMOTED), ("ratings", ROLLED_BACK)])
def test_two_rollouts_on_one_virtual_service_never_touch_each_other(
    data: Data, api: Cluster, other: str, outcome: str
) -> None:
    server = api.server
    server.add(shared_virtual_service("cart", other))  # `other` has its own 80/20 split on it
    options: dict[str, Any] = {"virtual_service": "storefront", "header": ("x-canary", "true"), "steps": (10, 50, 100)}
    first = FakeClock(data.t0 + 900, stop_at=1)  # cart's rollout is left mid-way, at 10 %, to resume later
    assert make_rollout(data, api, "cart", first, on_sigterm="leave", **options).run() == LEFT

    def carts(obj: dict[str, Any]) -> Any:
        """Cart's routes, record and header route."""
        routes = by_name(obj)
        return routes["cart"], routes["cart-api"], record(obj, "cart"), routes[f"{HEADER_PREFIX}.cart.shop.1"]

    held = carts(vs(server, "storefront"))
    assert [d["weight"] for d in held[0]["route"]] == [90, 10] and held[2]["phase"] == "progressing"
    seen: list[dict[str, Any]] = []

    def look() -> None:
        seen.append(vs(server, "storefront"))

    second = FakeClock(first.now, observe=look)
    rollout = make_rollout(data, api, other, second, failure_limit=1, kube_type=write_watch(look), **options)
    assert rollout.run() == outcome
    after = vs(server, "storefront")
    assert {by_name(s)[other]["route"][1]["weight"] for s in seen} == (
        {20, 10, 50, 100, 0} if outcome == PROMOTED else {20, 10, 0}
    )  # fmt: skip  (its own 80/20 split first)
    for s in [*seen, after]:  # cart's part of the object, as the API holds it after every write of the other
        assert carts(s) == held
    assert (
        record(after, other)["phase"] == outcome and record(after, other)["host"] == f"{other}.shop.svc.cluster.local"
    )
    assert not set(header_routes(after)) - {f"{HEADER_PREFIX}.cart.shop.1"}
    # cart resumes from its own record (not the other's) and finishes; the other's record stays as it ended
    ended = record(after, other)
    assert make_rollout(data, api, "cart", FakeClock(second.now), **options).run() == PROMOTED
    final = vs(server, "storefront")
    assert record(final, other) == ended and record(final, "cart")["phase"] == "promoted"
    assert image(server, "cart-stable") == NEW_IMAGE


class Turns:
    """Two rollouts in two threads taking turns: each runs until its next step wait, then the other does."""

    def __init__(self, first: str) -> None:
        self.turn, self.finished, self.cond = first, set[str](), threading.Condition()

    def take(self, me: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.turn == me, timeout=120), f"{me} never got its turn"

    def hand_over(self, me: str, other: str) -> None:
        with self.cond:
            self.turn = me if other in self.finished else other
            self.cond.notify_all()
        self.take(me)

    def finish(self, me: str, other: str) -> None:
        with self.cond:
            self.finished.add(me)
            self.turn = other
            self.cond.notify_all()


@dataclass
class TakingTurns(FakeClock):
    turns: Turns | None = None
    me: str = ""
    other: str = ""

    def wait(self, seconds: float) -> bool:
        if seconds >= 60 and self.turns is not None:
            self.turns.hand_over(self.me, self.other)
        return super().wait(seconds)


def test_two_rollouts_at_once_on_one_virtual_service_both_promote(data: Data, api: Cluster) -> None:
    server = api.server
    server.add(shared_virtual_service("cart", "reviews"))  # reviews runs its own 80/20 split on it
    turns, seen, outcomes = Turns("cart"), list[dict[str, Any]](), dict[str, str]()

    def look() -> None:
        seen.append(vs(server, "storefront"))

    def run(me: str, other: str) -> None:
        clock = TakingTurns(data.t0 + 900, turns=turns, me=me, other=other, observe=look)
        turns.take(me)
        try:
            outcomes[me] = make_rollout(data, api, me, clock, virtual_service="storefront", header=HEADER,
                                        steps=(10, 50, 100), kube_type=write_watch(look)).run()  # fmt: skip
        except Exception as e:  # reported by the assertion below
            outcomes[me] = repr(e)
        finally:
            turns.finish(me, other)

    threads = [threading.Thread(target=run, args=pair) for pair in (("cart", "reviews"), ("reviews", "cart"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert outcomes == {"cart": PROMOTED, "reviews": PROMOTED}
    # each met the other's write (a 409 on its whole-object guard), re-read, found its own part untouched, went on
    refused = [r for r in server.requests if r.method == "PATCH" and r.status == 409 and "/virtualservices/" in r.path]
    assert {name for r in refused for name in ("cart", "reviews") if f"/{name}.shop.rollout".encode() in r.body} == {
        "cart",
        "reviews",
    }

    def walk(name: str) -> list[int]:
        """The canary weights of `name`'s route as the API held them, repeats dropped."""
        out: list[int] = []
        for w in (by_name(s)[name]["route"][1]["weight"] for s in seen):
            out += [w] if not out or out[-1] != w else []
        return out

    # neither ever undid the other's weights; at times both were mid-way at once
    assert walk("cart") == [0, 10, 50, 100, 0] and walk("reviews") == [20, 10, 50, 100, 0]
    both = {(by_name(s)["cart"]["route"][1]["weight"], by_name(s)["reviews"]["route"][1]["weight"]) for s in seen}
    assert (10, 10) in both and (50, 50) in both
    after = vs(server, "storefront")
    assert record(after, "cart")["phase"] == record(after, "reviews")["phase"] == "promoted"
    assert header_routes(after) == {}
    assert image(server, "cart-stable") == image(server, "reviews-stable") == NEW_IMAGE


def test_the_header_route_through_a_named_gateway_and_header_routes_that_could_never_match(
    data: Data, api: Cluster
) -> None:
    server = api.server
    server.add(shared_virtual_service("cart"))
    start = vs(server, "storefront")
    at_step: list[dict[str, Any]] = []
    clock = FakeClock(data.t0 + 900, hooks={1: lambda: at_step.append(vs(server, "storefront"))})
    gateway = "istio-system/public-gateway"
    outcome = make_rollout(data, api, "cart", clock, virtual_service="storefront", header=HEADER,
                           header_gateways=(gateway,), steps=(50, 100)).run()  # fmt: skip
    assert outcome == PROMOTED
    (header,) = header_routes(at_step[0]).values()
    # through the gateway requests carry the public host: our route's own path, no in-mesh authority
    assert header["match"] == [
        {"uri": {"prefix": "/cart/"}, "headers": {"x-qa": {"exact": "true"}}, "gateways": [gateway]}
    ]
    canary = [{"destination": {"host": "cart.shop.svc.cluster.local", "subset": "canary"}}]
    assert header["route"] == canary
    # routed on the stored object: with the header, through the gateway, what /cart/ took goes to the canary
    changed = rerouted(start, at_step[0])
    assert set(changed) == {r for r in requests_for(start, header=True) if r.gateway == gateway and r.path == "/cart/x"}
    assert changed and all(v == ("cart", canary) for v in changed.values())
    before, mark = vs(server, "storefront"), len(server.requests)
    with pytest.raises(RolloutError, match=r"--header-gateways names istio-system/qa-gateway, not bound to "
                       r"VirtualService shop/storefront"):  # fmt: skip
        make_rollout(data, api, "cart", FakeClock(data.t0 + 900), virtual_service="storefront",
                     header=("x-qa", "true"), header_gateways=("istio-system/qa-gateway",)).run()  # fmt: skip
    edge = shared_virtual_service("cart")
    edge["metadata"]["name"], edge["spec"]["gateways"] = "edge", [gateway]
    server.add(edge)
    with pytest.raises(RolloutError, match=r"shop/edge is bound only to gateways istio-system/public-gateway"):
        make_rollout(data, api, "cart", FakeClock(data.t0 + 900), virtual_service="edge",
                     header=("x-qa", "true")).run()  # fmt: skip
    assert vs(server, "storefront") == before
    assert not [r for r in server.requests[mark:] if r.method != "GET"]


def test_a_virtual_service_in_another_namespace_routes_hosts_relative_to_its_own(data: Data, api: Cluster) -> None:
    server = api.server
    edge = shared_virtual_service("cart")
    edge["metadata"]["namespace"] = "edge"  # there, `cart` means cart.edge: only the FQDN route is cart's
    edge["spec"]["http"][3]["route"] = [
        {**d, "destination": {**d["destination"], "host": "cart.shop.svc.cluster.local"}}
        for d in edge["spec"]["http"][3]["route"]
    ]
    server.add(edge)
    before = server.get("networking.istio.io/v1", "virtualservices", "edge", "storefront")
    assert before is not None
    at_step: list[dict[str, Any]] = []

    def look() -> None:
        obj = server.get("networking.istio.io/v1", "virtualservices", "edge", "storefront")
        assert obj is not None
        at_step.append(obj)

    clock = FakeClock(data.t0 + 900, hooks={1: look})
    rollout = make_rollout(data, api, "cart", clock, virtual_service="edge/storefront", steps=(50, 100))
    assert rollout.run() == PROMOTED
    assert [d["weight"] for d in by_name(at_step[0])["cart-api"]["route"]] == [50, 50]
    assert by_name(at_step[0])["cart"] == by_name(before)["cart"]  # cart.edge: not ours
    assert record(at_step[0], "cart")["host"] == "cart.shop.svc.cluster.local"
    assert image(server, "cart-stable") == NEW_IMAGE
    events = [e for e in server.objects("v1", "events") if e["involvedObject"]["name"] == "storefront"]
    assert events and all(
        e["metadata"]["namespace"] == e["involvedObject"]["namespace"] == "edge"
        and e["involvedObject"]["uid"] == before["metadata"]["uid"]
        for e in events
    )
    assert rollout.summary()["virtual_service"] == "edge/storefront"


def test_a_virtual_service_without_a_route_of_the_service_is_a_preflight_error(data: Data, api: Cluster) -> None:
    server = api.server
    server.add(shared_virtual_service("cart"))
    before = vs(server, "storefront")
    mark = len(server.requests)
    with pytest.raises(RolloutError, match=r"storefront has no route to orders\.shop\.svc\.cluster\.local"):
        make_rollout(data, api, "orders", FakeClock(data.t0 + 900), virtual_service="storefront").run()
    other = destination_rule("orders")
    other["spec"]["host"] = "widgets"
    other["metadata"]["name"] = "widgets"
    server.add(other)
    with pytest.raises(RolloutError, match=r"DestinationRule shop/widgets is for host widgets\.shop\.svc"):
        make_rollout(data, api, "cart", FakeClock(data.t0 + 900), virtual_service="storefront",
                     destination_rule="widgets").run()  # fmt: skip
    assert vs(server, "storefront") == before
    assert not [r for r in server.requests[mark:] if r.method != "GET"]


# ----------------------------------------------------------------------------------------------- capacity
def watch_capacity(api: FakeKubeAPI, name: str, clock: FakeClock) -> list[tuple[int, int]]:
    """(canary weight, canary available replicas) as the API holds them at every wait and poll."""
    seen: list[tuple[int, int]] = []
    clock.observe = lambda: seen.append((weights(vs(api, name))["canary"], replicas(api, f"{name}-canary")[1]))
    return seen


def test_promotion_scales_the_canary_to_carry_its_share_then_gives_replicas_back(data: Data, api: Cluster) -> None:
    server = api.server
    clock = FakeClock(data.t0 + 900)
    seen = watch_capacity(server, "reviews", clock)
    rollout = make_rollout(data, api, "reviews", clock)
    assert rollout.run() == PROMOTED
    at_steps = sorted({(w, c) for w, c in seen if 0 < w < 100})
    assert at_steps == [(5, 1), (10, 1), (25, 1), (50, 2)]  # S = 3: ceil(3 × w / 100), never fewer than 1
    for weight, canary in seen:  # at every wait and poll: the canary's share ≤ its share of capacity
        assert canary * 100 >= STABLE_REPLICAS * weight, (weight, canary)
    assert replicas(server, "reviews-canary")[0] == CANARY_REPLICAS  # given back (pods go as the controller acts)
    assert replicas(server, "reviews-stable") == (STABLE_REPLICAS, STABLE_REPLICAS)
    assert [s["canary_replicas"] for s in rollout.summary()["steps"]] == [1, 1, 1, 2, 3]


def test_promotion_keeps_traffic_on_the_canary_until_stable_runs_the_new_image(data: Data, api: Cluster) -> None:
    server = api.server
    api.controller.stuck.add("reviews-stable")  # stable's new pods are slow: three polls
    clock = FakeClock(data.t0 + 900)
    seen = watch_capacity(server, "reviews", clock)
    watching = clock.observe

    def observe() -> None:
        assert watching is not None
        watching()
        if [w for w, _ in seen].count(100) == 3:
            api.controller.stuck.discard("reviews-stable")

    clock.observe = observe
    assert make_rollout(data, api, "reviews", clock, steps=(50, 100)).run() == PROMOTED
    at_full = [c for w, c in seen if w == 100]
    assert at_full == [3, 3, 3]  # all traffic on the canary, with stable's 3 replicas, until stable was ready
    assert image(server, "reviews-stable") == NEW_IMAGE
    assert weights(vs(server, "reviews")) == {"stable": 100, "canary": 0}
    assert replicas(server, "reviews-canary")[0] == CANARY_REPLICAS


def test_rollback_gives_back_replicas_and_waits_for_the_restored_image(data: Data, api: Cluster) -> None:
    server = api.server
    clock = FakeClock(data.t0 + 900)
    seen = watch_capacity(server, "ratings", clock)
    with structlog.testing.capture_logs() as logs:
        rollout = make_rollout(data, api, "ratings", clock, steps=(50, 100), failure_limit=1)
        assert rollout.run() == ROLLED_BACK
    assert rollout.cause == ANALYSIS
    assert (50, 2) in seen and all(c * 100 >= STABLE_REPLICAS * w for w, c in seen)  # 2 replicas for 50 %
    assert replicas(server, "ratings-canary") == (CANARY_REPLICAS, CANARY_REPLICAS)
    assert image(server, "ratings-canary") == OLD_IMAGE
    ready = next(e for e in logs if e["event"] == "rollback: restored image ready")
    assert ready["deployment"] == "ratings-canary" and ready["image"] == OLD_IMAGE
    assert rollout.summary()["rollback"]["restored_ready"] == {"ratings-canary": True}
    assert rollout.summary()["steps"][0]["canary_replicas"] == 2


def test_a_restored_image_that_never_becomes_ready_is_reported_after_a_bounded_wait(data: Data, api: Cluster) -> None:
    server = api.server
    clock = FakeClock(data.t0 + 900, hooks={1: lambda: api.controller.stuck.add("ratings-canary")})
    with structlog.testing.capture_logs() as logs:
        rollout = make_rollout(data, api, "ratings", clock, failure_limit=1, ready_timeout_s=20.0)
        assert rollout.run() == ROLLED_BACK
    late = next(e for e in logs if e["event"] == "rollback: restored image not ready in time")
    assert late["deployment"] == "ratings-canary" and late["timeout_s"] == 20.0
    assert rollout.summary()["rollback"]["restored_ready"] == {"ratings-canary": False}
    assert weights(vs(server, "ratings")) == {"stable": 100, "canary": 0}
    assert record(vs(server, "ratings"))["phase"] == "rolled-back"


def test_an_hpa_managed_canary_gets_its_min_replicas_raised_then_restored(data: Data, api: Cluster) -> None:
    server = api.server
    server.add(hpa("reviews-canary", min_replicas=1, max_replicas=2))
    server.add(hpa("reviews-stable", min_replicas=3, max_replicas=6))
    clock = FakeClock(data.t0 + 900)
    scaler: list[tuple[int, int, int]] = []

    def look() -> None:
        h = server.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "reviews-canary")
        assert h is not None
        scaler.append((weights(vs(server, "reviews"))["canary"], h["spec"]["minReplicas"], h["spec"]["maxReplicas"]))

    clock.hooks[1] = look
    with structlog.testing.capture_logs() as logs:
        assert make_rollout(data, api, "reviews", clock, steps=(50, 100)).run() == PROMOTED
    assert scaler == [(50, 2, 2)]  # ceil(3 × 50 / 100) = 2 through the autoscaler, not against it
    h = server.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "reviews-canary")
    assert h is not None and (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) == (1, 2)  # restored
    said = {e["deployment"] for e in logs if e["event"] == "horizontal pod autoscaler manages deployment"}
    assert said == {"reviews-canary", "reviews-stable"}
    deployment_scales = [
        r for r in server.requests
        if r.method == "PATCH" and r.path.endswith("/reviews-canary") and b"/spec/replicas" in r.body
    ]  # fmt: skip
    assert deployment_scales == []  # the rollout never fought the autoscaler over spec.replicas
    stable_hpa = server.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "reviews-stable")
    assert stable_hpa is not None and stable_hpa["spec"]["minReplicas"] == 3


def test_an_hpa_managed_canary_is_restored_on_rollback_and_its_guarded_patch_keeps_their_edit(
    data: Data, api: Cluster
) -> None:
    server = api.server
    server.add(hpa("ratings-canary", min_replicas=1, max_replicas=2))
    seen: list[tuple[int, int, int]] = []

    def the_hpa() -> dict[str, Any]:
        h = server.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "ratings-canary")
        assert h is not None
        return h

    def look() -> None:
        spec = the_hpa()["spec"]
        seen.append((weights(vs(server, "ratings"))["canary"], spec["minReplicas"], spec["maxReplicas"]))

    edited: list[bool] = []

    class SomeoneEditsTheHPA(write_watch(look)):  # type: ignore[misc]
        """Just before the rollout's first HPA patch, another owner labels the HPA: its read is stale."""

        def patch_hpa(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            if not edited:
                theirs = the_hpa()
                theirs["metadata"]["labels"] = {"owner": "platform"}
                server.add(theirs)
                edited.append(True)
            return super().patch_hpa(namespace, name, ops)

    clock = FakeClock(data.t0 + 900, observe=look)
    rollout = make_rollout(data, api, "ratings", clock, steps=(50, 100), failure_limit=1, kube_type=SomeoneEditsTheHPA)
    assert rollout.run() == ROLLED_BACK and rollout.cause == ANALYSIS
    assert (50, 2, 2) in seen  # ceil(3 × 50 / 100) = 2 through the autoscaler while the canary had 50 %
    for weight, low, _ in seen:  # after every write and at every wait: the autoscaler keeps the share's replicas
        assert low * 100 >= STABLE_REPLICAS * weight, seen
    after = the_hpa()
    assert (after["spec"]["minReplicas"], after["spec"]["maxReplicas"]) == (1, 2)  # restored by the rollback
    assert after["metadata"]["labels"] == {"owner": "platform"}  # their edit stands
    refused = [r for r in server.requests if r.method == "PATCH" and "/horizontalpodautoscalers/" in r.path]
    assert [r.status for r in refused] == [409, 200, 200]  # the stale patch was refused, re-read, then sent


def test_a_stop_during_a_hung_hpa_patch_rolls_back_at_once_and_the_late_patch_is_undone(
    data: Data, api: Cluster
) -> None:
    server = api.server
    server.add(hpa("reviews-canary", min_replicas=1, max_replicas=2))
    clock = FakeClock(data.t0 + 900)
    path = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/reviews-canary"
    stopped_at: list[float] = []
    held: list[bool] = []

    class SlowHPAPatch(Kube):
        """The real client; the API server holds the first HPA patch 2 s, and a stop comes 0.2 s in."""

        def patch_hpa(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            if not held:
                held.append(True)
                server.slow_next(1, 2.0, path_prefix=path)

                def stop() -> None:
                    stopped_at.append(time.monotonic())
                    clock.stop = True

                threading.Timer(0.2, stop).start()
            return super().patch_hpa(namespace, name, ops)

    rollout = make_rollout(data, api, "reviews", clock, steps=(50, 100), kube_type=SlowHPAPatch)
    assert rollout.run() == ROLLED_BACK and rollout.cause == SIGNAL
    time.sleep(2.2)  # anything still held has been served meanwhile
    writes = [r for r in server.requests if r.method == "PATCH" and r.received > stopped_at[0]]
    assert writes[0].path.endswith("/virtualservices/reviews") and writes[0].received - stopped_at[0] < 1.0
    patches = [r for r in server.requests if r.method == "PATCH" and r.path == path]
    assert [json.loads(r.body)[1]["value"] for r in patches] == [2, 1]  # raised (held, landed late), then restored
    h = server.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "reviews-canary")
    assert h is not None and (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) == (1, 2)
    assert weights(vs(server, "reviews")) == {"stable": 100, "canary": 0}


class Crash(BaseException):
    """The process dies here (as on SIGKILL): nothing of the rollout runs after it."""


def test_a_run_that_dies_after_traffic_returned_to_stable_is_finished_by_the_next(data: Data, api: Cluster) -> None:
    server = api.server
    give_back = {"op": "add", "path": "/spec/replicas", "value": CANARY_REPLICAS}

    class DiesOnTheScaleDown(Kube):
        def patch_deployment(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
            if name == "reviews-canary" and give_back in ops:
                raise Crash
            return super().patch_deployment(namespace, name, ops)

    clock = FakeClock(data.t0 + 900)
    with pytest.raises(Crash):
        make_rollout(data, api, "reviews", clock, steps=(50, 100), kube_type=DiesOnTheScaleDown).run()
    left = vs(server, "reviews")
    assert weights(left) == {"stable": 100, "canary": 0}  # traffic is back on the promoted stable...
    assert (record(left)["phase"], record(left)["weight"]) == ("promoting", 0)  # ...but the promotion is not done
    assert replicas(server, "reviews-canary")[0] == STABLE_REPLICAS
    seen: list[int] = []

    def look() -> None:
        seen.append(weights(vs(server, "reviews"))["canary"])

    again = make_rollout(data, api, "reviews", FakeClock(clock.now, observe=look), steps=(50, 100),
                         kube_type=write_watch(look))  # fmt: skip
    assert again.run() == PROMOTED
    assert seen and set(seen) == {0}  # the re-run never sent traffic to the canary again
    assert replicas(server, "reviews-canary")[0] == CANARY_REPLICAS  # given back
    assert record(vs(server, "reviews"))["phase"] == "promoted"
    assert image(server, "reviews-stable") == image(server, "reviews-canary") == NEW_IMAGE


# ---------------------------------------------------------------------------------- exit codes, JSON, Events
@pytest.mark.parametrize(
    ("service", "extra", "code", "outcome", "cause"),
    [
        ("cart", [], 0, "promoted", None),
        ("ratings", ["--failure-limit", "1"], 3, "rolled-back", "analysis"),
        ("orders", ["--prometheus-down"], 1, "rolled-back", "error"),
    ],
)
def test_exit_codes_and_the_json_summary(
    data: Data, api: Cluster, service: str, extra: list[str], code: int, outcome: str, cause: str | None
) -> None:
    url = f"http://rollout:{PLANTED}@127.0.0.1:9" if "--prometheus-down" in extra else data.url
    flags = [f for f in extra if f != "--prometheus-down"]
    with controller_running(api):
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", service,
             "--canary-image", NEW_IMAGE, "--steps", "50,100", "--step-interval", "2s", "--window", "5m",
             "--output", "json", *flags],
            env=cli_env(url, api), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["exit_code"] == code
    assert (summary["outcome"], summary["cause"]) == (outcome, cause)
    assert summary["steps"][0]["weight"] == 50 and summary["steps"][0]["canary_replicas"] == 2
    assert summary["stable_replicas"] == STABLE_REPLICAS
    after = vs(api.server, service)
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == outcome
    assert replicas(api.server, f"{service}-canary")[0] == CANARY_REPLICAS
    events = k8s_events(api.server, service)
    reasons = [e["reason"] for e in events]
    for e in events:  # what `kubectl describe virtualservice` matches them by
        assert e["metadata"]["namespace"] == "shop"
        assert {k: e["involvedObject"][k] for k in ("apiVersion", "kind", "name", "namespace", "uid")} == {
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": service, "namespace": "shop",
            "uid": after["metadata"]["uid"],
        }  # fmt: skip
    # a failing Prometheus's URL carries a password: it is in no Event, and nowhere in the output
    assert PLANTED not in json.dumps(events) and PLANTED not in proc.stdout + proc.stderr
    if code == 0:
        assert [a["verdict"] for a in summary["steps"][0]["analyses"]] == ["pass"]
        assert [s["weight"] for s in summary["steps"]] == [50, 100]
        assert reasons == ["RolloutStarted", "RolloutStep", "CanaryVerdict", "Promoted"]
        assert image(api.server, f"{service}-stable") == NEW_IMAGE
    elif code == 3:
        assert [a["verdict"] for a in summary["steps"][0]["analyses"]] == ["fail"]
        assert summary["rollback"]["cause"] == "analysis"
        assert reasons == ["RolloutStarted", "RolloutStep", "CanaryVerdict", "RolledBack"]
        assert image(api.server, f"{service}-canary") == OLD_IMAGE
    else:
        assert "Prometheus" in summary["reason"] or "did not finish" in summary["reason"]
        assert reasons == ["RolloutStarted", "RolloutStep", "RolloutError", "RolledBack"]


def test_a_crash_rolls_back_and_still_prints_the_json_summary(data: Data, api: Cluster) -> None:
    server = api.server
    with controller_running(api):
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", "cart",
             "--canary-image", NEW_IMAGE, "--steps", "5,50,100", "--step-interval", "2s", "--window", "5m",
             "--ready-timeout", "3s", "--output", "json"],
            env=cli_env(data.url, api), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while weights(vs(server, "cart"))["canary"] != 5:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
            # the API now holds a canary whose status the code cannot read: the next readiness check crashes
            api.controller.stuck.add("cart-canary")
            canary = server.get("apps/v1", "deployments", "shop", "cart-canary")
            assert canary is not None
            canary["status"]["availableReplicas"] = "many"
            server.add(canary)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1, stderr
    summary = json.loads(stdout)
    assert (summary["exit_code"], summary["outcome"], summary["cause"]) == (1, "rolled-back", "error")
    assert summary["reason"].startswith("error: ValueError: ")
    assert stderr.strip().splitlines()[-1].startswith("exporter: could not complete: ValueError: ")
    after = vs(server, "cart")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and "ValueError" in record(after)["reason"]
    assert image(server, "cart-canary") == OLD_IMAGE
    assert [e["reason"] for e in k8s_events(server, "cart")][-2:] == ["RolloutError", "RolledBack"]
