"""The rollout's pure parts: the Plan, the recorded State, which routes are the service's own (hosts resolved
exactly as Istio does), the header route, the VirtualService patch ops, and the canary's capacity maths.
No I/O, no clock, and nothing heavy to import (no Kubernetes client)."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from exporter.canary.analysis import Thresholds
from exporter.errors import ExporterError
from exporter.kube.istio import Op, apply_patch, pointer
from exporter.model import ServiceRef

if TYPE_CHECKING:
    from exporter.kube.client import JSON

ANNOTATION_SUFFIX = "rollout.mesh-exporter.io/state"
"""The progress annotation is `<service>.<namespace>.rollout.mesh-exporter.io/state`: one per service, so
services sharing a VirtualService never read or write each other's record."""
HEADER_ROUTE = "mesh-exporter-canary-header"
"""Header routes are named `mesh-exporter-canary-header.<service>.<namespace>.<n>`, one per route of the
service (the n-th, counted from 1): Kubernetes names have no dot, so the prefix is the service's alone."""
LEGACY_ANNOTATION, LEGACY_HEADER_ROUTE = "mesh-exporter.io/rollout", HEADER_ROUTE
"""The record and header route of the first layout (one per VirtualService): never read, never ignored."""
MESH_GATEWAY = "mesh"
ACTIVE_PHASES = ("progressing", "promoting", "rolling-back")


class RolloutError(ExporterError):
    """The rollout cannot go on: a missing object, a concurrent edit, a rollout of another image."""


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
    header_gateways: tuple[str, ...] = ()
    """Gateways the header route matches on; empty: in-mesh traffic only when the VirtualService has gateways."""
    virtual_service: str = ""
    """NAME or NAMESPACE/NAME; default: the service's name in the service's namespace."""
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
    cluster_domain: str = "cluster.local"
    tags: tuple[str, ...] = ()
    ready_timeout_s: float = 600.0
    """How long a Deployment may take to roll out its new image or replicas; 0 skips the wait."""
    ready_poll_s: float = 1.0
    analysis_timeout_s: float = 0.0
    """Deadline of one analysis; 0: half the step interval, at most 60 s."""

    @property
    def vs_name(self) -> str:
        return self.virtual_service.rpartition("/")[2] or self.service.name

    @property
    def vs_namespace(self) -> str:
        return self.virtual_service.rpartition("/")[0] or self.service.namespace

    @property
    def annotation(self) -> str:
        return f"{self.service.name}.{self.service.namespace}.{ANNOTATION_SUFFIX}"

    @property
    def header_route_prefix(self) -> str:
        return f"{HEADER_ROUTE}.{self.service.name}.{self.service.namespace}."

    @property
    def dr_name(self) -> str:
        return self.destination_rule or self.service.name

    @property
    def host(self) -> str:
        """The service's own host, fully qualified."""
        return f"{self.service.name}.{self.service.namespace}.svc.{self.cluster_domain}"

    @property
    def analysis_deadline_s(self) -> float:
        return self.analysis_timeout_s or min(60.0, self.interval_s / 2)


@dataclass
class State:
    """What the annotation records: enough to resume a step, finish a rollback and restore replicas after a
    restart."""

    image: str
    previous_image: str
    host: str = ""
    """The rolled-out service's host: a record of another host is never taken for ours."""
    phase: str = "progressing"
    step: int = 0
    weight: int = 0
    holds: int = 0
    failures: int = 0
    reason: str = ""
    stable_previous_image: str = ""
    """Set during promotion: what a rollback must give back to stable."""
    stable_replicas: int = 0
    """S: stable's spec.replicas when the rollout started; the canary's capacity is measured against it."""
    canary_replicas: int = 0
    """The canary's spec.replicas when the rollout started, given back at the end."""
    canary_hpa: str = ""
    """The HorizontalPodAutoscaler managing the canary, whose minReplicas (and maxReplicas) we raise instead."""
    canary_hpa_min: int = 0
    canary_hpa_max: int = 0

    @classmethod
    def recorded(cls, vs: JSON, plan: Plan) -> State | None:
        """The service's record in the VirtualService, if any; RolloutError if it is not one, or not of our host."""
        text = (vs.get("metadata", {}).get("annotations") or {}).get(plan.annotation)
        if not text:
            return None
        try:
            data = json.loads(text)
            state = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            raise RolloutError(f"annotation {plan.annotation} is not a rollout record: {text[:200]!r}") from None
        if state.host != plan.host:
            raise RolloutError(
                f"annotation {plan.annotation} records a rollout of host {state.host or '(none)'}, not {plan.host}; "
                "it is not ours and is left alone"
            )
        return state


