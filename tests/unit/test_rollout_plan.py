"""Rollout's pure parts: flag parsing, host resolution and route ownership, the header route, capacity
maths, and the VirtualService patches (applied by an independent RFC 6902 implementation, the sandbox API
server's)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, replace
from typing import Any

import pytest

from exporter.cli import build_parser
from exporter.cli.rollout import parse_header, parse_steps, plan_from
from exporter.config import Settings
from exporter.errors import ConfigError
from exporter.kube.istio import apply_patch, istio_version_of
from exporter.model import ServiceRef
from exporter.rollout.plan import (
    Plan,
    RolloutError,
    State,
    canary_replicas,
    gateway_ref,
    header_routes,
    hpa_for,
    legacy_record,
    managed_routes,
    our_part,
    partial_hosts,
    resolve_host,
    routes_of_host,
    vs_ops,
)
from sandbox.kubeapi import apply_json_patch
from tests.support.canary_mesh import (
    HEADER,
    Request,
    hpa,
    rerouted,
    shared_virtual_service,
    virtual_service,
)

PLAN = Plan(service=ServiceRef("shop", "reviews"), image="app:2", header=("x-canary", "yes"))
ANNOTATION = "reviews.shop.rollout.mesh-exporter.io/state"
HEADER_ROUTE = "mesh-exporter-canary-header.reviews.shop.1"


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


def test_header_route_goes_just_before_our_route_with_its_settings_and_is_removed_again() -> None:
    vs = virtual_service("reviews")
    state = State(image="app:2", previous_image="app:1")
    with_header = apply_json_patch(vs, vs_ops(vs, PLAN, canary_weight=10, header=True, state=state))
    assert [h.get("name") for h in with_header["spec"]["http"]] == ["admin", HEADER_ROUTE, "primary"]
    assert with_header["spec"]["http"][1] == {
        "name": HEADER_ROUTE,
        "match": [{"headers": {"x-canary": {"exact": "yes"}}}],
        "timeout": "3s",
        "retries": {"attempts": 2, "perTryTimeout": "1s"},
        "route": [
            {"destination": {"host": "reviews.shop.svc.cluster.local", "subset": "canary", "port": {"number": 80}}}
        ],
    }
    assert set(with_header["metadata"]["annotations"]) == {ANNOTATION}
    assert primary(with_header) == {"stable": 90, "canary": 10}
    again = vs_ops(with_header, PLAN, canary_weight=25, header=True, state=state)
    assert [op["op"] for op in again] == ["add", "add", "add"]  # two weights and the record: not inserted twice
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
        # pilot's ResolveShortnameToFQDN completes only names without a dot: these are literal hosts
        ("reviews.shop", "web", "reviews.shop"),
        ("reviews.shop.svc", "web", "reviews.shop.svc"),
        ("reviews.shop.svc.cluster.local", "web", "reviews.shop.svc.cluster.local"),
        ("api.example.com", "shop", "api.example.com"),
        ("*", "shop", "*"),
        ("*.example.com", "shop", "*.example.com"),
        ("10.0.0.7", "shop", "10.0.0.7"),
        ("fd00::7", "shop", "fd00::7"),  # no dot, but an IP address: literal too
    ],
)
def test_hosts_resolve_exactly_as_istio_reads_them(host: str, namespace: str, expected: str) -> None:
    assert resolve_host(host, namespace) == expected


def test_only_routes_of_the_services_own_host_are_ours_whatever_their_subset_names() -> None:
    vs = shared_virtual_service("details")
    names = [h["name"] for h in vs["spec"]["http"]]
    plan = Plan(service=ServiceRef("shop", "details"), image="app:2")
    # `details-api` routes to the literal host details.shop: for Istio that is not details, so not ours
    assert [names[i] for i, _, _ in managed_routes(vs, plan)] == ["details"]
    assert partial_hosts(vs, plan) == [("details-api", "details.shop")]  # preflight warns about it
    widgets = Plan(service=ServiceRef("shop", "widgets"), image="app:2")
    assert [names[i] for i, _, _ in managed_routes(vs, widgets)] == ["widgets", "widgets-fqdn"]
    assert partial_hosts(vs, widgets) == []
    # the same VirtualService in another namespace: `details` there is details.web, not ours
    elsewhere = {**vs, "metadata": {**vs["metadata"], "namespace": "web"}}
    assert managed_routes(elsewhere, plan) == []
    in_shop_from_web = replace(plan, virtual_service="web/storefront")  # warned about: it looks like ours
    assert partial_hosts(elsewhere, in_shop_from_web) == [("details", "details"), ("details-api", "details.shop")]
    in_web = Plan(service=ServiceRef("web", "details"), image="app:2", virtual_service="web/storefront")
    assert [names[i] for i, _, _ in managed_routes(elsewhere, in_web)] == ["details"]
    assert routes_of_host(elsewhere, Plan(service=ServiceRef("shop", "nothing"), image="x")) == []


def test_on_a_shared_virtual_service_only_our_weights_change() -> None:
    vs = shared_virtual_service("details")
    plan = Plan(service=ServiceRef("shop", "details"), image="app:2", header=("x-canary", "true"))
    out = apply_json_patch(vs, vs_ops(vs, plan, canary_weight=25, header=True, state=State("app:2", "app:1")))
    http = {h["name"]: h for h in out["spec"]["http"]}
    assert [d["weight"] for d in http["details"]["route"]] == [75, 25]
    for name in ("widgets", "widgets-fqdn", "details-api"):  # the other splits stand (details.shop is not ours)
        assert http[name]["route"] == next(h for h in vs["spec"]["http"] if h["name"] == name)["route"]
    assert [h for h in out["spec"]["http"] if not h["name"].startswith("mesh-exporter")] == [
        h if h["name"] != "details"
        else {**h, "route": [{**h["route"][0], "weight": 75}, {**h["route"][1], "weight": 25}]}
        for h in vs["spec"]["http"]
    ]  # fmt: skip


def test_two_services_on_one_virtual_service_keep_their_own_record_and_header_route() -> None:
    vs = shared_virtual_service("details")
    details = Plan(service=ServiceRef("shop", "details"), image="d:2", header=("x-canary", "true"))
    widgets = Plan(service=ServiceRef("shop", "widgets"), image="w:2", header=("x-canary", "true"))
    d_state = State("d:2", "d:1", host=details.host, weight=25)
    w_state = State("w:2", "w:1", host=widgets.host, weight=5)
    vs = apply_json_patch(vs, vs_ops(vs, details, canary_weight=25, header=True, state=d_state))
    mid = apply_json_patch(vs, vs_ops(vs, widgets, canary_weight=5, header=True, state=w_state))
    assert State.recorded(mid, details) == d_state and State.recorded(mid, widgets) == w_state
    headers = {h["name"]: h["route"][0]["destination"]["host"] for h in mid["spec"]["http"]}
    assert [h["name"] for h in mid["spec"]["http"]] == [
        "mesh-exporter-canary-header.widgets.shop.1", "widgets", "mesh-exporter-canary-header.widgets.shop.2",
        "widgets-fqdn", "mesh-exporter-canary-header.details.shop.1", "details", "details-api", "default",
    ]  # fmt: skip
    assert {n: h for n, h in headers.items() if n.startswith("mesh-exporter")} == {
        "mesh-exporter-canary-header.widgets.shop.1": "widgets.shop.svc.cluster.local",
        "mesh-exporter-canary-header.widgets.shop.2": "widgets.shop.svc.cluster.local",
        "mesh-exporter-canary-header.details.shop.1": "details.shop.svc.cluster.local",
    }
    assert our_part(mid, details) == our_part(vs, details)  # widgets' write left details' part as it was
    assert our_part(mid, widgets) != our_part(vs, widgets)
    # widgets rolls back: its header routes go, details' route, weights and record stay as they were
    done = apply_json_patch(mid, vs_ops(mid, widgets, canary_weight=0, header=False, state=w_state))
    assert [h["name"] for h in done["spec"]["http"]] == [h["name"] for h in vs["spec"]["http"]]
    details_route = next(h for h in done["spec"]["http"] if h["name"] == "details")
    assert [d["weight"] for d in details_route["route"]] == [75, 25]
    assert done["metadata"]["annotations"][details.annotation] == vs["metadata"]["annotations"][details.annotation]


def test_a_record_of_another_host_is_refused() -> None:
    vs = virtual_service("reviews")
    foreign = json.dumps(asdict(State("app:2", "app:1", host="ratings.shop.svc.cluster.local")))
    vs["metadata"]["annotations"] = {ANNOTATION: foreign}
    with pytest.raises(RolloutError, match=r"records a rollout of host ratings\.shop\.svc\.cluster\.local, not "
                       r"reviews\.shop\.svc\.cluster\.local"):  # fmt: skip
        State.recorded(vs, PLAN)
    vs["metadata"]["annotations"] = {ANNOTATION: "{not json"}
    with pytest.raises(RolloutError, match="is not a rollout record"):
        State.recorded(vs, PLAN)
    vs["metadata"]["annotations"] = {"ratings.shop.rollout.mesh-exporter.io/state": foreign}
    assert State.recorded(vs, PLAN) is None  # another service's record is not read at all


def with_catch_all(ours: str) -> dict[str, Any]:
    """The shared VirtualService whose last route (no match: everything left) is also `ours`'s split."""
    vs = shared_virtual_service(ours)
    vs["spec"]["http"][-1] = {"name": "rest", "route": [
        {"destination": {"host": ours, "subset": "stable"}, "weight": 100},
        {"destination": {"host": ours, "subset": "canary"}, "weight": 0},
    ]}  # fmt: skip
    return vs


