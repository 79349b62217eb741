"""The rollout state machine over exporter/kube/istio.py: preflight, canary capacity, steps judged by the
analysis, holds, rollback and promotion, recorded in the VirtualService so a restart resumes.

Every VirtualService write is a JSON patch guarded by the resourceVersion of our own previous write; on a
409 the object is re-read: an edit of anything but our part (another team's routes, another rollout's) is
built upon, an edit of our part is reported, never overwritten. Progress lives in the
`<service>.<namespace>.rollout.mesh-exporter.io/state` annotation (one per service: services sharing a
VirtualService never touch each other's record or header route), written in the same patch as the weights.
A stop (SIGTERM/SIGINT) preempts everything: the analysis and every read made while waiting run in a worker
thread that the main thread abandons at once, so the first rollback write follows the signal whatever an
upstream is doing.
Datadog events and core/v1 Kubernetes Events go out from background threads, after the traffic writes.
The clock and the wait are injected: tests drive the real code.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, replace
from functools import partial
from typing import Any, Protocol, TextIO, TypeVar

import structlog

from exporter.canary.analysis import FAIL, PASS, Verdict
from exporter.errors import ExporterError, KubeError
from exporter.kube.client import JSON
from exporter.kube.istio import ISTIO_GROUP, ISTIO_VERSION, Kube, Op, apply_patch, pointer, rv_guard
from exporter.logs import redactor
from exporter.rollout.plan import (
    ACTIVE_PHASES,
    Plan,
    RolloutError,
    State,
    Targets,
    canary_replicas,
    header_gateways,
    hpa_for,
    legacy_record,
    managed_routes,
    our_part,
    partial_hosts,
    resolve_host,
    rolled_out,
    routes_of_host,
    vs_ops,
)
from exporter.sink.datadog import DatadogSink, tags_for
from exporter.timefmt import utc_text

log = structlog.get_logger("exporter.rollout.engine")

VIRTUAL_SERVICES, DESTINATION_RULES = "virtualservices", "destinationrules"
ISTIO_SUPPORTED = ((1, 22), (1, 31))
"""networking.istio.io/v1 is served from Istio 1.22; newer minors than the last tested get a warning."""

PROMOTED, ROLLED_BACK, LEFT = "promoted", "rolled-back", "left"
ANALYSIS, ERROR, SIGNAL = "analysis", "error", "signal"
"""Why a rollout did not promote: the canary failed its analysis, something failed, or it was told to stop."""
REBASES = 5
"""Forward writes re-applied on a VirtualService that others changed meanwhile (our part untouched)."""
READ_DEADLINE_S = 30.0
"""A read made while waiting (readiness polls) is abandoned after this long, or at once on a stop."""
_K8S_REASONS = {
    "rollout started": "RolloutStarted",
    "rollout resumed": "RolloutResumed",
    "rollout step": "RolloutStep",
    "canary verdict": "CanaryVerdict",
    "rollout rolled back": "RolledBack",
    "rollout promoted": "Promoted",
    "rollout error": "RolloutError",
    "rollout interrupted": "RolloutStopped",
}

Analyzer = Callable[[float, Targets], Verdict]
"""The analysis of the canary over the window ending at the given unix time."""
T = TypeVar("T")


class Waiter(Protocol):
    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when a stop was requested (then at once)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` whether or not a stop was requested (a rollback's bounded waits)."""
        ...

    def stopped(self) -> bool: ...

    def stop_reason(self) -> str: ...


