"""Canary scenarios for the analysis and rollout tests: meshsim services with stable and canary versions,
and the Istio/Kubernetes objects a rollout needs for them (VirtualService, DestinationRule, Deployments), and
Istio's first-match HTTP routing over a VirtualService, to see where a request goes.

Mapping used throughout: DestinationRule subset `stable` selects pods labelled `version: stable`, whose
traffic Istio reports as destination_version="stable" (and destination_workload="<service>-stable",
the Deployment's name); likewise for `canary`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, NamedTuple

from sandbox.meshsim import LATENCY_SLOW, Caller, Latency, Service, Version

QUICK = Latency.of({5: 0.3, 10: 0.4, 25: 0.2, 50: 0.08, 100: 0.02})
"""p99 = 50 + 50·(0.99 − 0.98)/0.02 = 75 ms (histogram_quantile interpolates inside (50, 100])."""
QUICK_P99 = 75.0
SLOW_P99 = 1000 + 1500 * (0.99 - 0.97) / 0.03
"""LATENCY_SLOW: 97 % ≤ 1000 ms and 100 % ≤ 2500 ms, so the p99 is 2000 ms."""
WEB = Caller("web", "frontend", 40.0)
OLD_IMAGE, NEW_IMAGE = "registry.local/shop/app:1.0", "registry.local/shop/app:1.1"


def worse(name: str) -> Service:
    """A canary that is clearly worse: 5 % errors against 0.05 %, and 2 s p99 against 75 ms."""
    return Service("shop", name, (WEB,), (
        Version("stable", share=0.9, error_rate=0.0005, latency=QUICK),
        Version("canary", share=0.1, error_rate=0.05, latency=LATENCY_SLOW),
    ))  # fmt: skip


def equal(name: str) -> Service:
    """A canary that behaves exactly as stable."""
    return Service("shop", name, (WEB,), (
        Version("stable", share=0.9, error_rate=0.0005, latency=QUICK),
        Version("canary", share=0.1, error_rate=0.0005, latency=QUICK),
    ))  # fmt: skip


def sparse(name: str, rps: float = 2.0) -> Service:
    """Too little canary traffic to judge (2 rps · 5 % = 30 requests in 5 minutes), though it fails half."""
    return Service("shop", name, (Caller("web", "frontend", rps),), (
        Version("stable", share=0.95, latency=QUICK),
        Version("canary", share=0.05, error_rate=0.5, latency=LATENCY_SLOW),
    ))  # fmt: skip


def fresh(name: str) -> tuple[Service, Service]:
    """A healthy canary with little traffic (0.5 rps: 150 requests in 5 minutes, 30 in its first minute),
    before and after it starts: (stable alone, stable and canary). Its stable keeps its 4.5 rps."""
    caller = Caller("web", "frontend", 5.0)
    stable = Version("stable", share=0.9, error_rate=0.0005, latency=QUICK)
    before = Service("shop", name, (replace(caller, rps=4.5),), (replace(stable, share=1.0),))
    return before, Service("shop", name, (caller,), (stable, replace(stable, name="canary", share=0.1)))


def flagger(pair: Service, namespace: str = "test") -> tuple[Service, Service]:
    """The same traffic as `pair` the way Flagger lays it out with Istio: the primary workload
    `<name>-primary` behind the Service `<name>-primary`, the canary workload `<name>` behind `<name>-canary`.
    No Service is called `<name>`, so a filter on destination_service_name="<name>" finds nothing."""
    rps = sum(c.rps for c in pair.callers)
    caller = pair.callers[0]

    def half(host: str, version: Version, workload: str) -> Service:
        return Service(namespace, host, (replace(caller, rps=rps * version.share),),
                       (replace(version, share=1.0, workload=workload),))  # fmt: skip

    stable, canary = (next(v for v in pair.versions if v.name == n) for n in ("stable", "canary"))
    return half(f"{pair.name}-primary", stable, f"{pair.name}-primary"), half(f"{pair.name}-canary", canary, pair.name)


def expected_counts(service: Service, version: str, window_s: float = 300) -> tuple[int, int]:
    """(requests, 5xx) of a version of `service` in a window, from the generator's parameters."""
    v = next(v for v in service.versions if v.name == version)
    requests = sum(c.rps for c in service.callers) * v.share * window_s
    return round(requests), round(requests * v.error_rate)


# ------------------------------------------------------------------------------------------ Kubernetes
def virtual_service(name: str) -> dict[str, Any]:
    """A user-owned VirtualService: an /admin route of its own, and a weighted route with other settings."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "shop", "labels": {"team": "shop"}},
        "spec": {
            "hosts": [name],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": name, "subset": "stable"}}],
                },
                {
                    "name": "primary",
                    "timeout": "3s",
                    "retries": {"attempts": 2, "perTryTimeout": "1s"},
                    "route": [
                        {"destination": {"host": name, "subset": "stable", "port": {"number": 80}}, "weight": 100},
                        {"destination": {"host": name, "subset": "canary", "port": {"number": 80}}, "weight": 0},
                    ],
                },
            ],
        },
    }


def destination_rule(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "host": name,
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [
                {"name": "stable", "labels": {"version": "stable"}},
                {"name": "canary", "labels": {"version": "canary"}},
            ],
        },
    }


def deployment(
    service: str, version: str, image: str = OLD_IMAGE, namespace: str = "shop", replicas: int = 2
) -> dict[str, Any]:
    labels = {"app": service, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{service}-{version}", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": service, "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def istiod(version: str) -> dict[str, Any]:
    labels = {"app": "istiod"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": "istio-system", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "discovery", "image": f"docker.io/istio/pilot:{version}"}]},
            },
        },
    }


STABLE_REPLICAS, CANARY_REPLICAS = 3, 1
"""As in the report that found the overload: the canary has one replica against stable's three."""


