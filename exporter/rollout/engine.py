"""`exporter rollout`: progressive traffic shifting to a canary with Istio, judged at every step, rolled back
in seconds when worse, promoted at 100 %.

The service's VirtualService must have HTTP route(s) splitting traffic between the DestinationRule's
stable and canary subsets; only those routes' weights are patched (plus, with --header, one route of
our own named `mesh-exporter-canary-header`, and our annotation). Every write is a JSON patch guarded
by the resourceVersion of our own previous write, so anyone else's edit in between is detected (409)
and reported, never overwritten. Progress lives in the `mesh-exporter.io/rollout` annotation of the
VirtualService, written in the same patch as the weights, so a restarted rollout resumes from its step
or finishes an interrupted rollback. The clock and the wait are injected: tests drive the real code.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TextIO

import structlog

from exporter.canary.analysis import FAIL, PASS, Thresholds, Verdict
from exporter.errors import ExporterError, KubeError
from exporter.kube.client import JSON
from exporter.kube.istio import Kube, Op, apply_patch, pointer, rv_guard
from exporter.model import ServiceRef
from exporter.sink.datadog import DatadogSink, tags_for

log = structlog.get_logger("exporter.rollout.engine")

ANNOTATION = "mesh-exporter.io/rollout"
HEADER_ROUTE = "mesh-exporter-canary-header"
VIRTUAL_SERVICES, DESTINATION_RULES = "virtualservices", "destinationrules"
ISTIO_SUPPORTED = ((1, 22), (1, 31))
"""networking.istio.io/v1 is served from Istio 1.22; newer minors than the last tested get a warning."""

PROMOTED, ROLLED_BACK, LEFT = "promoted", "rolled-back", "left"
ACTIVE_PHASES = ("progressing", "promoting", "rolling-back")

Analyzer = Callable[[float, "Targets"], Verdict]
"""The analysis of the canary over the window ending at the given unix time."""


class RolloutError(ExporterError):
    """The rollout cannot go on: a missing object, a concurrent edit, a rollout of another image."""


class Waiter(Protocol):
    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when a stop (SIGTERM) was requested meanwhile."""
        ...

    def stopped(self) -> bool: ...