@dataclass(frozen=True)
class Targets:
    """What preflight found: the Deployments, their containers, the version label values to compare, the routes."""

    canary_deployment: str
    stable_deployment: str
    canary_container: int
    stable_container: int
    canary_version: str
    stable_version: str
    host: str
    """The service's own host, fully qualified (the header route's destination)."""


# ------------------------------------------------------------------------------------------------ hosts
def resolve_host(host: str, namespace: str, cluster_domain: str = "cluster.local") -> str:
    """A VirtualService/DestinationRule host as Istio reads it in `namespace` (pilot's ResolveShortnameToFQDN):
    only a name without a dot is completed, to `name.<namespace>.svc.<domain>`; `*`, an IP address and
    anything with a dot (`name.ns` included) are taken as written."""
    if not host or host == "*" or "." in host or _is_ip(host):
        return host
    return f"{host}.{namespace}.svc.{cluster_domain}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _vs_namespace(vs: JSON, plan: Plan) -> str:
    return str(vs.get("metadata", {}).get("namespace") or plan.vs_namespace)


def _destination_host(destination: JSON, vs: JSON, plan: Plan) -> str:
    host = str((destination.get("destination") or {}).get("host", ""))
    return resolve_host(host, _vs_namespace(vs, plan), plan.cluster_domain)


def managed_routes(vs: JSON, plan: Plan) -> list[tuple[int, int, int]]:
    """(http index, stable destination index, canary destination index) of every route of the service's own
    host that splits traffic between its two subsets; routes of any other host are never ours."""
    out = []
    for i, http in enumerate(vs.get("spec", {}).get("http") or []):
        if is_header_route(http, plan):
            continue
        route = http.get("route") or []
        subsets = [(d.get("destination") or {}).get("subset") for d in route]
        if len(subsets) != 2 or set(subsets) != {plan.stable_subset, plan.canary_subset}:
            continue
        if all(_destination_host(d, vs, plan) == plan.host for d in route):
            out.append((i, subsets.index(plan.stable_subset), subsets.index(plan.canary_subset)))
    return out


def routes_of_host(vs: JSON, plan: Plan) -> list[int]:
    """Indexes of the HTTP routes with at least one destination of the service's own host."""
    return [
        i
        for i, http in enumerate(vs.get("spec", {}).get("http") or [])
        if any(_destination_host(d, vs, plan) == plan.host for d in http.get("route") or [])
    ]


def partial_hosts(vs: JSON, plan: Plan) -> list[tuple[str, str]]:
    """(route name or index, host) of destinations that look like the service's but that Istio reads as
    another host (worth a warning): a partial form of its FQDN such as `name.ns` (taken literally), or its
    bare name in a VirtualService of another namespace (completed in that namespace)."""
    found: dict[tuple[str, str], None] = {}
    elsewhere = _vs_namespace(vs, plan) != plan.service.namespace
    for i, http in enumerate(vs.get("spec", {}).get("http") or []):
        for d in http.get("route") or []:
            host = str((d.get("destination") or {}).get("host", ""))
            partial = "." in host and host != plan.host and plan.host.startswith(host.rstrip(".") + ".")
            if partial or (elsewhere and host == plan.service.name):
                found[str(http.get("name") or i), host] = None
    return list(found)


# ------------------------------------------------------------------------------------------ header route
def gateway_ref(name: str, namespace: str) -> str:
    """A gateway as Istio names it from an object in `namespace` (pilot's resolveGatewayName): `mesh`, or
    `<namespace>/<name>`; `./name` and a bare name are in `namespace`; the legacy dotted form
    `name.ns[.svc.<domain>]` is `ns/name`."""
    if name == MESH_GATEWAY:
        return name
    if "/" in name:
        ns, _, gateway = name.partition("/")
        return f"{namespace}/{gateway}" if ns == "." else name
    gateway, dot, rest = name.partition(".")
    return f"{rest.partition('.')[0]}/{gateway}" if dot else f"{namespace}/{name}"


def bound_gateways(vs: JSON, plan: Plan) -> list[str]:
    """The gateways the VirtualService applies to (none written: the mesh only)."""
    namespace = _vs_namespace(vs, plan)
    return [gateway_ref(str(g), namespace) for g in vs.get("spec", {}).get("gateways") or [MESH_GATEWAY]]