def rollout_objects(name: str) -> list[dict[str, Any]]:
    return [
        virtual_service(name),
        destination_rule(name),
        deployment(name, "stable", replicas=STABLE_REPLICAS),
        deployment(name, "canary", replicas=CANARY_REPLICAS),
    ]


def shared_virtual_service(ours: str, theirs: str = "widgets") -> dict[str, Any]:
    """One VirtualService for two services of two teams, bound to the mesh and a public gateway. `theirs`
    runs its own 80/20 canary split under subsets with the same names as `ours`'s; `ours` is routed under
    its short name (Istio completes it to <ours>.shop.svc.cluster.local) and as `<ours>.shop`, which Istio takes
    literally (only dotless names are completed), so that route is not ours and preflight warns about it."""

    def split(host: str, stable: int) -> list[dict[str, Any]]:
        return [
            {"destination": {"host": host, "subset": "stable"}, "weight": stable},
            {"destination": {"host": host, "subset": "canary"}, "weight": 100 - stable},
        ]

    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "storefront", "namespace": "shop"},
        "spec": {
            "hosts": [ours, theirs, "shop.example.com"],
            "gateways": ["mesh", "istio-system/public-gateway"],
            "http": [
                {"name": theirs, "match": [{"uri": {"prefix": f"/{theirs}/"}}], "route": split(theirs, 80)},
                {"name": f"{theirs}-fqdn", "match": [{"uri": {"prefix": "/w/"}}],
                 "route": split(f"{theirs}.shop.svc.cluster.local", 80)},
                {"name": ours, "match": [{"uri": {"prefix": f"/{ours}/"}}], "route": split(ours, 100)},
                {"name": f"{ours}-api", "match": [{"uri": {"prefix": f"/api/{ours}/"}}],
                 "route": split(f"{ours}.shop", 100)},
                {"name": "default", "route": [{"destination": {"host": "web", "subset": "stable"}}]},
            ],
        },
    }  # fmt: skip


def hpa(deployment_name: str, *, min_replicas: int, max_replicas: int, namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": deployment_name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                         "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }  # fmt: skip


class Request(NamedTuple):
    gateway: str
    """`mesh` or `<namespace>/<name>` of the gateway the request comes through."""
    authority: str
    path: str
    header: bool = False
    """Whether it carries the QA header (`HEADER`)."""


HEADER = ("x-qa", "true")


def _string(condition: dict[str, str], text: str | None) -> bool:
    """Istio's StringMatch: exact, prefix or (RE2, whole string) regex."""
    if text is None:
        return False
    if "exact" in condition:
        return text == condition["exact"]
    if "prefix" in condition:
        return text.startswith(condition["prefix"])
    return re.fullmatch(condition["regex"], text) is not None


def first_match(vs: dict[str, Any], request: Request) -> dict[str, Any] | None:
    """The HTTP route Istio gives the request: the first whose match list (none: everything) has an entry all of
    whose conditions hold; a match without gateways applies to the VirtualService's (none: `mesh`)."""
    namespace = vs["metadata"]["namespace"]
    headers = dict([HEADER]) if request.header else {}

    def holds(match: dict[str, Any]) -> bool:
        gateways = match.get("gateways") or vs["spec"].get("gateways") or ["mesh"]
        if request.gateway not in [g if g == "mesh" or "/" in g else f"{namespace}/{g}" for g in gateways]:
            return False
        if "uri" in match and not _string(match["uri"], request.path):
            return False
        if "authority" in match and not _string(match["authority"], request.authority):
            return False
        if any(not _string(c, headers.get(k)) for k, c in (match.get("headers") or {}).items()):
            return False
        return not any(_string(c, headers.get(k)) for k, c in (match.get("withoutHeaders") or {}).items())

    return next((h for h in vs["spec"]["http"] if any(holds(m) for m in h.get("match") or [{}])), None)


def requests_for(vs: dict[str, Any], *, header: bool) -> list[Request]:
    """A request through every gateway of the VirtualService, for every host it serves (short and full
    forms), on every path one of its routes names and `/`."""
    namespace = vs["metadata"]["namespace"]
    hosts = {h for host in vs["spec"]["hosts"] for h in (host, f"{host}.{namespace}.svc.cluster.local")}
    paths = {"/"} | {
        m["uri"]["prefix"] + "x"
        for h in vs["spec"]["http"]
        for m in h.get("match") or []
        if "prefix" in m.get("uri", {})
    }
    gateways = [g if g == "mesh" or "/" in g else f"{namespace}/{g}" for g in vs["spec"].get("gateways") or ["mesh"]]
    return [Request(g, h, p, header) for g in gateways for h in sorted(hosts) for p in sorted(paths)]


def rerouted(before: dict[str, Any], after: dict[str, Any]) -> dict[Request, tuple[str, Any]]:
    """Requests (with and without the header) that `after` routes by another route than `before` does: for
    each, the name of the route `before` gave it and the destinations `after` gives it."""
    out = {}
    for request in requests_for(before, header=False) + requests_for(before, header=True):
        was, now = first_match(before, request), first_match(after, request)
        if (was or {}).get("name") != (now or {}).get("name"):
            out[request] = ((was or {}).get("name"), (now or {}).get("route"))
    return out
