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
from exporter.rollout.engine import ANNOTATION, LEFT, PROMOTED, ROLLED_BACK, Plan, Rollout, RolloutError
from exporter.sink.datadog import DatadogAPI, DatadogSink
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import Phase, Service
from tests.support.canary_mesh import NEW_IMAGE, OLD_IMAGE, equal, istiod, rollout_objects, sparse, worse
from tests.support.prom import PrometheusFactory

STEP = 30.0
INTERVAL = 300.0
DD_KEY = "dd-api-key-rollout-tests-0123456789"


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
    """Plays kube-controller-manager's part: a Deployment whose spec changed is reported rolled out, through
    the status subresource with a resourceVersion guard (so it races with the rollout as the real one does)."""

    def __init__(self, server: FakeKubeAPI, kubeconfig: Path) -> None:
        self.server = server
        self.apps = client.AppsV1Api(api_client(str(kubeconfig)))
        self.stuck: set[str] = set()

    def sync(self) -> None:
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
    waits: int = 0
    polls: int = 0
    stop: bool = False

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
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

    def stopped(self) -> bool:
        return self.stop


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


def record(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(obj["metadata"]["annotations"][ANNOTATION]))


def user_fields(obj: dict[str, Any]) -> Any:
    """Everything in the VirtualService the rollout must never touch."""
    http = [h for h in obj["spec"]["http"] if h.get("name") != "mesh-exporter-canary-header"]
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
    **overrides: Any,
) -> Rollout:
    overrides.setdefault("image", NEW_IMAGE)
    plan = Plan(service=ServiceRef("shop", name), interval_s=INTERVAL, window="5m", **overrides)
    analyzer = analyzer_for(plan, Settings(prometheus_url=data.url))
    kube = Kube(KubeClient(api_client(str(cluster.kubeconfig)), retry=RetryPolicy(sleep=lambda s: None)))
    clock.controller = clock.controller or cluster.controller
    return Rollout(plan, kube, analyzer, clock=clock, waiter=clock, events=events, dry_run=dry_run, out=out)


def snapshots(api: FakeKubeAPI, name: str, clock: FakeClock, count: int = 12) -> list[dict[str, Any]]:
    """The VirtualService as the API holds it during each of the first `count` waits."""
    seen: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        clock.hooks.setdefault(n, lambda: seen.append(vs(api, name)))
    return seen


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
    # during the rollout: 5 → 10 → 25 → 50 %, the header route first, user fields intact
    assert [weights(s)["canary"] for s in seen] == [5, 10, 25, 50]
    for s in seen:
        header = s["spec"]["http"][0]
        assert header["name"] == "mesh-exporter-canary-header"
        assert header["match"] == [{"headers": {"x-canary": {"exact": "true"}}}]
        assert header["route"] == [{"destination": {"host": "reviews", "subset": "canary"}}]
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
        "image": NEW_IMAGE, "previous_image": OLD_IMAGE, "phase": "progressing", "step": 1, "weight": 10,
        "holds": 0, "failures": 0, "reason": "", "stable_previous_image": "",
    }  # fmt: skip

    def image_patches() -> int:
        return sum(
            r.method == "PATCH" and r.status == 200 and "/deployments/" in r.path and not r.path.endswith("/status")
            for r in server.requests
        )

    before = image_patches()
    second = FakeClock(first.now)
    seen = snapshots(server, "reviews", second)
    assert make_rollout(data, api, "reviews", second).run() == PROMOTED
    assert [weights(s)["canary"] for s in seen] == [10, 25, 50]  # from the recorded step, not from 5 %
    assert image_patches() - before == 1  # the canary already had its image: only the promotion's stable patch
    assert image(server, "reviews-stable") == NEW_IMAGE
    assert weights(vs(server, "reviews")) == {"stable": 100, "canary": 0}