CART = Plan(service=ServiceRef("shop", "cart"), image="app:2", header=HEADER, virtual_service="storefront")
GATEWAY = "istio-system/public-gateway"
HOSTS = ("cart", "cart.shop.svc.cluster.local", "shop.example.com", "shop.example.com.shop.svc.cluster.local",
         "widgets", "widgets.shop.svc.cluster.local")  # fmt: skip
CANARY = [{"destination": {"host": "cart.shop.svc.cluster.local", "subset": "canary"}}]


@pytest.mark.parametrize(
    ("make", "gateways", "expected"),
    [
        # in-mesh by default; our /cart/ route takes every authority, so does its header route; nothing else
        (shared_virtual_service, (), {Request("mesh", h, "/cart/x", True): "cart" for h in HOSTS}),
        (shared_virtual_service, (GATEWAY,), {Request(GATEWAY, h, "/cart/x", True): "cart" for h in HOSTS}),
        (shared_virtual_service, ("mesh", GATEWAY),
         {Request(g, h, "/cart/x", True): "cart" for g in ("mesh", GATEWAY) for h in HOSTS}),
        # our catch-all takes what no route before it took; in-mesh, the header sends only cart's own authority
        # (of those) to the canary, through a gateway (external hosts) all of them
        (with_catch_all, (),
         {Request("mesh", h, "/cart/x", True): "cart" for h in HOSTS}
         | {Request("mesh", h, "/", True): "rest" for h in HOSTS[:2]}),
        (with_catch_all, (GATEWAY,),
         {Request(GATEWAY, h, p, True): r for h in HOSTS for p, r in (("/cart/x", "cart"), ("/", "rest"))}),
    ],
)  # fmt: skip
def test_the_header_takes_to_the_canary_only_requests_our_routes_already_took(
    make: Any, gateways: tuple[str, ...], expected: dict[Request, str]
) -> None:
    vs = make("cart")
    plan = replace(CART, header_gateways=gateways)
    state = State("app:2", "app:1", host=plan.host)
    after = apply_json_patch(vs, vs_ops(vs, plan, canary_weight=5, header=True, state=state))
    changed = rerouted(vs, after)  # first-match routing of every host, path and gateway, with and without it
    assert {request: was for request, (was, _) in changed.items()} == expected
    assert all(route == CANARY for _, route in changed.values())
    back = apply_json_patch(after, vs_ops(after, plan, canary_weight=0, header=False, state=state))
    assert rerouted(vs, back) == {}


