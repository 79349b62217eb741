"""Rollout's pure parts: flag parsing, host resolution and route ownership, the header route, capacity
maths, and the VirtualService patches (applied by an independent RFC 6902 implementation, the sandbox API
server's)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest

from exporter.cli import build_parser
from exporter.cli.rollout import parse_header, parse_steps, plan_from
from exporter.config import Settings
from exporter.errors import ConfigError
from exporter.kube.istio import apply_patch, istio_version_of
from exporter.model import ServiceRef
from exporter.rollout.plan import (
    ANNOTATION,
    HEADER_ROUTE,
    Plan,
    State,
    canary_replicas,
    header_route,
    hpa_for,
    managed_routes,
    resolve_host,
    routes_of_host,
    vs_ops,
)
from sandbox.kubeapi import apply_json_patch
from tests.support.canary_mesh import hpa, shared_virtual_service, virtual_service

PLAN = Plan(service=ServiceRef("shop", "reviews"), image="app:2", header=("x-canary", "yes"))


def primary(vs: dict[str, Any]) -> dict[str, int]:
    route = next(h for h in vs["spec"]["http"] if h.get("name") == "primary")["route"]
    return {d["destination"]["subset"]: d["weight"] for d in route}


@pytest.mark.parametrize("weight", [0, 5, 33, 100])
def test_weights_sum_to_100_and_nothing_else_changes(weight: int) -> None:
    vs = virtual_service("reviews")
    state = State(image="app:2", previous_image="app:1", weight=weight)
    ops = vs_ops(vs, PLAN, canary_weight=weight, header=False, state=state)
    out = apply_json_patch(vs, ops)
    assert primary(out) == {"stable": 100 - weight, "canary": weight}
    assert json.loads(out["metadata"]["annotations"][ANNOTATION])["weight"] == weight
    for o in (vs, out):  # everything but the weights and our annotation is as the user wrote it
        o["metadata"].pop("annotations", None)
        for d in o["spec"]["http"][1]["route"]:
            d.pop("weight")
    assert out == vs


def test_header_route_goes_first_and_is_removed_again() -> None:
    vs = virtual_service("reviews")
    state = State(image="app:2", previous_image="app:1")
    with_header = apply_json_patch(vs, vs_ops(vs, PLAN, canary_weight=10, header=True, state=state))
    assert [h.get("name") for h in with_header["spec"]["http"]] == [HEADER_ROUTE, "admin", "primary"]
    assert with_header["spec"]["http"][0]["match"] == [{"headers": {"x-canary": {"exact": "yes"}}}]
    assert primary(with_header) == {"stable": 90, "canary": 10}
    again = vs_ops(with_header, PLAN, canary_weight=25, header=True, state=state)
    assert not any(op["op"] == "remove" or op["path"] == "/spec/http/0" for op in again)  # not inserted twice
    ops = vs_ops(with_header, PLAN, canary_weight=0, header=False, state=state)
    without = apply_json_patch(with_header, ops)
    assert [h.get("name") for h in without["spec"]["http"]] == ["admin", "primary"]
    assert primary(without) == {"stable": 100, "canary": 0}
    assert apply_patch(with_header, ops) == without  # the dry run's local patching agrees with the server's


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5,10,25,50,100", (5, 10, 25, 50, 100)), ("100", (100,)), ("1,50,100", (1, 50, 100))],
)
def test_steps(text: str, expected: tuple[int, ...]) -> None:
    assert parse_steps(text) == expected


@pytest.mark.parametrize("text", ["5,10,50", "10,5,100", "0,100", "5,5,100", "5,x,100", "5,150"])
def test_bad_steps_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--steps: "):
        parse_steps(text)


def test_header_flag() -> None:
    assert parse_header("x-canary") == ("x-canary", "true")
    assert parse_header("x-qa=alice") == ("x-qa", "alice")
    assert parse_header(None) is None
    with pytest.raises(ConfigError, match=r"^--header: "):
        parse_header("X-Canary")


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("docker.io/istio/pilot:1.24.2", "1.24.2"),
        ("gcr.io/istio-release/pilot:1.26.0-distroless", "1.26.0"),
        ("registry:5000/istio/pilot:1.22.3", "1.22.3"),
        ("docker.io/istio/pilot@sha256:abc", None),
    ],
)
def test_istio_version_from_the_istiod_image(image: str, version: str | None) -> None:
    assert istio_version_of(image) == version


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "shop", "reviews.shop.svc.cluster.local"),
        ("reviews", "web", "reviews.web.svc.cluster.local"),  # relative to the VirtualService's namespace
        ("reviews.shop", "web", "reviews.shop.svc.cluster.local"),
        ("reviews.shop.svc", "web", "reviews.shop.svc.cluster.local"),
        ("reviews.shop.svc.cluster.local", "web", "reviews.shop.svc.cluster.local"),
        ("Reviews.Shop.svc.cluster.local.", "web", "reviews.shop.svc.cluster.local"),
        ("api.example.com", "shop", "api.example.com"),
        ("*", "shop", "*"),
    ],
)
def test_hosts_resolve_as_istio_reads_them(host: str, namespace: str, expected: str) -> None:
    assert resolve_host(host, namespace) == expected


def test_only_routes_of_the_services_own_host_are_ours_whatever_their_subset_names() -> None:
    vs = shared_virtual_service("details")
    names = [h["name"] for h in vs["spec"]["http"]]
    plan = Plan(service=ServiceRef("shop", "details"), image="app:2")
    assert [names[i] for i, _, _ in managed_routes(vs, plan)] == ["details", "details-api"]
    widgets = Plan(service=ServiceRef("shop", "widgets"), image="app:2")
    assert [names[i] for i, _, _ in managed_routes(vs, widgets)] == ["widgets", "widgets-fqdn"]
    # the same VirtualService in another namespace: `details` there is details.web, not ours
    elsewhere = {**vs, "metadata": {**vs["metadata"], "namespace": "web"}}
    assert [names[i] for i, _, _ in managed_routes(elsewhere, plan)] == ["details-api"]
    assert routes_of_host(elsewhere, Plan(service=ServiceRef("shop", "nothing"), image="x")) == []


def test_on_a_shared_virtual_service_only_our_weights_change() -> None:
    vs = shared_virtual_service("details")
    plan = Plan(service=ServiceRef("shop", "details"), image="app:2", header=("x-canary", "true"))
    out = apply_json_patch(vs, vs_ops(vs, plan, canary_weight=25, header=True, state=State("app:2", "app:1")))
    http = {h["name"]: h for h in out["spec"]["http"]}
    for name in ("details", "details-api"):
        assert [d["weight"] for d in http[name]["route"]] == [75, 25]
    for name in ("widgets", "widgets-fqdn"):  # the other team's 80/20 split stands
        assert [d["weight"] for d in http[name]["route"]] == [80, 20]
    assert out["spec"]["http"][1:] == [
        h if h["name"] not in ("details", "details-api")
        else {**h, "route": [{**h["route"][0], "weight": 75}, {**h["route"][1], "weight": 25}]}
        for h in vs["spec"]["http"]
    ]  # fmt: skip


def test_header_route_is_mesh_only_and_for_our_authority_on_a_shared_gateway_bound_virtual_service() -> None:
    vs = shared_virtual_service("details")
    plan = Plan(service=ServiceRef("shop", "details"), image="app:2", header=("x-canary", "true"))
    route = header_route(vs, plan)
    assert route["route"] == [{"destination": {"host": "details.shop.svc.cluster.local", "subset": "canary"}}]
    (match,) = route["match"]
    assert match["gateways"] == ["mesh"]
    assert match["headers"] == {"x-canary": {"exact": "true"}}
    authority = re.compile(match["authority"]["regex"])
    for ok in ("details", "details:9080", "details.shop", "details.shop.svc", "details.shop.svc.cluster.local:80"):
        assert authority.search(ok), ok
    for other in ("widgets", "details.web", "xdetails", "details.shop.evil.com", "shop.example.com"):
        assert not authority.search(other), other
    named = header_route(vs, replace(plan, header_gateways=("istio-system/internal-gateway", "mesh")))
    assert named["match"][0]["gateways"] == ["istio-system/internal-gateway", "mesh"]
    # a mesh-only VirtualService of the service alone needs neither restriction
    plain = header_route(virtual_service("details"), plan)
    assert plain["match"] == [{"headers": {"x-canary": {"exact": "true"}}}]


@pytest.mark.parametrize(
    ("stable", "weight", "original", "expected"),
    [
        (3, 5, 1, 1), (3, 25, 1, 1), (3, 34, 1, 2), (3, 50, 1, 2), (3, 67, 1, 3), (3, 100, 1, 3),
        (10, 5, 1, 1), (10, 11, 1, 2), (10, 50, 1, 5), (10, 100, 1, 10),
        (3, 5, 4, 4),  # never fewer than it had
        (0, 50, 0, 1),  # at least one
    ],
)  # fmt: skip
def test_canary_replicas_carry_their_share(stable: int, weight: int, original: int, expected: int) -> None:
    assert canary_replicas(stable, weight, original) == expected
    # the canary's share of traffic never exceeds its share of capacity relative to stable's
    assert canary_replicas(stable, weight, original) * 100 >= stable * weight


def test_the_hpa_of_a_deployment_is_found_by_its_scale_target() -> None:
    scalers = [hpa("reviews-stable", min_replicas=3, max_replicas=9), hpa("reviews-canary", min_replicas=1,
               max_replicas=2)]  # fmt: skip
    assert hpa_for(scalers, "reviews-canary") == scalers[1]
    assert hpa_for(scalers, "ratings-canary") is None


def plan_for(*flags: str) -> Plan:
    args = build_parser().parse_args(
        ["rollout", "--namespace", "shop", "--service", "reviews", "--canary-image", "app:2", *flags]
    )
    return plan_from(args, Settings())


def test_flags_for_the_header_gateways_the_analysis_deadline_and_the_cluster_domain() -> None:
    plan = plan_for("--header", "x-qa", "--header-gateways", "mesh, istio-system/qa-gateway", "--cluster-domain",
                    "Corp.Example.")  # fmt: skip
    assert plan.header_gateways == ("mesh", "istio-system/qa-gateway")
    assert plan.host == "reviews.shop.svc.corp.example"
    assert plan_for().analysis_deadline_s == 60.0  # default interval 5m: half of it, at most 1m
    assert plan_for("--step-interval", "30s").analysis_deadline_s == 15.0
    assert plan_for("--step-interval", "30s", "--analysis-timeout", "20s").analysis_deadline_s == 20.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--step-interval", "30s", "--analysis-timeout", "30s"), r"^--analysis-timeout: must be shorter"),
        (("--header-gateways", "mesh"), r"^--header-gateways: only applies with --header"),
        (("--header", "x-qa", "--header-gateways", " , "), r"^--header-gateways: name at least one gateway"),
    ],
)
def test_bad_rollout_flags_name_the_flag(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_for(*flags)