def test_restart_finishes_an_interrupted_rollback(data: Data, api: Cluster) -> None:
    server = api.server
    obj = vs(server, "ratings")  # as left by a rollout that died mid-rollback: traffic still at 25 %
    primary = next(h for h in obj["spec"]["http"] if h["name"] == "primary")
    primary["route"][0]["weight"], primary["route"][1]["weight"] = 75, 25
    state = {"image": NEW_IMAGE, "previous_image": OLD_IMAGE, "phase": "rolling-back", "step": 2, "weight": 25,
             "holds": 0, "failures": 2, "reason": "failed 2 analyses in a row"}  # fmt: skip
    obj["metadata"]["annotations"] = {ANNOTATION: json.dumps(state)}
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
        "# canary image", "# step 1/5: canary 5 %, stable 95 %", "# step 2/5: canary 10 %, stable 90 %",
        "# step 3/5: canary 25 %, stable 75 %", "# step 4/5: canary 50 %, stable 50 %",
        "# promotion: canary 100 %", "# promotion: stable gets the canary image",
        "# promotion: stable 100 % (now on the new image)",
    ]  # fmt: skip
    assert all(p[0]["path"] == "/metadata/resourceVersion" for p in patches)
    step_weights = [[op["value"] for op in p if op["path"].endswith("/weight")] for p in patches[1:6]]
    assert step_weights == [[95, 5], [90, 10], [75, 25], [50, 50], [0, 100]]
    assert patches[0][1] == {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": NEW_IMAGE}


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


def test_sigterm_mid_rollout_rolls_back_within_a_second(data: Data, api: Cluster) -> None:
    server = api.server
    intake = FakeIntake(api_key=DD_KEY).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    env |= {"EXPORTER_PROMETHEUS_URL": data.url, "KUBECONFIG": str(api.kubeconfig), "DD_API_KEY": DD_KEY,
            "EXPORTER_DATADOG_URL": intake.url, "EXPORTER_TAGS": "env:test"}  # fmt: skip
    done = threading.Event()

    def control() -> None:  # the subprocess waits for its canary to roll out, as in a cluster
        while not done.wait(0.02):
            api.controller.sync()

    threading.Thread(target=control, daemon=True).start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", "orders",
         "--canary-image", NEW_IMAGE, "--step-interval", "1h"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while weights(vs(server, "orders"))["canary"] != 5:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        assert image(server, "orders-canary") == NEW_IMAGE
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while weights(vs(server, "orders"))["canary"] != 0:
            assert time.monotonic() - signalled < 1.0, "no rollback patch within a second of SIGTERM"
            time.sleep(0.005)
        _, stderr = proc.communicate(timeout=20)
        events = intake.events()
    finally:
        done.set()
        intake.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    after = vs(server, "orders")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["phase"] == "rolled-back" and record(after)["reason"] == "interrupted (SIGTERM)"
    assert image(server, "orders-canary") == OLD_IMAGE
    assert "rolled-back" in stderr
    assert DD_KEY not in stderr
    assert [e["title"] for e in events] == [
        "Rollout of shop/orders started", "Rollout of shop/orders: canary at 5 %", "Rollout of shop/orders rolled back",
    ]  # fmt: skip
    assert all({"service:orders", "kube_namespace:shop", "env:test"} <= set(e["tags"]) for e in events)


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
    assert make_rollout(data, api, "reviews", clock).run() == ROLLED_BACK
    assert [weights(s)["canary"] for s in seen] == [5, 10, 25, 50]
    after = vs(server, "reviews")
    assert weights(after) == {"stable": 100, "canary": 0}
    assert record(after)["reason"] == "interrupted (SIGTERM)"
    assert image(server, "reviews-stable") == image(server, "reviews-canary") == OLD_IMAGE


def test_bad_flags_exit_2_with_one_line_naming_the_flag(data: Data, api: Cluster) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
    env |= {"EXPORTER_PROMETHEUS_URL": data.url, "KUBECONFIG": str(api.kubeconfig)}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "rollout", "--namespace", "shop", "--service", "reviews",
         "--canary-image", NEW_IMAGE, "--steps", "5,50"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "exporter: config error: --steps: the last step must be 100 (promotion)"
    ]
    assert weights(vs(api.server, "reviews")) == {"stable": 100, "canary": 0}


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

    def someone_edits() -> None:
        obj = vs(server, "cart")
        obj["metadata"]["labels"]["edited-by"] = "bob"
        server.add(obj)

    clock = FakeClock(data.t0 + 900, hooks={1: someone_edits})
    with pytest.raises(RolloutError, match="409 Conflict"):
        make_rollout(data, api, "cart", clock, on_error="leave").run()
    after = vs(server, "cart")
    assert after["metadata"]["labels"]["edited-by"] == "bob"
    assert weights(after) == {"stable": 95, "canary": 5}  # left where it was
    assert record(after)["phase"] == "progressing" and record(after)["step"] == 0
    assert image(server, "cart-canary") == NEW_IMAGE