def test_header_matches_keep_our_conditions_and_the_authority_only_for_a_catch_all() -> None:
    vs = with_catch_all("cart")
    vs["spec"]["http"][2]["match"] = [
        {"uri": {"prefix": "/cart/"}, "headers": {"x-user": {"exact": "a"}}, "gateways": [GATEWAY]},
        {"uri": {"prefix": "/c/"}},
        {"uri": {"prefix": "/qa-off/"}, "withoutHeaders": {"x-qa": {"exact": "true"}}},
        {"uri": {"prefix": "/other/"}, "headers": {"x-qa": {"exact": "false"}}},
    ]
    routes = header_routes(vs, replace(CART, header_gateways=("mesh", GATEWAY)))
    assert [(i, r["name"]) for i, r in routes] == [(2, "mesh-exporter-canary-header.cart.shop.1"),
                                                    (4, "mesh-exporter-canary-header.cart.shop.2")]  # fmt: skip
    (_, first), (_, rest) = routes
    qa = {"x-qa": {"exact": "true"}}
    assert first["match"] == [  # a match only for the gateway keeps to it; the header never joins a contrary one
        {"uri": {"prefix": "/cart/"}, "headers": {"x-user": {"exact": "a"}} | qa},
        {"uri": {"prefix": "/c/"}, "headers": qa, "gateways": ["mesh"]},
        {"uri": {"prefix": "/c/"}, "headers": qa, "gateways": [GATEWAY]},
    ]
    in_mesh, through_gateway = rest["match"]
    assert through_gateway == {"headers": qa, "gateways": [GATEWAY]}  # external hosts: no authority
    assert in_mesh.pop("gateways") == ["mesh"] and in_mesh.pop("headers") == qa
    authority = re.compile(in_mesh.pop("authority")["regex"])
    assert in_mesh == {}
    for ok in ("cart", "cart:9080", "cart.shop", "cart.shop.svc", "cart.shop.svc.cluster.local:80"):
        assert authority.search(ok), ok
    for other in ("widgets", "cart.web", "xcart", "cart.shop.evil.com", "shop.example.com"):
        assert not authority.search(other), other
    # a mesh-only VirtualService of the service alone needs neither restriction
    ((_, plain),) = header_routes(virtual_service("cart"), CART)
    assert plain["match"] == [{"headers": qa}]
    # a gateway written without a namespace is the VirtualService's namespace's, as Istio reads it
    local = {**vs, "spec": {**vs["spec"], "gateways": ["mesh", "qa-gateway"]}}
    ((_, only),) = header_routes(local, replace(CART, header_gateways=("qa-gateway",)))[1:]
    assert only["match"] == [{"headers": qa, "gateways": ["shop/qa-gateway"]}]