class SignalWaiter:
    """The real waiter: sleeps in short slices until a signal handler calls `request_stop()`.

    A plain flag, not a threading.Event: a handler that takes a lock the interrupted main thread may
    hold (Event.set inside Event.wait) can deadlock.
    """

    def __init__(self, *, slice_s: float = 0.05) -> None:
        self.slice_s = slice_s
        self._stop = False

    def request_stop(self) -> None:
        self._stop = True

    def wait(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not self._stop and (left := end - time.monotonic()) > 0:
            time.sleep(min(self.slice_s, left))
        return self._stop

    def stopped(self) -> bool:
        return self._stop


@dataclass(frozen=True)
class Plan:
    service: ServiceRef
    image: str
    steps: tuple[int, ...] = (5, 10, 25, 50, 100)
    interval_s: float = 300.0
    window: str = "5m"
    failure_limit: int = 2
    hold_limit: int = 3
    """Inconclusive analyses a step may hold for before the rollout gives up and rolls back."""
    header: tuple[str, str] | None = None
    virtual_service: str = ""
    destination_rule: str = ""
    stable_subset: str = "stable"
    canary_subset: str = "canary"
    subset_label: str = "version"
    stable_deployment: str = ""
    canary_deployment: str = ""
    container: str = ""
    version_label: str = "destination_version"
    thresholds: Thresholds = field(default_factory=Thresholds)
    on_error: str = "rollback"
    on_sigterm: str = "rollback"
    istio_root_namespace: str = "istio-system"
    tags: tuple[str, ...] = ()
    ready_timeout_s: float = 600.0
    """How long a Deployment may take to roll out its new image; 0 skips the wait."""
    ready_poll_s: float = 1.0

    @property
    def vs_name(self) -> str:
        return self.virtual_service or self.service.name

    @property
    def dr_name(self) -> str:
        return self.destination_rule or self.service.name


@dataclass
class State:
    """What the annotation records: enough to resume a step or finish a rollback after a restart."""

    image: str
    previous_image: str
    phase: str = "progressing"
    step: int = 0
    weight: int = 0
    holds: int = 0
    failures: int = 0
    reason: str = ""
    stable_previous_image: str = ""
    """Set during promotion: what a rollback must give back to stable."""

    @classmethod
    def parse(cls, text: str | None) -> State | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            raise RolloutError(f"annotation {ANNOTATION} is not a rollout record: {text[:200]!r}") from None


@dataclass(frozen=True)
class Targets:
    """What preflight found: the Deployments, their containers, and the version label values to compare."""

    canary_deployment: str
    stable_deployment: str
    canary_container: int
    stable_container: int
    canary_version: str
    stable_version: str
    host: str


# ------------------------------------------------------------------------------------ VirtualService ops
def managed_routes(vs: JSON, plan: Plan) -> list[tuple[int, int, int]]:
    """(http index, stable destination index, canary destination index) of every route splitting the two."""
    out = []
    for i, http in enumerate(vs.get("spec", {}).get("http") or []):
        if http.get("name") == HEADER_ROUTE:
            continue
        subsets = [(d.get("destination") or {}).get("subset") for d in http.get("route") or []]
        if len(subsets) == 2 and set(subsets) == {plan.stable_subset, plan.canary_subset}:
            out.append((i, subsets.index(plan.stable_subset), subsets.index(plan.canary_subset)))
    return out


def _header_index(vs: JSON) -> int | None:
    routes = vs.get("spec", {}).get("http") or []
    return next((i for i, http in enumerate(routes) if http.get("name") == HEADER_ROUTE), None)


def vs_ops(vs: JSON, plan: Plan, targets: Targets, *, canary_weight: int, header: bool, state: State) -> list[Op]:
    """Ops moving `vs` to the given canary weight (stable gets the rest), header route and recorded state."""
    ops: list[Op] = []
    index = _header_index(vs)
    if header and index is None and plan.header is not None:
        name, value = plan.header
        route = {
            "name": HEADER_ROUTE,
            "match": [{"headers": {name: {"exact": value}}}],
            "route": [{"destination": {"host": targets.host, "subset": plan.canary_subset}}],
        }
        ops.append({"op": "add", "path": "/spec/http/0", "value": route})
    elif not header and index is not None:
        ops.append({"op": "remove", "path": pointer("spec", "http", index)})
    after = apply_patch(vs, ops)
    for i, s, c in managed_routes(after, plan):
        ops.append(
            {"op": "add", "path": pointer("spec", "http", i, "route", s, "weight"), "value": 100 - canary_weight}
        )
        ops.append({"op": "add", "path": pointer("spec", "http", i, "route", c, "weight"), "value": canary_weight})
    record = json.dumps(asdict(state), separators=(",", ":"))
    if "annotations" in vs["metadata"]:
        ops.append({"op": "add", "path": pointer("metadata", "annotations", ANNOTATION), "value": record})
    else:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: record}})
    return ops