class SignalWaiter:
    """The real waiter: sleeps in short slices until a signal handler calls `request_stop()`.

    A plain flag, not a threading.Event: a handler that takes a lock the interrupted main thread may
    hold (Event.set inside Event.wait) can deadlock.
    """

    def __init__(self, *, slice_s: float = 0.05) -> None:
        self.slice_s = slice_s
        self._stop = ""

    def request_stop(self, reason: str) -> None:
        self._stop = self._stop or reason

    def wait(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not self._stop and (left := end - time.monotonic()) > 0:
            time.sleep(min(self.slice_s, left))
        return bool(self._stop)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def stopped(self) -> bool:
        return bool(self._stop)

    def stop_reason(self) -> str:
        return self._stop


class Stopped(Exception):
    """Raised inside the rollout when a stop was requested; turned into a rollback or a stop."""


# ------------------------------------------------------------------------------------------------ run
class Rollout:
    """One rollout of `plan.image`; `run()` returns PROMOTED, ROLLED_BACK or LEFT (stopped for a resume), or
    raises the error that stopped it. `cause` says why it did not promote; `summary()` is the JSON for CI."""

    def __init__(
        self,
        plan: Plan,
        kube: Kube,
        analyzer: Analyzer,
        *,
        clock: Callable[[], float] = time.time,
        waiter: Waiter | None = None,
        events: DatadogSink | None = None,
        kube_events: bool = True,
        dry_run: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.plan = plan
        self.kube = kube
        self.analyzer = analyzer
        self.clock = clock
        self.waiter: Waiter = waiter or SignalWaiter()
        self.events = events
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.ns = plan.service.namespace
        self.vs_ns = plan.vs_namespace
        self.vs_where = f"VirtualService {self.vs_ns}/{plan.vs_name}"
        self.vs: JSON = {}
        self.targets: Targets | None = None
        self.state = State(image=plan.image, previous_image="")
        self.outcome, self.cause, self.reason = "", "", ""
        self.steps: list[JSON] = []
        self.rollback: JSON | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dd-events") if events else None
        self._k8s_pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="k8s-events") if kube_events and not dry_run else None
        )
        self._pending: list[Future[None]] = []
        self._abandoned: list[threading.Thread] = []
        self._rolling_back = False
        self._finishing = False
        self._log = log.bind(service=str(plan.service), canary_image=plan.image, dry_run=dry_run)

    # ---- preflight ------------------------------------------------------------------------------
    def preflight(self) -> Targets:
        plan, ns = self.plan, self.ns
        kubernetes = self.kube.server_version()
        istio = self.kube.istio_version(plan.istio_root_namespace)
        self._log.info("rollout preflight", kubernetes_version=kubernetes, istio_version=istio or "unknown")
        if istio is None:
            self._log.warning("istio version unknown", root_namespace=plan.istio_root_namespace)
        else:
            minor = tuple(int(x) for x in istio.split(".")[:2])
            low, high = ISTIO_SUPPORTED
            if not low <= minor <= high:
                self._log.warning(
                    "istio version outside the supported range",
                    istio_version=istio,
                    supported=f"{low[0]}.{low[1]}-{high[0]}.{high[1]}",
                )
        self.vs = self._must(lambda: self.kube.get_istio(VIRTUAL_SERVICES, self.vs_ns, plan.vs_name), self.vs_where)
        if legacy := legacy_record(self.vs):
            raise RolloutError(
                f"{self.vs_where} holds the {legacy} of a rollout by an earlier mesh-exporter; finish or roll it "
                "back with that version, or remove them (kubectl edit), then run this again"
            )
        dr = self._must(
            lambda: self.kube.get_istio(DESTINATION_RULES, ns, plan.dr_name), f"DestinationRule {ns}/{plan.dr_name}"
        )
        self._check_destination_rule(dr)
        subsets = {s.get("name"): s.get("labels") or {} for s in dr.get("spec", {}).get("subsets") or []}
        routes = managed_routes(self.vs, plan)
        for route, host in partial_hosts(self.vs, plan):
            self._log.warning(
                "route host is not the service's for istio",
                route=route,
                host=host,
                service_host=plan.host,
                why="Istio completes a name without a dot in the VirtualService's namespace and takes any other "
                "as written: this host is another and is left alone",
            )
        if not routes_of_host(self.vs, plan):
            raise RolloutError(
                f"{self.vs_where} has no route to {plan.host}, the host of {plan.service}; "
                "name the VirtualService that routes it with --virtual-service"
            )
        if plan.header is not None:
            header_gateways(self.vs, plan)  # refuses a header route that could never match
        if not routes:
            raise RolloutError(
                f"no HTTP route of {self.vs_where} to {plan.host} splits traffic between subsets "
                f"{plan.stable_subset!r} and {plan.canary_subset!r}; give it one with two destinations, e.g. "
                f"route: [{{destination: {{host: {plan.service.name}, subset: {plan.stable_subset}}}, weight: 100}}, "
                f"{{destination: {{host: {plan.service.name}, subset: {plan.canary_subset}}}, weight: 0}}]"
            )
        stable_label, canary_label = subsets[plan.stable_subset], subsets[plan.canary_subset]
        stable_dep = plan.stable_deployment or f"{plan.service.name}-{stable_label[plan.subset_label]}"
        canary_dep = plan.canary_deployment or f"{plan.service.name}-{canary_label[plan.subset_label]}"
        stable_container = self._container(stable_dep, stable_label, "--stable-deployment")
        canary_container = self._container(canary_dep, canary_label, "--canary-deployment")
        by_workload = plan.version_label == "destination_workload"
        self.targets = Targets(
            canary_deployment=canary_dep,
            stable_deployment=stable_dep,
            canary_container=canary_container,
            stable_container=stable_container,
            canary_version=canary_dep if by_workload else str(canary_label[plan.subset_label]),
            stable_version=stable_dep if by_workload else str(stable_label[plan.subset_label]),
            host=plan.host,
        )
        hpas = self.kube.list_hpas(ns)
        for dep in (stable_dep, canary_dep):
            hpa = hpa_for(hpas, dep)
            if hpa is not None:
                spec = hpa.get("spec", {})
                self._log.info(
                    "horizontal pod autoscaler manages deployment",
                    deployment=dep,
                    hpa=hpa["metadata"]["name"],
                    min_replicas=spec.get("minReplicas", 1),
                    max_replicas=spec.get("maxReplicas"),
                    action="its minReplicas is raised for the canary's capacity, then restored"
                    if dep == canary_dep
                    else "stable's replicas when the rollout starts are the capacity reference",
                )
        self._log.info("rollout targets", **asdict(self.targets), routes=[r[0] for r in routes])
        return self.targets

    def _check_destination_rule(self, dr: JSON) -> None:
        plan, ns = self.plan, self.ns
        dr_host = resolve_host(str(dr.get("spec", {}).get("host", "")), ns, plan.cluster_domain)
        if dr_host != plan.host:
            raise RolloutError(
                f"DestinationRule {ns}/{plan.dr_name} is for host {dr_host}, not {plan.host}; "
                "name the service's own with --destination-rule"
            )
        subsets = {s.get("name"): s.get("labels") or {} for s in dr.get("spec", {}).get("subsets") or []}
        for name in (plan.stable_subset, plan.canary_subset):
            if name not in subsets:
                raise RolloutError(
                    f"DestinationRule {ns}/{plan.dr_name} has no subset {name!r} (has {sorted(subsets)})"
                )
            if plan.subset_label not in subsets[name]:
                raise RolloutError(
                    f"subset {name!r} of DestinationRule {ns}/{plan.dr_name} has no label {plan.subset_label!r}"
                )

    def _must(self, fetch: Callable[[], JSON], what: str) -> JSON:
        try:
            return fetch()
        except KubeError as e:
            if e.status == 404:
                raise RolloutError(f"{what} not found") from None
            raise

    def _container(self, name: str, labels: dict[str, str], flag: str) -> int:
        dep = self._must(lambda: self.kube.get_deployment(self.ns, name), f"Deployment {self.ns}/{name} (set {flag})")
        template = dep.get("spec", {}).get("template", {})
        pod_labels = template.get("metadata", {}).get("labels") or {}
        if any(pod_labels.get(k) != v for k, v in labels.items()):
            raise RolloutError(f"Deployment {self.ns}/{name}'s pods do not carry the subset's labels {labels}")
        containers = template.get("spec", {}).get("containers") or []
        names = [c.get("name") for c in containers]
        wanted = self.plan.container or (names[0] if len(names) == 1 else self.plan.service.name)
        if wanted not in names:
            raise RolloutError(
                f"Deployment {self.ns}/{name} has no container {wanted!r} (has {names}); set --container"
            )
        return names.index(wanted)

    # ---- preemption -------------------------------------------------------------------------------
    def _preemptible(self, fn: Callable[[], T], *, deadline_s: float, what: str, settle: bool = False) -> T:
        """`fn()` in a worker thread; Stopped at once on a stop, RolloutError past the deadline. An abandoned
        call ends with its own client timeout (its thread is a daemon: it never holds the process); with
        `settle`, a rollback lets it end before restoring anything (see `_settle`)."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["value"] = fn()
            except BaseException as e:  # handed to the main thread
                box["error"] = e
            finally:
                done.set()

        if self.waiter.stopped():
            raise Stopped
        worker = threading.Thread(target=work, name=f"rollout-{what}", daemon=True)
        worker.start()
        end = time.monotonic() + deadline_s
        while not done.wait(0.02):
            if settle and (self.waiter.stopped() or time.monotonic() >= end):
                self._abandoned.append(worker)
            if self.waiter.stopped():
                self._log.info("abandoned on stop", call=what)
                raise Stopped
            if time.monotonic() >= end:
                raise RolloutError(f"{what} did not finish within {deadline_s:g}s")
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """A Kubernetes call on the way forward: abandoned on a stop like the analysis. A rollback's own calls
        run directly: nothing interrupts them."""
        if self._rolling_back or self._finishing or self.dry_run:
            return fn()
        return self._preemptible(fn, deadline_s=READ_DEADLINE_S, what=what, settle=True)

    def _settle(self) -> None:
        """Once traffic is on stable, let the Kubernetes calls abandoned on the way forward end (bounded by
        their deadline) before images and replicas are restored: a write still in flight (an image, the
        canary's replicas or its HPA bounds) may land late, and what it changed must be seen and given back,
        not restored over before it lands. (A late VirtualService write is refused: the rollback's own write
        moved the resourceVersion it is guarded by.)"""
        end = time.monotonic() + READ_DEADLINE_S
        for worker in self._abandoned:
            worker.join(max(0.0, end - time.monotonic()))

    def _wait(self, seconds: float) -> None:
        if self.waiter.wait(seconds):
            raise Stopped

    # ---- writes ---------------------------------------------------------------------------------
    def _write_vs(self, *, canary_weight: int, header: bool, why: str) -> None:
        """The patch on our last copy of the VirtualService; on a 409, re-read it: when our part is as we
        last wrote it (someone changed only other routes), the patch is rebuilt on theirs and sent again
        (up to REBASES times); a change to our part is a conflict (RolloutError), never overwritten."""
        plan = self.plan
        for attempt in range(REBASES + 1):
            ops = vs_ops(self.vs, plan, canary_weight=canary_weight, header=header, state=self.state)
            patch = [rv_guard(self.vs), *ops]
            if self.dry_run:
                self._print(self.vs_where, why, patch)
                self.vs = apply_patch(self.vs, ops)
                return
            send = partial(self.kube.patch_istio, VIRTUAL_SERVICES, self.vs_ns, plan.vs_name, patch)
            try:
                self.vs = self._call(send, f"PATCH {plan.vs_name}")
                return
            except KubeError as e:
                if e.status != 409:
                    raise
                conflict = f"{self.vs_where} was changed by someone else since our last write (409 Conflict)"
            fresh = self._call(
                partial(self.kube.get_istio, VIRTUAL_SERVICES, self.vs_ns, plan.vs_name), f"GET {plan.vs_name}"
            )
            if our_part(fresh, plan) != our_part(self.vs, plan):
                raise RolloutError(f"{conflict}, in the routes or record of {plan.service}; not overwritten")
            if attempt == REBASES:
                raise RolloutError(f"{conflict} {REBASES + 1} times in a row; gave up")
            self._log.info("virtual service changed elsewhere; ours untouched, writing again", why=why)
            self.vs = fresh

    def _patch_deployment(self, deployment: str, why: str, change: Callable[[JSON], list[Op] | None]) -> JSON:
        get, send = self.kube.get_deployment, self.kube.patch_deployment
        return self._patch_guarded("Deployment", deployment, get, send, why, change)

    def _patch_guarded(
        self,
        kind: str,
        name: str,
        get: Callable[[str, str], JSON],
        send: Callable[[str, str, list[Op]], JSON],
        why: str,
        change: Callable[[JSON], list[Op] | None],
    ) -> JSON:
        """Re-read, build ops with `change` (None: nothing to do), send them guarded by resourceVersion; a 409
        (a controller writes status often) is re-read and tried again, up to three times."""
        for attempt in range(3):
            obj = self._call(partial(get, self.ns, name), f"GET {name}")
            ops = change(obj)
            if not ops:
                return obj
            patch = [rv_guard(obj), *ops]
            if self.dry_run:
                self._print(f"{kind} {self.ns}/{name}", why, patch)
                return obj
            try:
                return self._call(partial(send, self.ns, name, patch), f"PATCH {name}")
            except KubeError as e:
                if e.status != 409 or attempt == 2:
                    raise
                self._log.info("changed meanwhile; re-reading", kind=kind, name=name)
        raise AssertionError("unreachable")

    def _set_image(self, deployment: str, container: int, image: str, why: str, *, expect: str = "") -> str:
        """Set the container's image; returns the image it had. When the image is no longer `expect` (someone
        else set one), that is reported, not overwritten."""
        seen: list[str] = []

        def change(dep: JSON) -> list[Op] | None:
            previous = str(dep["spec"]["template"]["spec"]["containers"][container].get("image", ""))
            wanted = expect or (seen[0] if seen else "")  # after a 409: the image must still be the one we saw
            seen.append(previous)
            if previous == image:
                return None
            if wanted and previous != wanted:
                raise RolloutError(
                    f"Deployment {self.ns}/{deployment} runs {previous}, not {wanted}: someone else changed its image; "
                    "not overwritten"
                )
            path = pointer("spec", "template", "spec", "containers", container, "image")
            return [{"op": "replace", "path": path, "value": image}]

        self._patch_deployment(deployment, why, change)
        if seen[-1] != image:
            self._log.info("deployment image set", deployment=deployment, image=image, previous=seen[-1])
        return seen[-1]

    def _scale_canary(self, replicas: int, why: str) -> None:
        """The canary's spec.replicas to `replicas`, or, under an HPA, its minReplicas (and maxReplicas if
        below) raised to `replicas`; `replicas` 0 gives back what the rollout found."""
        assert self.targets is not None
        state, name = self.state, self.targets.canary_deployment
        if state.canary_hpa:
            low = replicas or state.canary_hpa_min
            high = max(low, state.canary_hpa_max) if replicas else state.canary_hpa_max

            def bounds(hpa: JSON) -> list[Op] | None:
                spec = hpa.get("spec", {})
                if (spec.get("minReplicas", 1), spec.get("maxReplicas")) == (low, high):
                    return None
                return [
                    {"op": "add", "path": "/spec/minReplicas", "value": low},
                    {"op": "replace", "path": "/spec/maxReplicas", "value": high},
                ]

            send = self.kube.patch_hpa
            self._patch_guarded("HorizontalPodAutoscaler", state.canary_hpa, self._get_hpa, send, why, bounds)
            self._log.info("canary autoscaler set", hpa=state.canary_hpa, min_replicas=low, max_replicas=high, why=why)
            return
        target = replicas or state.canary_replicas

        def change(dep: JSON) -> list[Op] | None:
            if int(dep["spec"].get("replicas", 1)) == target:
                return None
            return [{"op": "add", "path": "/spec/replicas", "value": target}]

        self._patch_deployment(name, why, change)
        self._log.info("canary scaled", deployment=name, replicas=target, why=why)

    def _get_hpa(self, namespace: str, name: str) -> JSON:
        """An autoscaler, read through the list the rollout is already allowed (RBAC: list and patch only)."""
        found = next((h for h in self.kube.list_hpas(namespace) if h["metadata"]["name"] == name), None)
        if found is None:
            raise RolloutError(f"HorizontalPodAutoscaler {namespace}/{name} not found (it managed the canary)")
        return found

    def _ensure_capacity(self, weight: int) -> int:
        """Scale the canary to carry `weight` % before it gets it, and wait until that many are available."""
        assert self.targets is not None
        state = self.state
        need = canary_replicas(state.stable_replicas, weight, state.canary_replicas)
        name = self.targets.canary_deployment
        dep = self._call(lambda: self.kube.get_deployment(self.ns, name), f"GET {name}")
        has = int(dep["spec"].get("replicas", 1))
        if has < need or (state.canary_hpa and need > state.canary_hpa_min):
            self._scale_canary(need, f"capacity for {weight} %: {need} replicas (stable had {state.stable_replicas})")
        self._wait_ready(self.targets.canary_deployment, replicas=need)
        return need

    # ---- readiness --------------------------------------------------------------------------------
    def _ready(self, deployment: str, *, replicas: int, image: str, container: int) -> tuple[bool, str]:
        dep = self._call(lambda: self.kube.get_deployment(self.ns, deployment), f"GET {deployment}")
        return rolled_out(dep, replicas=replicas, image=image, container=container)

    def _wait_ready(self, deployment: str, *, replicas: int = 0, image: str = "", container: int = 0) -> None:
        """Wait until the Deployment has rolled out (as `kubectl rollout status` judges it) with at least
        `replicas` available and, when given, `image` in its spec; a stop interrupts it."""
        if self.dry_run or self.plan.ready_timeout_s <= 0:
            return
        deadline = self.clock() + self.plan.ready_timeout_s
        while True:
            ready, detail = self._ready(deployment, replicas=replicas, image=image, container=container)
            if ready:
                self._log.info("deployment ready", deployment=deployment, replicas=replicas or None)
                return
            if self.clock() >= deadline:
                raise RolloutError(
                    f"Deployment {self.ns}/{deployment} not rolled out after {self.plan.ready_timeout_s:g}s: {detail}"
                )
            self._wait(self.plan.ready_poll_s)

    def _wait_restored(self, deployment: str, image: str, container: int) -> bool:
        """A rollback's bounded wait for the restored image (not interrupted by the stop that caused it)."""
        if self.dry_run or self.plan.ready_timeout_s <= 0:
            return False
        deadline = self.clock() + self.plan.ready_timeout_s
        detail = ""
        while self.clock() < deadline:
            try:
                ready, detail = rolled_out(
                    self.kube.get_deployment(self.ns, deployment), replicas=0, image=image, container=container
                )
            except Exception as e:  # whatever a read returns, the rollback goes on to its end
                ready, detail = False, _describe(e)
            if ready:
                self._log.info("rollback: restored image ready", deployment=deployment, image=image)
                return True
            self.waiter.sleep(self.plan.ready_poll_s)
        self._log.warning(
            "rollback: restored image not ready in time",
            deployment=deployment,
            image=image,
            timeout_s=self.plan.ready_timeout_s,
            detail=detail,
        )
        return False

    # ---- reporting --------------------------------------------------------------------------------
    def _print(self, target: str, why: str, ops: list[Op]) -> None:
        lines = ",\n".join(f"  {json.dumps(op, ensure_ascii=False)}" for op in ops)
        self.out.write(f"# {why}\nPATCH {target} (application/json-patch+json)\n[\n{lines}\n]\n\n")

    def _notify(self, event: str, *, title: str, alert: str = "info", **fields: Any) -> None:
        level = {"error": "error", "warning": "warning"}.get(alert, "info")
        getattr(self._log, level)(event, **fields)
        if self.dry_run:
            return
        # error texts may quote a URL or a header: what leaves the process passes the process-wide redactor
        title, text = redactor.scrub(title), redactor.scrub(", ".join(f"{k}={v}" for k, v in fields.items()))
        if self._k8s_pool is not None and self.vs:
            body = self._k8s_event(event, title, text, warning=alert in ("error", "warning"))
            self._pending.append(self._k8s_pool.submit(self._send_k8s_event, event, body))
        if self._pool is None or self.events is None:
            return
        tags = (
            *tags_for(namespace=self.plan.service.namespace, service=self.plan.service.name, extra=self.plan.tags),
            "source:mesh-exporter",
            f"rollout_event:{event.replace(' ', '_')}",
        )
        sink = self.events

        def send() -> None:
            try:
                sink.event(title=title, text=text, tags=tags, alert_type=alert)
            except ExporterError as e:
                self._log.warning("datadog event not sent", event=event, error=str(e))

        self._pending.append(self._pool.submit(send))

    def _k8s_event(self, event: str, title: str, text: str, *, warning: bool) -> JSON:
        """A core/v1 Event about the VirtualService, as `kubectl describe virtualservice` lists them."""
        meta = self.vs.get("metadata", {})
        now = utc_text(self.clock())
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.plan.vs_name}.", "namespace": self.vs_ns},
            "involvedObject": {
                "apiVersion": f"{ISTIO_GROUP}/{ISTIO_VERSION}",
                "kind": "VirtualService",
                "namespace": self.vs_ns,
                "name": self.plan.vs_name,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": _K8S_REASONS.get(event, "Rollout"),
            "message": f"{title}: {text}"[:1024] if text else title,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "mesh-exporter-rollout"},
            "reportingComponent": "mesh-exporter.io/rollout",
            "reportingInstance": socket.gethostname()[:128],
            "action": "Rollout",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    def _send_k8s_event(self, event: str, body: JSON) -> None:
        try:
            self.kube.create_event(self.vs_ns, body)
        except ExporterError as e:
            self._log.warning("kubernetes event not recorded", event=event, error=str(e))

    def summary(self) -> JSON:
        """What happened, step by step, for CI (`--output json`)."""
        return {
            "namespace": self.plan.service.namespace,
            "service": self.plan.service.name,
            "virtual_service": f"{self.vs_ns}/{self.plan.vs_name}",
            "image": self.plan.image,
            "previous_image": self.state.previous_image,
            "outcome": self.outcome or "error",
            "cause": self.cause or None,
            "reason": self.reason or None,
            "dry_run": self.dry_run,
            "stable_replicas": self.state.stable_replicas or None,
            "steps": self.steps,
            "rollback": self.rollback,
        }

    # ---- the rollout ----------------------------------------------------------------------------
    def run(self) -> str:
        try:
            self.outcome = self._run()
            return self.outcome
        except Exception as e:
            self.cause, self.reason = self.cause or ERROR, self.reason or _describe(e)
            self.outcome = self.outcome or (ROLLED_BACK if self.state.phase == "rolled-back" else "error")
            raise
        finally:
            self._drain()

    def _drain(self, timeout_s: float = 10.0) -> None:
        """Let the background events go out, bounded: a hung Datadog or API never holds the exit."""
        wait_futures(self._pending, timeout=timeout_s)
        for pool in (self._pool, self._k8s_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> str:
        plan = self.plan
        targets = self.preflight()
        recorded = State.recorded(self.vs, plan)
        if recorded and recorded.phase in ACTIVE_PHASES:
            if recorded.phase == "rolling-back":
                self._log.info("rollout resumed", phase=recorded.phase, step=recorded.step)
                self.state = recorded
                return self._rollback(recorded.reason or "finishing an interrupted rollback", None, cause=ERROR)
            if recorded.image != plan.image:
                raise RolloutError(
                    f"a rollout of {recorded.image} is in progress on {plan.service} (step {recorded.step + 1}, "
                    f"{recorded.weight} %); run it again with --canary-image {recorded.image} to resume it"
                )
            self.state = recorded
            self._notify(
                "rollout resumed",
                title=f"Rollout of {plan.service} resumed",
                step=recorded.step + 1,
                weight=recorded.weight,
                phase=recorded.phase,
            )
        else:
            self.state = self._initial_state(targets)
            self._notify(
                "rollout started",
                title=f"Rollout of {plan.service} started",
                steps=list(plan.steps),
                previous_image=self.state.previous_image,
                stable_replicas=self.state.stable_replicas,
            )
        try:
            return self._progress()
        except Stopped:
            return self._interrupted()
        except Exception as e:  # an upstream failure, a conflict, or a bug: traffic goes back all the same
            error = _describe(e)
            if self.waiter.stopped() and not self._rolling_back:  # e.g. a write cut short by the signal
                self._log.warning("error after the stop request", error=error)
                return self._interrupted()
            self._notify(
                "rollout error",
                title=f"Rollout of {plan.service} failed",
                alert="error",
                error=error,
                step=self.state.step + 1,
            )
            self.cause, self.reason = ERROR, error
            if plan.on_error == "rollback" and not self._finishing and not self.dry_run:
                self._rollback(f"error: {error}", None, cause=ERROR)
            raise

    def _initial_state(self, targets: Targets) -> State:
        canary = self.kube.get_deployment(self.ns, targets.canary_deployment)
        stable = self.kube.get_deployment(self.ns, targets.stable_deployment)
        previous = str(canary["spec"]["template"]["spec"]["containers"][targets.canary_container].get("image", ""))
        hpa = hpa_for(self.kube.list_hpas(self.ns), targets.canary_deployment)
        spec = (hpa or {}).get("spec", {})
        return State(
            image=self.plan.image,
            previous_image=previous,
            host=self.plan.host,
            stable_replicas=int(stable["spec"].get("replicas", 1)),
            canary_replicas=int(canary["spec"].get("replicas", 1)),
            canary_hpa=(hpa or {}).get("metadata", {}).get("name", ""),
            canary_hpa_min=int(spec.get("minReplicas", 1)) if hpa else 0,
            canary_hpa_max=int(spec.get("maxReplicas", 1)) if hpa else 0,
        )

    def _current_image(self, deployment: str, container: int) -> str:
        dep = self._call(lambda: self.kube.get_deployment(self.ns, deployment), f"GET {deployment}")
        return str(dep["spec"]["template"]["spec"]["containers"][container].get("image", ""))

    def _progress(self) -> str:
        plan = self.plan
        assert self.targets is not None
        if self.waiter.stopped():
            raise Stopped
        if self.state.phase == "promoting":
            return self._promote()
        expect = "" if self.state.step or self.state.weight else self.state.previous_image
        targets = self.targets
        self._set_image(targets.canary_deployment, targets.canary_container, plan.image, "canary image", expect=expect)
        self._wait_ready(targets.canary_deployment, image=plan.image, container=targets.canary_container)
        for index in range(self.state.step, len(plan.steps)):
            weight = plan.steps[index]
            if weight == 100:
                break
            replicas = self._ensure_capacity(weight)
            if index != self.state.step or self.state.weight != weight:
                self.state = replace(self.state, step=index, weight=weight, holds=0, failures=0)
            why = f"step {index + 1}/{len(plan.steps)}: canary {weight} %, stable {100 - weight} %"
            self._write_vs(canary_weight=weight, header=plan.header is not None, why=why)
            self.steps.append({"step": index + 1, "weight": weight, "canary_replicas": replicas, "analyses": []})
            self._notify(
                "rollout step",
                title=f"Rollout of {plan.service}: canary at {weight} %",
                step=index + 1,
                weight=weight,
                canary_replicas=replicas,
            )
            if self.dry_run:
                continue
            outcome = self._judge()
            if outcome is not None:
                return outcome
        return self._promote()

    def _analyse(self) -> tuple[Verdict, float]:
        assert self.targets is not None
        targets, at = self.targets, self.clock()
        deadline = self.plan.analysis_deadline_s
        verdict = self._preemptible(lambda: self.analyzer(at, targets), deadline_s=deadline, what="analysis")
        return verdict, time.monotonic()

    def _judge(self) -> str | None:
        """Wait and analyse until the step passes (None), or roll back (the outcome); Stopped on a stop."""
        plan, state = self.plan, self.state
        while True:
            self._wait(plan.interval_s)
            verdict, decided = self._analyse()
            where = {"verdict": verdict.result, "step": state.step + 1, "weight": state.weight}
            figures = {
                "canary_requests": verdict.canary.requests,
                "stable_requests": verdict.stable.requests,
                "canary_success_pct": verdict.canary.success_rate_pct,
                "stable_success_pct": verdict.stable.success_rate_pct,
                "canary_p99_ms": verdict.canary.p99_ms,
                "stable_p99_ms": verdict.stable.p99_ms,
                "reasons": list(verdict.reasons),
            }
            if self.steps:
                self.steps[-1]["analyses"].append({"verdict": verdict.result, **figures})
            if verdict.result == PASS:
                state.failures = 0
                title = f"Canary of {plan.service} passed at {state.weight} %"
                self._notify("canary verdict", title=title, alert="success", **where, **figures)
                return None
            if verdict.result == FAIL:
                state.failures += 1
                give_up = state.failures >= plan.failure_limit
                reason = f"failed {state.failures} analyses in a row: " + "; ".join(verdict.reasons)
            else:
                state.holds += 1
                give_up = state.holds > plan.hold_limit
                reason = f"inconclusive {state.holds} times at {state.weight} %: " + "; ".join(verdict.reasons)
            if give_up:  # the verdict's events are queued (not sent) before the rollback: they come first
                title = f"Canary of {plan.service}: {verdict.result}, rolling back"
                self._notify("canary verdict", title=title, alert="error", **where, **figures)
                return self._rollback(reason, decided, cause=ANALYSIS)
            self._write_vs(canary_weight=state.weight, header=plan.header is not None, why="record the verdict")
            title = f"Canary of {plan.service}: {verdict.result} at {state.weight} %, holding the step"
            self._notify(
                "canary verdict",
                title=title,
                alert="warning",
                **where,
                holds=state.holds,
                failures=state.failures,
                **figures,
            )

    def _interrupted(self) -> str:
        reason = f"interrupted ({self.waiter.stop_reason() or 'stop requested'})"
        if self.plan.on_sigterm == "rollback":
            return self._rollback(reason, time.monotonic(), cause=SIGNAL)
        self.cause, self.reason = SIGNAL, reason
        self._notify(
            "rollout interrupted",
            title=f"Rollout of {self.plan.service} stopped; it resumes on restart",
            alert="warning",
            step=self.state.step + 1,
            weight=self.state.weight,
            reason=reason,
        )
        return LEFT

    def _rollback(self, reason: str, decided: float | None, *, cause: str) -> str:
        """All traffic to stable first (re-reading on a conflict), then images and replicas given back, then a
        bounded wait for the restored canary."""
        assert self.targets is not None
        self._rolling_back = True
        self.cause, self.reason = cause, reason
        self.state = replace(self.state, phase="rolling-back", reason=reason)
        for attempt in range(3):
            try:
                self._write_vs(canary_weight=0, header=False, why="rollback: all traffic to stable")
                break
            except RolloutError as e:
                if attempt == 2:
                    raise
                self._log.error("rollout conflict", error=str(e), action="re-read, then all traffic to stable")
                self.vs = self.kube.get_istio(VIRTUAL_SERVICES, self.vs_ns, self.plan.vs_name)
        since = None if decided is None else round(time.monotonic() - decided, 3)
        self._log.warning("rollback traffic switched", reason=reason, seconds_since_decision=since)
        self._settle()
        targets, state = self.targets, self.state
        restored: list[tuple[str, str, int]] = []
        if state.previous_image:
            why = "rollback: restore the canary image"
            self._set_image(targets.canary_deployment, targets.canary_container, state.previous_image, why)
            restored.append((targets.canary_deployment, state.previous_image, targets.canary_container))
        if state.stable_previous_image:  # the rollback interrupted a promotion
            why = "rollback: restore the stable image"
            self._set_image(targets.stable_deployment, targets.stable_container, state.stable_previous_image, why)
            restored.append((targets.stable_deployment, state.stable_previous_image, targets.stable_container))
        if state.canary_replicas or state.canary_hpa:
            self._scale_canary(0, "rollback: the canary's replicas as they were")
        ready = {dep: self._wait_restored(dep, image, c) for dep, image, c in restored}
        self.state = replace(self.state, phase="rolled-back", weight=0)
        self._write_vs(canary_weight=0, header=False, why="rollback done")
        self.rollback = {
            "reason": reason,
            "cause": cause,
            "seconds_after_decision": since,
            "restored_image": state.previous_image,
            "restored_ready": ready,
        }
        self._notify(
            "rollout rolled back",
            title=f"Rollout of {self.plan.service} rolled back",
            alert="error",
            reason=reason,
            restored_image=self.state.previous_image,
            restored_ready=all(ready.values()),
        )
        return ROLLED_BACK

    def _promote(self) -> str:
        """Canary scaled to stable's size and given all traffic; stable rolls out the new image and is ready
        before traffic returns to it; the canary keeps its replicas until then. Traffic back on stable is
        recorded as still "promoting" (weight 0) until the canary's replicas are given back, so a run that
        dies in between is finished by the next run rather than leaving the canary scaled up for good."""
        plan = self.plan
        assert self.targets is not None
        targets = self.targets
        if self.state.phase == "promoting" and self.state.weight == 0:
            return self._promoted()
        replicas = self._ensure_capacity(100)
        before = self.state.stable_previous_image or self._current_image(
            targets.stable_deployment, targets.stable_container
        )
        self.state = replace(
            self.state, phase="promoting", weight=100, step=len(plan.steps) - 1, stable_previous_image=before
        )
        self._write_vs(canary_weight=100, header=plan.header is not None, why="promotion: canary 100 %")
        self.steps.append({"step": len(plan.steps), "weight": 100, "canary_replicas": replicas, "analyses": []})
        why = "promotion: stable gets the canary image"
        self._set_image(targets.stable_deployment, targets.stable_container, plan.image, why, expect=before)
        self._wait_ready(targets.stable_deployment, image=plan.image, container=targets.stable_container)
        self.state = replace(self.state, weight=0)
        self._write_vs(canary_weight=0, header=False, why="promotion: stable 100 % (now on the new image)")
        return self._promoted()

    def _promoted(self) -> str:
        """Traffic is on the promoted stable: give the canary's replicas back, then record the promotion. Not
        interrupted by a stop, and never rolled back: the new image already serves everything."""
        plan = self.plan
        self._finishing = True
        if self.state.canary_replicas or self.state.canary_hpa:
            self._scale_canary(0, "after promotion: the canary's replicas as they were")
        self.state = replace(self.state, phase="promoted")
        self._write_vs(canary_weight=0, header=False, why="promotion done")
        self._notify("rollout promoted", title=f"Rollout of {plan.service} promoted", alert="success", image=plan.image)
        return PROMOTED


def _describe(e: BaseException) -> str:
    """An error as one line: ours by their message, anything else (a bug) with its type."""
    return str(e) if isinstance(e, ExporterError) else f"{type(e).__name__}: {e}"