def header_gateways(vs: JSON, plan: Plan) -> list[str]:
    """The gateways the header route is for: those named by the plan, each bound to the VirtualService, or
    in-mesh traffic; RolloutError when the route could never match."""
    bound = bound_gateways(vs, plan)
    where = f"VirtualService {_vs_namespace(vs, plan)}/{plan.vs_name}"
    if plan.header_gateways:
        wanted = [gateway_ref(g, _vs_namespace(vs, plan)) for g in plan.header_gateways]
        unbound = [g for g in wanted if g not in bound]
        if unbound:
            raise RolloutError(
                f"--header-gateways names {', '.join(unbound)}, not bound to {where} (bound: {', '.join(bound)}); "
                "the header route would never match there"
            )
        return wanted
    if MESH_GATEWAY not in bound:
        raise RolloutError(
            f"{where} is bound only to gateways {', '.join(bound)}: in-mesh traffic never uses it, so the header "
            "route (in-mesh by default) would never match; name the gateway(s) with --header-gateways"
        )
    return [MESH_GATEWAY]


def _authority_regex(plan: Plan) -> str:
    """Every authority in-mesh clients use for the service: name, name.ns, name.ns.svc, the FQDN, with a port."""
    name, ns, domain = (re.escape(p) for p in (plan.service.name, plan.service.namespace, plan.cluster_domain))
    return rf"^{name}(\.{ns}(\.svc(\.{domain})?)?)?\.?(:[0-9]+)?$"


def is_header_route(http: JSON, plan: Plan) -> bool:
    return str(http.get("name", "")).startswith(plan.header_route_prefix)


def _header_matches(http: JSON, vs: JSON, plan: Plan) -> list[JSON]:
    """Each match of our route `http` (a route without one matches everything) with the header added, for
    the gateways it applies to that the header route is for; so it takes only requests `http` would take.
    In-mesh, a route without conditions on a VirtualService serving other hosts too keeps to the service's
    own authority (the names in-mesh clients call it by): requests for other hosts that fall through to our
    route stay on stable."""
    assert plan.header is not None
    name, value = plan.header
    wanted, bound, namespace = header_gateways(vs, plan), bound_gateways(vs, plan), _vs_namespace(vs, plan)
    other_hosts = any(
        resolve_host(str(h), namespace, plan.cluster_domain) != plan.host for h in vs["spec"].get("hosts") or []
    )
    out: list[JSON] = []
    for match in http.get("match") or [{}]:
        headers = match.get("headers") or {}
        if headers.get(name, {"exact": value}) != {"exact": value} or name in (match.get("withoutHeaders") or {}):
            continue  # our route never takes a request with the header
        applies = [gateway_ref(str(g), namespace) for g in match.get("gateways") or bound]
        narrowed = {k: v for k, v in match.items() if k != "gateways"} | {"headers": headers | {name: {"exact": value}}}
        for gateways in (
            [g for g in wanted if g == MESH_GATEWAY and g in applies],
            [g for g in wanted if g != MESH_GATEWAY and g in applies],
        ):
            if not gateways:
                continue
            one = dict(narrowed)
            if sorted(gateways) != sorted(applies):
                one["gateways"] = gateways
            if gateways == [MESH_GATEWAY] and other_hosts and not set(match) - {"gateways", "name"}:
                one["authority"] = {"regex": _authority_regex(plan)}
            out.append(one)
    return out


def header_routes(vs: JSON, plan: Plan) -> list[tuple[int, JSON]]:
    """(index of our route, the header route to go just before it): requests with the header that our route
    would take go to the canary, with our route's other settings (timeout, retries, rewrite...); nothing
    another route would take. In-mesh only by default: bound to a gateway other than `mesh`, the
    VirtualService would otherwise open the canary to whoever can reach that gateway."""
    http = vs.get("spec", {}).get("http") or []
    out = []
    for n, (i, _, c) in enumerate(managed_routes(vs, plan), start=1):
        matches = _header_matches(http[i], vs, plan)
        if not matches:
            continue
        rest = {k: v for k, v in http[i].items() if k not in ("name", "match", "route")}
        canary = {k: v for k, v in http[i]["route"][c].items() if k != "weight"}
        destination = {**canary["destination"], "host": plan.host}
        route = {"name": f"{plan.header_route_prefix}{n}", "match": matches, **rest}
        out.append((i, route | {"route": [{**canary, "destination": destination}]}))
    return out


