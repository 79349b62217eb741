"""Rollout's pure parts: flag parsing, and the VirtualService patches (applied by an independent RFC 6902
implementation, the sandbox API server's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.cli.rollout import parse_header, parse_steps
from exporter.errors import ConfigError
from exporter.kube.istio import apply_patch, istio_version_of
from exporter.model import ServiceRef
from exporter.rollout.engine import ANNOTATION, HEADER_ROUTE, Plan, State, Targets, vs_ops
from sandbox.kubeapi import apply_json_patch
from tests.support.canary_mesh import virtual_service

PLAN = Plan(service=ServiceRef("shop", "reviews"), image="app:2", header=("x-canary", "yes"))
TARGETS = Targets("reviews-canary", "reviews-stable", 0, 0, "canary", "stable", "reviews")


def primary(vs: dict[str, Any]) -> dict[str, int]:
    route = next(h for h in vs["spec"]["http"] if h.get("name") == "primary")["route"]
    return {d["destination"]["subset"]: d["weight"] for d in route}


@pytest.mark.parametrize("weight", [0, 5, 33, 100])
def test_weights_sum_to_100_and_nothing_else_changes(weight: int) -> None:
    vs = virtual_service("reviews")
    state = State(image="app:2", previous_image="app:1", weight=weight)
    ops = vs_ops(vs, PLAN, TARGETS, canary_weight=weight, header=False, state=state)
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
    with_header = apply_json_patch(vs, vs_ops(vs, PLAN, TARGETS, canary_weight=10, header=True, state=state))
    assert [h.get("name") for h in with_header["spec"]["http"]] == [HEADER_ROUTE, "admin", "primary"]
    assert with_header["spec"]["http"][0]["match"] == [{"headers": {"x-canary": {"exact": "yes"}}}]
    assert primary(with_header) == {"stable": 90, "canary": 10}
    again = vs_ops(with_header, PLAN, TARGETS, canary_weight=25, header=True, state=state)
    assert not any(op["op"] == "remove" or op["path"] == "/spec/http/0" for op in again)  # not inserted twice
    ops = vs_ops(with_header, PLAN, TARGETS, canary_weight=0, header=False, state=state)
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