def test_a_record_of_the_first_layout_is_named() -> None:
    vs = virtual_service("reviews")
    assert legacy_record(vs) == ""
    vs["metadata"]["annotations"] = {"mesh-exporter.io/rollout": "{}"}
    assert legacy_record(vs) == "annotation mesh-exporter.io/rollout"
    vs["spec"]["http"].insert(0, {"name": "mesh-exporter-canary-header", "route": []})
    assert legacy_record(vs) == "annotation mesh-exporter.io/rollout and HTTP route mesh-exporter-canary-header"


@pytest.mark.parametrize(
    ("written", "expected"),
    [("mesh", "mesh"), ("gw", "shop/gw"), ("./gw", "shop/gw"), ("edge/gw", "edge/gw"), ("gw.edge", "edge/gw"),
     ("gw.edge.svc.cluster.local", "edge/gw"), ("gw.edge.svc.corp.example", "edge/gw")],
)  # fmt: skip
def test_gateways_are_named_as_istio_resolves_them(written: str, expected: str) -> None:
    assert gateway_ref(written, "shop") == expected


def test_a_gateway_written_in_the_legacy_fqdn_form_is_the_one_named_by_header_gateways() -> None:
    vs = shared_virtual_service("cart")
    vs["spec"]["gateways"] = ["mesh", "public-gateway.istio-system.svc.cluster.local"]
    plan = replace(CART, header_gateways=("istio-system/public-gateway",))
    ((_, route),) = header_routes(vs, plan)
    assert route["match"][0]["gateways"] == ["istio-system/public-gateway"]