def our_part(vs: JSON, plan: Plan) -> JSON:
    """What of `vs` is the rollout's: its record, its header routes and the service's own split routes. Any
    other change (another team's routes, another rollout's) is none of its business."""
    http = vs.get("spec", {}).get("http") or []
    mine = {i for i, _, _ in managed_routes(vs, plan)} | {i for i, h in enumerate(http) if is_header_route(h, plan)}
    record = (vs.get("metadata", {}).get("annotations") or {}).get(plan.annotation)
    return {"record": record, "routes": [http[i] for i in sorted(mine)]}


def legacy_record(vs: JSON) -> str:
    """What the first layout left in `vs` (its annotation, its header route), as words; empty when nothing."""
    found = []
    if LEGACY_ANNOTATION in (vs.get("metadata", {}).get("annotations") or {}):
        found.append(f"annotation {LEGACY_ANNOTATION}")
    if any(h.get("name") == LEGACY_HEADER_ROUTE for h in vs.get("spec", {}).get("http") or []):
        found.append(f"HTTP route {LEGACY_HEADER_ROUTE}")
    return " and ".join(found)


def vs_ops(vs: JSON, plan: Plan, *, canary_weight: int, header: bool, state: State) -> list[Op]:
    """Ops moving `vs` to the given canary weight on the service's own routes (stable gets the rest), with or
    without the header routes, and the recorded state. Nothing else in `vs` changes."""
    ops: list[Op] = []
    ours = [i for i, http in enumerate(vs.get("spec", {}).get("http") or []) if is_header_route(http, plan)]
    if header and not ours and plan.header is not None:  # from the last: each insert leaves earlier indexes be
        ops += [
            {"op": "add", "path": pointer("spec", "http", i), "value": r} for i, r in reversed(header_routes(vs, plan))
        ]
    elif not header:
        ops += [{"op": "remove", "path": pointer("spec", "http", i)} for i in reversed(ours)]
    after = apply_patch(vs, ops)
    for i, s, c in managed_routes(after, plan):
        ops.append(
            {"op": "add", "path": pointer("spec", "http", i, "route", s, "weight"), "value": 100 - canary_weight}
        )
        ops.append({"op": "add", "path": pointer("spec", "http", i, "route", c, "weight"), "value": canary_weight})
    record = json.dumps(asdict(state), separators=(",", ":"))
    if "annotations" in vs["metadata"]:
        ops.append({"op": "add", "path": pointer("metadata", "annotations", plan.annotation), "value": record})
    else:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {plan.annotation: record}})
    return ops


# ---------------------------------------------------------------------------------------------- capacity
def canary_replicas(stable_replicas: int, weight: int, original: int) -> int:
    """Replicas the canary needs to carry `weight` % of traffic that S = `stable_replicas` carried at 100 %:
    ceil(S × weight / 100), at least 1, never fewer than it had (as Argo Rollouts' matchTrafficWeight)."""
    return max(1, original, math.ceil(stable_replicas * weight / 100))


def hpa_for(hpas: list[JSON], deployment: str) -> JSON | None:
    """The HorizontalPodAutoscaler whose scaleTargetRef is the Deployment, if any."""
    for hpa in hpas:
        ref = hpa.get("spec", {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment" and ref.get("name") == deployment:
            return hpa
    return None


def rolled_out(dep: JSON, *, replicas: int = 0, image: str = "", container: int = 0) -> tuple[bool, str]:
    """Whether a Deployment has rolled out as `kubectl rollout status` judges it (its generation observed,
    every replica updated and available), with at least `replicas` and, when given, `image` in its spec;
    and a line saying where it stands."""
    spec, st = dep.get("spec", {}), dep.get("status") or {}
    want = max(int(spec.get("replicas", 1)), replicas)
    observed = int(st.get("observedGeneration", 0)) >= int(dep.get("metadata", {}).get("generation", 0))
    counts = {k: int(st.get(k, 0)) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
    running = str(spec["template"]["spec"]["containers"][container].get("image", ""))
    updated = counts["updatedReplicas"]
    ready = (
        observed
        and (not image or running == image)
        and updated >= want
        and counts["replicas"] <= updated <= counts["availableReplicas"]
    )
    return ready, f"generation observed={observed}, image={running}, {counts}, wanted {want}"