# ------------------------------------------------------------------------------------------------ run
class Rollout:
    """One rollout of `plan.image`; `run()` returns PROMOTED, ROLLED_BACK or LEFT (stopped for a resume)."""

    def __init__(
        self,
        plan: Plan,
        kube: Kube,
        analyzer: Analyzer,
        *,
        clock: Callable[[], float] = time.time,
        waiter: Waiter | None = None,
        events: DatadogSink | None = None,
        dry_run: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.plan = plan
        self.kube = kube
        self.analyzer = analyzer
        self.clock = clock
        self.waiter = waiter or SignalWaiter()
        self.events = events
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.ns = plan.service.namespace
        self.vs: JSON = {}
        self.targets: Targets | None = None
        self.state = State(image=plan.image, previous_image="")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events") if events else None
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
        self.vs = self._must(
            lambda: self.kube.get_istio(VIRTUAL_SERVICES, ns, plan.vs_name), f"VirtualService {ns}/{plan.vs_name}"
        )
        dr = self._must(
            lambda: self.kube.get_istio(DESTINATION_RULES, ns, plan.dr_name), f"DestinationRule {ns}/{plan.dr_name}"
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
        routes = managed_routes(self.vs, plan)
        if not routes:
            raise RolloutError(
                f"no HTTP route of VirtualService {ns}/{plan.vs_name} splits traffic between subsets "
                f"{plan.stable_subset!r} and {plan.canary_subset!r}; give it one with two destinations, e.g. "
                f"route: [{{destination: {{host: {plan.service.name}, subset: {plan.stable_subset}}}, weight: 100}}, "
                f"{{destination: {{host: {plan.service.name}, subset: {plan.canary_subset}}}, weight: 0}}]"
            )
        i, _, c = routes[0]
        host = str(self.vs["spec"]["http"][i]["route"][c]["destination"].get("host", plan.service.name))
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
            host=host,
        )
        self._log.info("rollout targets", **asdict(self.targets), routes=[r[0] for r in routes])
        return self.targets

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

    # ---- writes ---------------------------------------------------------------------------------
    def _write_vs(self, *, canary_weight: int, header: bool, why: str) -> None:
        assert self.targets is not None
        ops = vs_ops(self.vs, self.plan, self.targets, canary_weight=canary_weight, header=header, state=self.state)
        patch = [rv_guard(self.vs), *ops]
        if self.dry_run:
            self._print(f"VirtualService {self.ns}/{self.plan.vs_name}", why, patch)
            self.vs = apply_patch(self.vs, ops)
            return
        try:
            self.vs = self.kube.patch_istio(VIRTUAL_SERVICES, self.ns, self.plan.vs_name, patch)
        except KubeError as e:
            if e.status == 409:
                raise RolloutError(
                    f"VirtualService {self.ns}/{self.plan.vs_name} was changed by someone else since our last write "
                    f"(409 Conflict); their change was not overwritten: {e}"
                ) from None
            raise

    def _set_image(self, deployment: str, container: int, image: str, why: str, *, expect: str = "") -> str:
        """Set the container's image with a resourceVersion-guarded patch; returns the image it had.

        A 409 is re-read: when only the status moved (the Deployment controller writes it often) the patch is
        sent again; when the image is no longer `expect` (someone else set one), it is reported, not overwritten.
        """
        for attempt in range(3):
            dep = self.kube.get_deployment(self.ns, deployment)
            previous = str(dep["spec"]["template"]["spec"]["containers"][container].get("image", ""))
            if previous == image:
                return previous
            if expect and previous != expect:
                raise RolloutError(
                    f"Deployment {self.ns}/{deployment} runs {previous}, not {expect}: someone else changed its image; "
                    "not overwritten"
                )
            path = pointer("spec", "template", "spec", "containers", container, "image")
            ops = [rv_guard(dep), {"op": "replace", "path": path, "value": image}]
            if self.dry_run:
                self._print(f"Deployment {self.ns}/{deployment}", why, ops)
                return previous
            try:
                self.kube.patch_deployment(self.ns, deployment, ops)
            except KubeError as e:
                if e.status != 409 or attempt == 2:
                    raise
                self._log.info("deployment changed meanwhile; re-reading", deployment=deployment)
                expect = previous
                continue
            self._log.info("deployment image set", deployment=deployment, image=image, previous=previous)
            return previous
        raise AssertionError("unreachable")

    def _wait_ready(self, deployment: str) -> bool:
        """Wait until the Deployment has rolled out (as `kubectl rollout status` judges it); True if interrupted."""
        if self.dry_run or self.plan.ready_timeout_s <= 0:
            return False
        deadline = self.clock() + self.plan.ready_timeout_s
        while True:
            dep = self.kube.get_deployment(self.ns, deployment)
            want = int(dep.get("spec", {}).get("replicas", 1))
            st = dep.get("status") or {}
            observed = int(st.get("observedGeneration", 0)) >= int(dep["metadata"].get("generation", 0))
            counts = {k: int(st.get(k, 0)) for k in ("replicas", "updatedReplicas", "availableReplicas")}
            updated = counts["updatedReplicas"]
            if observed and updated >= want and counts["replicas"] <= updated <= counts["availableReplicas"]:
                self._log.info("deployment ready", deployment=deployment, replicas=want)
                return False
            if self.clock() >= deadline:
                raise RolloutError(
                    f"Deployment {self.ns}/{deployment} not rolled out after {self.plan.ready_timeout_s:g}s: "
                    f"generation observed={observed}, {counts}, wanted {want}"
                )
            if self.waiter.wait(self.plan.ready_poll_s):
                return True

    def _print(self, target: str, why: str, ops: list[Op]) -> None:
        lines = ",\n".join(f"  {json.dumps(op, ensure_ascii=False)}" for op in ops)
        self.out.write(f"# {why}\nPATCH {target} (application/json-patch+json)\n[\n{lines}\n]\n\n")

    def _notify(self, event: str, *, title: str, alert: str = "info", **fields: Any) -> None:
        level = {"error": "error", "warning": "warning"}.get(alert, "info")
        getattr(self._log, level)(event, **fields)
        if self._pool is None or self.events is None or self.dry_run:
            return
        text = ", ".join(f"{k}={v}" for k, v in fields.items())
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

        self._pool.submit(send)

    # ---- the rollout ----------------------------------------------------------------------------
    def run(self) -> str:
        try:
            return self._run()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def _run(self) -> str:
        plan = self.plan
        targets = self.preflight()
        recorded = State.parse((self.vs["metadata"].get("annotations") or {}).get(ANNOTATION))
        if recorded and recorded.phase in ACTIVE_PHASES:
            if recorded.phase == "rolling-back":
                self._log.info("rollout resumed", phase=recorded.phase, step=recorded.step)
                self.state = recorded
                return self._rollback(recorded.reason or "finishing an interrupted rollback", None)
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
            previous = self._current_image(targets.canary_deployment, targets.canary_container)
            self.state = State(image=plan.image, previous_image=previous)
            self._notify(
                "rollout started",
                title=f"Rollout of {plan.service} started",
                steps=list(plan.steps),
                previous_image=previous,
            )
        try:
            return self._progress()
        except ExporterError as e:
            self._notify(
                "rollout error",
                title=f"Rollout of {plan.service} failed",
                alert="error",
                error=str(e),
                step=self.state.step + 1,
            )
            if plan.on_error == "rollback" and self.state.phase != "promoted" and not self.dry_run:
                self._rollback(f"error: {e}", None)
            raise

    def _current_image(self, deployment: str, container: int) -> str:
        dep = self.kube.get_deployment(self.ns, deployment)
        return str(dep["spec"]["template"]["spec"]["containers"][container].get("image", ""))

    def _progress(self) -> str:
        plan = self.plan
        assert self.targets is not None
        if self.state.phase == "promoting":
            return self._promote()
        expect = "" if self.state.step or self.state.weight else self.state.previous_image
        targets = self.targets
        self._set_image(targets.canary_deployment, targets.canary_container, plan.image, "canary image", expect=expect)
        if self._wait_ready(targets.canary_deployment):
            return self._interrupted()
        for index in range(self.state.step, len(plan.steps)):
            weight = plan.steps[index]
            if weight == 100:
                break
            if index != self.state.step or self.state.weight != weight:
                self.state = replace(self.state, step=index, weight=weight, holds=0, failures=0)
            why = f"step {index + 1}/{len(plan.steps)}: canary {weight} %, stable {100 - weight} %"
            self._write_vs(canary_weight=weight, header=plan.header is not None, why=why)
            self._notify(
                "rollout step", title=f"Rollout of {plan.service}: canary at {weight} %", step=index + 1, weight=weight
            )
            if self.dry_run:
                continue
            outcome = self._judge()
            if outcome is not None:
                return outcome
        return self._promote()

    def _judge(self) -> str | None:
        """Wait and analyse until the step passes (None), or roll back / stop (the outcome)."""
        plan, state = self.plan, self.state
        assert self.targets is not None
        while True:
            if self.waiter.wait(plan.interval_s) or self.waiter.stopped():
                return self._interrupted()
            verdict = self.analyzer(self.clock(), self.targets)
            decided = time.monotonic()
            if self.waiter.stopped():
                return self._interrupted()
            where = {"verdict": verdict.result, "step": state.step + 1, "weight": state.weight}
            figures = {
                "canary_requests": verdict.canary.requests,
                "stable_requests": verdict.stable.requests,
                "canary_success_pct": verdict.canary.success_rate_pct,
                "canary_p99_ms": verdict.canary.p99_ms,
                "reasons": list(verdict.reasons),
            }
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
            if give_up:
                outcome = self._rollback(reason, decided)  # traffic first: events and logs can wait
                title = f"Canary of {plan.service}: {verdict.result}, rolled back"
                self._notify("canary verdict", title=title, alert="error", **where, **figures)
                return outcome
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
        if self.plan.on_sigterm == "rollback":
            return self._rollback("interrupted (SIGTERM)", time.monotonic())
        self._notify(
            "rollout interrupted",
            title=f"Rollout of {self.plan.service} stopped; it resumes on restart",
            alert="warning",
            step=self.state.step + 1,
            weight=self.state.weight,
        )
        return LEFT

    def _rollback(self, reason: str, decided: float | None) -> str:
        """All traffic to stable first (re-reading on a conflict), then the canary image restored."""
        assert self.targets is not None
        self.state = replace(self.state, phase="rolling-back", reason=reason)
        for attempt in range(3):
            try:
                self._write_vs(canary_weight=0, header=False, why="rollback: all traffic to stable")
                break
            except RolloutError as e:
                if attempt == 2:
                    raise
                self._log.error("rollout conflict", error=str(e), action="re-read, then all traffic to stable")
                self.vs = self.kube.get_istio(VIRTUAL_SERVICES, self.ns, self.plan.vs_name)
        since = None if decided is None else round(time.monotonic() - decided, 3)
        self._log.warning("rollback traffic switched", reason=reason, seconds_since_decision=since)
        targets, state = self.targets, self.state
        if state.previous_image:
            why = "rollback: restore the canary image"
            self._set_image(targets.canary_deployment, targets.canary_container, state.previous_image, why)
        if state.stable_previous_image:  # the rollback interrupted a promotion
            why = "rollback: restore the stable image"
            self._set_image(targets.stable_deployment, targets.stable_container, state.stable_previous_image, why)
        self.state = replace(self.state, phase="rolled-back", weight=0)
        self._write_vs(canary_weight=0, header=False, why="rollback done")
        self._notify(
            "rollout rolled back",
            title=f"Rollout of {self.plan.service} rolled back",
            alert="error",
            reason=reason,
            restored_image=self.state.previous_image,
        )
        return ROLLED_BACK

    def _promote(self) -> str:
        plan = self.plan
        assert self.targets is not None
        targets = self.targets
        before = self.state.stable_previous_image or self._current_image(
            targets.stable_deployment, targets.stable_container
        )
        self.state = replace(
            self.state, phase="promoting", weight=100, step=len(plan.steps) - 1, stable_previous_image=before
        )
        self._write_vs(canary_weight=100, header=plan.header is not None, why="promotion: canary 100 %")
        why = "promotion: stable gets the canary image"
        self._set_image(targets.stable_deployment, targets.stable_container, plan.image, why, expect=before)
        if self._wait_ready(targets.stable_deployment):
            return self._interrupted()
        self.state = replace(self.state, phase="promoted", weight=0)
        self._write_vs(canary_weight=0, header=False, why="promotion: stable 100 % (now on the new image)")
        self._notify("rollout promoted", title=f"Rollout of {plan.service} promoted", alert="success", image=plan.image)
        return PROMOTED


# ------------------------------------------------------------------------------------------------ CLI