@pytest.mark.parametrize(
    ("gateways", "named", "message"),
    [
        (["mesh", "istio-system/public-gateway"], ("istio-system/qa-gateway",),
         r"--header-gateways names istio-system/qa-gateway, not bound to VirtualService shop/storefront"),
        (None, ("istio-system/public-gateway",), r"names istio-system/public-gateway, not bound .*\(bound: mesh\)"),
        (["istio-system/public-gateway"], ("mesh",), r"names mesh, not bound"),
        (["istio-system/public-gateway"], (), r"bound only to gateways istio-system/public-gateway: in-mesh traffic "
         r"never uses it"),
    ],
)  # fmt: skip
def test_a_header_route_that_could_never_match_is_refused(
    gateways: list[str] | None, named: tuple[str, ...], message: str
) -> None:
    vs = shared_virtual_service("details")
    if gateways is None:
        del vs["spec"]["gateways"]
    else:
        vs["spec"]["gateways"] = gateways
    plan = Plan(service=ServiceRef("shop", "details"), image="app:2", header=("x-canary", "true"))
    with pytest.raises(RolloutError, match=message):
        header_routes(vs, replace(plan, virtual_service="storefront", header_gateways=named))


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


def test_a_virtual_service_in_another_namespace() -> None:
    plan = plan_for("--virtual-service", "edge/storefront")
    assert (plan.vs_namespace, plan.vs_name, plan.host) == ("edge", "storefront", "reviews.shop.svc.cluster.local")
    assert (plan_for().vs_namespace, plan_for().vs_name) == ("shop", "reviews")
    assert (plan_for("--virtual-service", "front").vs_namespace, plan_for("--virtual-service", "front").vs_name) == (
        "shop", "front",
    )  # fmt: skip
    # object names are DNS subdomains: dots allowed
    dotted = plan_for("--virtual-service", "edge/store.front", "--destination-rule", "reviews.v2",
                      "--stable-deployment", "reviews.stable", "--canary-deployment", "reviews.canary")  # fmt: skip
    assert (dotted.vs_name, dotted.dr_name, dotted.stable_deployment, dotted.canary_deployment) == (
        "store.front", "reviews.v2", "reviews.stable", "reviews.canary",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--namespace", "Shop!"), r"^--namespace: not a Kubernetes name: 'Shop!'"),
        (("--service", "Reviews"), r"^--service: not a Kubernetes name: 'Reviews'"),
        (("--virtual-service", "Edge/storefront"), r"^--virtual-service: not a Kubernetes name: 'Edge'"),
        (("--virtual-service", "edge/"), r"^--virtual-service: expected NAME or NAMESPACE/NAME"),
        (("--virtual-service", "a/b/c"), r"^--virtual-service: expected NAME or NAMESPACE/NAME"),
        (("--virtual-service", "store_front"), r"^--virtual-service: not a Kubernetes object name .*'store_front'"),
        (("--destination-rule", "DR"), r"^--destination-rule: not a Kubernetes object name"),
        (("--canary-deployment", "a.-b"), r"^--canary-deployment: not a Kubernetes object name"),
        (("--step-interval", "30s", "--analysis-timeout", "30s"), r"^--analysis-timeout: must be shorter"),
        (("--header-gateways", "mesh"), r"^--header-gateways: only applies with --header"),
        (("--header", "x-qa", "--header-gateways", " , "), r"^--header-gateways: name at least one gateway"),
    ],
)
def test_bad_rollout_flags_name_the_flag(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_for(*flags)


def test_the_pure_plan_loads_no_kubernetes_client() -> None:
    code = (
        "import sys, exporter.rollout.plan; print('kubernetes' in sys.modules, 'exporter.kube.client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
