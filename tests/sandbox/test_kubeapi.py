"""The sandbox Kubernetes API server, driven by the real `kubernetes` client over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from exporter.selectors import LabelSelectorError, parse_label_selector
from sandbox.kubeapi import FakeKubeAPI, JSONPatchError, apply_json_patch, apply_merge_patch

T = TypeVar("T")

MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as server:
        yield server


def _client_for(server: FakeKubeAPI, tmp_path: Path) -> client.ApiClient:
    path = server.write_kubeconfig(tmp_path / "kubeconfig")
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)  # type: ignore[no-untyped-call]
    return client.ApiClient(cfg)


@pytest.fixture
def kube(api: FakeKubeAPI, tmp_path: Path) -> Iterator[client.ApiClient]:
    api_client = _client_for(api, tmp_path)
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


def _status(exc: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "")
    return body


def some(value: T | None) -> T:
    """A field the server must have filled in."""
    assert value is not None
    return value


def as_dict(value: object) -> dict[str, Any]:
    """CustomObjectsApi answers are typed `object`; they are the JSON objects."""
    assert isinstance(value, dict)
    return value


def names(items: list[Any]) -> list[str]:
    return [some(item.metadata).name for item in items]


def containers(d: client.V1Deployment) -> list[client.V1Container]:
    return some(some(d.spec).template.spec).containers


def service(namespace: str, name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}},
    }


def deployment(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "registry.local/app:1.0", "ports": [{"containerPort": 8080}]},
                        {"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"},
                    ]
                },
            },
        },
        "status": {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1},
    }


def virtual_service(namespace: str, name: str, api_version: str = "networking.istio.io/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [name],
            "http": [
                {
                    "route": [
                        {"destination": {"host": name, "subset": "stable"}, "weight": 100},
                        {"destination": {"host": name, "subset": "canary"}, "weight": 0},
                    ]
                }
            ],
        },
    }


# ---- kubeconfig and auth ---------------------------------------------------------------------


def test_kubeconfig_configures_only_the_given_configuration(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    assert kube.configuration.host == api.url
    assert kube.configuration.api_key == {"BearerToken": "Bearer test-token"}  # where v37 keeps it
    assert client.Configuration.get_default_copy().host != api.url
    assert client.VersionApi(kube).get_code().git_version == "v1.32.0"


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_requests_without_the_bearer_token_get_401(api: FakeKubeAPI, token: str | None) -> None:
    api.add(service("default", "web"))
    cfg = client.Configuration(host=api.url)
    if token is not None:
        cfg.api_key = {"BearerToken": f"Bearer {token}"}
    with client.ApiClient(cfg) as bare, pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(bare).list_service_for_all_namespaces()
    assert caught.value.status == 401
    assert _status(caught.value)["reason"] == "Unauthorized"
    assert api.requests[-1].status == 401


# ---- services: label selectors and paging -----------------------------------------------------


def test_paging_with_label_selector_returns_exactly_the_labelled_services(
    api: FakeKubeAPI, kube: client.ApiClient
) -> None:
    for ns in ("bookinfo", "payments", "zeta"):
        for name in ("a", "b", "c"):
            api.add(service(ns, f"{name}-svc", migrated="true" if name != "b" else "false"))
    api.add(service("payments", "legacy"))  # unlabelled
    core = client.CoreV1Api(kube)
    found: list[tuple[str, str]] = []
    pages = 0
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"label_selector": "migrated=true", "limit": 2}
        if token:
            kwargs["_continue"] = token
        page = core.list_service_for_all_namespaces(**kwargs)
        pages += 1
        assert len(page.items) <= 2
        assert some(page.metadata).resource_version
        found += [(some(some(s.metadata).namespace), some(some(s.metadata).name)) for s in page.items]
        token = some(page.metadata)._continue
        if not token:
            break
    assert found == [(ns, f"{n}-svc") for ns in ("bookinfo", "payments", "zeta") for n in ("a", "c")]
    assert pages == 3
    lists = [r for r in api.requests if r.path == "/api/v1/services"]
    assert len(lists) == 3
    assert lists[0].query == {"labelSelector": "migrated=true", "limit": "2"}
    assert "continue" in lists[1].query


def test_page_limit_cap_forces_small_pages(tmp_path: Path) -> None:
    with FakeKubeAPI(page_limit_cap=1) as server:
        for i in range(3):
            server.add(service("default", f"svc-{i}"))
        with _client_for(server, tmp_path) as kube:
            core = client.CoreV1Api(kube)
            first = core.list_namespaced_service("default")
            assert names(first.items) == ["svc-0"]
            assert some(first.metadata).remaining_item_count == 2
            second = core.list_namespaced_service("default", limit=50, _continue=some(first.metadata)._continue)
            assert names(second.items) == ["svc-1"]
            third = core.list_namespaced_service("default", _continue=some(second.metadata)._continue)
            assert names(third.items) == ["svc-2"]
            assert some(third.metadata)._continue is None


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "e"]),
        ("app==web", ["a", "e"]),
        ("app!=web", ["b", "c", "d"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d", "e"]),
        ("app in (api, db)", ["b", "c"]),
        ("app notin (api,db)", ["a", "d", "e"]),
        ("app=web,tier=front", ["a"]),
        ("app, !tier", ["c", "e"]),
        ("canary>2", ["e"]),
        ("mesh.istio.io/managed=yes", ["d"]),
        ("", ["a", "b", "c", "d", "e"]),
    ],
)
def test_label_selector_forms(api: FakeKubeAPI, kube: client.ApiClient, selector: str, expected: list[str]) -> None:
    api.add(service("shop", "a", app="web", tier="front", migrated="true"))
    api.add(service("shop", "b", app="api", tier="back"))
    api.add(service("shop", "c", app="db"))
    api.add(service("shop", "d", **{"mesh.istio.io/managed": "yes"}))
    api.add(service("shop", "e", app="web", canary="3"))
    api.add(service("other", "a", app="web", tier="front"))  # another namespace: never listed
    result = client.CoreV1Api(kube).list_namespaced_service("shop", label_selector=selector)
    assert names(result.items) == expected
    assert result.kind == "ServiceList"


@pytest.mark.parametrize("selector", ["app in", "app=web,", "=web", "app in (a", "app=web extra", "app=-bad-"])
def test_malformed_selector_is_400_bad_request(api: FakeKubeAPI, kube: client.ApiClient, selector: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(kube).list_service_for_all_namespaces(label_selector=selector)
    assert caught.value.status == 400
    status = _status(caught.value)
    assert status["kind"] == "Status"
    assert status["reason"] == "BadRequest"
    assert status["message"].startswith("unable to parse requirement")


def test_parse_label_selector_directly() -> None:
    requirements = parse_label_selector("a=1, b notin (x, y), !c")
    assert [(r.key, r.operator, r.values) for r in requirements] == [
        ("a", "=", ("1",)),
        ("b", "notin", ("x", "y")),
        ("c", "!", ()),
    ]
    assert requirements[1].matches({"b": "z"}) and not requirements[1].matches({"b": "x"})
    with pytest.raises(LabelSelectorError, match="expected: '\\('"):
        parse_label_selector("a in x")


# ---- custom objects: VirtualService and PeerAuthentication -----------------------------------


def test_virtual_service_merge_patch_with_stale_resource_version_is_409(
    api: FakeKubeAPI, kube: client.ApiClient
) -> None:
    stored = api.add(virtual_service("shop", "reviews"))
    custom = client.CustomObjectsApi(kube)
    args = ("networking.istio.io", "v1", "shop", "virtualservices", "reviews")
    current = as_dict(custom.get_namespaced_custom_object(*args))
    assert current["spec"]["hosts"] == ["reviews"]
    rv = current["metadata"]["resourceVersion"]
    assert rv == stored["metadata"]["resourceVersion"]

    routes = [
        {"destination": {"host": "reviews", "subset": "stable"}, "weight": 90},
        {"destination": {"host": "reviews", "subset": "canary"}, "weight": 10},
    ]
    weights = {"spec": {"http": [{"route": routes}]}}
    patched = as_dict(custom.patch_namespaced_custom_object(*args, {**weights, "metadata": {"resourceVersion": rv}}))
    assert [r["weight"] for r in patched["spec"]["http"][0]["route"]] == [90, 10]
    assert int(patched["metadata"]["resourceVersion"]) > int(rv)
    assert patched["metadata"]["generation"] == 2

    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(*args, {**weights, "metadata": {"resourceVersion": rv}})
    assert caught.value.status == 409
    status = _status(caught.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        f'Operation cannot be fulfilled on virtualservices.networking.istio.io "reviews": {MODIFIED}'
    )
    stored = some(api.get("networking.istio.io/v1", "virtualservices", "shop", "reviews"))
    assert [r["weight"] for r in stored["spec"]["http"][0]["route"]] == [90, 10]


def test_virtual_service_json_patch_needs_the_json_patch_content_type(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    api.add(virtual_service("shop", "reviews"))
    custom = client.CustomObjectsApi(kube)
    args = ("networking.istio.io", "v1", "shop", "virtualservices", "reviews")
    ops = [
        {"op": "test", "path": "/spec/http/0/route/1/weight", "value": 0},
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 75},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 25},
    ]
    # CustomObjectsApi sends every body, a list too, as a merge patch: the server rejects that.
    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(*args, ops)
    assert caught.value.status == 422
    assert api.requests[-1].headers["Content-Type"] == "application/merge-patch+json"

    patched = as_dict(custom.patch_namespaced_custom_object(*args, ops, _content_type="application/json-patch+json"))
    assert [r["weight"] for r in patched["spec"]["http"][0]["route"]] == [75, 25]
    assert api.requests[-1].headers["content-type"] == "application/json-patch+json"

    # The same ops again: the test op fails now, the real server answers 422 Invalid.
    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(*args, ops, _content_type="application/json-patch+json")
    assert caught.value.status == 422
    status = _status(caught.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == "the server rejected our request due to an error in our request"
    stored = api.get("networking.istio.io/v1", "virtualservices", "shop", "reviews")
    assert stored is not None
    assert [r["weight"] for r in stored["spec"]["http"][0]["route"]] == [75, 25]


def test_strategic_merge_patch_on_a_custom_resource_is_415(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    api.add(virtual_service("shop", "reviews"))
    with pytest.raises(client.ApiException) as caught:
        client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            "shop",
            "virtualservices",
            "reviews",
            {"spec": {"hosts": ["x"]}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert caught.value.status == 415
    assert _status(caught.value)["reason"] == "UnsupportedMediaType"


def test_istio_objects_are_served_under_v1_and_v1beta1(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    api.add(virtual_service("shop", "old", api_version="networking.istio.io/v1beta1"))
    api.add(virtual_service("shop", "new"))
    custom = client.CustomObjectsApi(kube)
    for version in ("v1", "v1beta1"):
        listed = as_dict(
            custom.list_namespaced_custom_object("networking.istio.io", version, "shop", "virtualservices")
        )
        assert listed["kind"] == "VirtualServiceList"
        assert [(o["metadata"]["name"], o["apiVersion"]) for o in listed["items"]] == [
            ("new", f"networking.istio.io/{version}"),
            ("old", f"networking.istio.io/{version}"),
        ]
    stored = api.get("networking.istio.io/v1", "virtualservices", "shop", "old")
    assert stored is not None and stored["apiVersion"] == "networking.istio.io/v1beta1"
    with pytest.raises(client.ApiException) as caught:
        custom.list_namespaced_custom_object("networking.istio.io", "v9", "shop", "virtualservices")
    assert caught.value.status == 404


def test_peer_authentications_listed_cluster_wide_and_by_namespace(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    for namespace, mode in (("istio-system", "STRICT"), ("legacy", "PERMISSIVE"), ("shop", "STRICT")):
        api.add(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": namespace, "labels": {"mode": mode.lower()}},
                "spec": {"mtls": {"mode": mode}},
            }
        )
    custom = client.CustomObjectsApi(kube)
    everything = as_dict(custom.list_cluster_custom_object("security.istio.io", "v1", "peerauthentications"))
    assert [(o["metadata"]["namespace"], o["spec"]["mtls"]["mode"]) for o in everything["items"]] == [
        ("istio-system", "STRICT"),
        ("legacy", "PERMISSIVE"),
        ("shop", "STRICT"),
    ]
    strict = as_dict(
        custom.list_cluster_custom_object(
            "security.istio.io", "v1beta1", "peerauthentications", label_selector="mode=strict"
        )
    )
    assert [o["metadata"]["namespace"] for o in strict["items"]] == ["istio-system", "shop"]
    one = as_dict(custom.list_namespaced_custom_object("security.istio.io", "v1", "legacy", "peerauthentications"))
    assert [o["metadata"]["namespace"] for o in one["items"]] == ["legacy"]


def test_missing_object_is_404_not_found(kube: client.ApiClient) -> None:
    with pytest.raises(client.ApiException) as caught:
        client.CustomObjectsApi(kube).get_namespaced_custom_object(
            "networking.istio.io", "v1", "shop", "virtualservices", "nope"
        )
    assert caught.value.status == 404
    status = _status(caught.value)
    assert status["reason"] == "NotFound"
    assert status["message"] == 'virtualservices.networking.istio.io "nope" not found'


# ---- deployments -----------------------------------------------------------------------------


def test_patch_deployment_as_the_client_sends_it_and_as_the_rollout_does(
    api: FakeKubeAPI, kube: client.ApiClient
) -> None:
    api.add(deployment("shop", "reviews"))
    apps = client.AppsV1Api(kube)
    # a dict body goes as a strategic merge patch (the rollout tests' controllers scale this way)
    result = apps.patch_namespaced_deployment("reviews", "shop", {"spec": {"replicas": 3}})
    assert api.requests[-1].headers["Content-Type"] == "application/strategic-merge-patch+json"
    assert some(result.spec).replicas == 3
    assert [c.name for c in containers(result)] == ["app", "istio-proxy"]  # the rest is untouched
    assert some(result.metadata).generation == 2
    assert some(result.status).observed_generation == 1  # status is a subresource: a spec patch leaves it alone

    # a list body goes as a JSON patch: what the product sends
    ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.local/app:3.0"}]
    result = apps.patch_namespaced_deployment("reviews", "shop", ops)
    assert api.requests[-1].headers["Content-Type"] == "application/json-patch+json"
    assert [(c.name, c.image) for c in containers(result)] == [
        ("app", "registry.local/app:3.0"),
        ("istio-proxy", "istio/proxyv2:1.24.0"),
    ]
    assert some(containers(result)[0].ports)[0].container_port == 8080

    # no other patch format is served
    with pytest.raises(client.ApiException) as caught:
        apps.patch_namespaced_deployment("reviews", "shop", ops, _content_type="application/apply-patch+yaml")
    assert caught.value.status == 415


def test_deployment_status_subresource(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    api.add(deployment("shop", "reviews"))
    apps = client.AppsV1Api(kube)
    result = apps.patch_namespaced_deployment_status("reviews", "shop", {"status": {"readyReplicas": 1}})
    assert some(result.status).ready_replicas == 1
    assert some(result.metadata).generation == 1
    assert some(api.get("apps/v1", "deployments", "shop", "reviews"))["status"]["readyReplicas"] == 1


# ---- leases ----------------------------------------------------------------------------------


def test_lease_create_and_replace_with_stale_resource_version_is_409(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    coordination = client.CoordinationV1Api(kube)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="mesh-exporter", namespace="istio-system"),
        spec=client.V1LeaseSpec(holder_identity="pod-a", lease_duration_seconds=15),
    )
    created = coordination.create_namespaced_lease("istio-system", lease)
    created_rv = some(some(created.metadata).resource_version)
    assert some(created.metadata).uid

    with pytest.raises(client.ApiException) as caught:
        coordination.create_namespaced_lease("istio-system", lease)
    assert caught.value.status == 409
    assert _status(caught.value)["reason"] == "AlreadyExists"

    # pod-b takes over with the current resourceVersion...
    mine = coordination.read_namespaced_lease("mesh-exporter", "istio-system")
    some(mine.spec).holder_identity = "pod-b"
    renewed = coordination.replace_namespaced_lease("mesh-exporter", "istio-system", mine)
    assert some(renewed.spec).holder_identity == "pod-b"
    assert int(some(some(renewed.metadata).resource_version)) > int(created_rv)

    # ...and pod-a, still holding the old copy, loses.
    stale = created
    some(stale.spec).holder_identity = "pod-a"
    with pytest.raises(client.ApiException) as caught:
        coordination.replace_namespaced_lease("mesh-exporter", "istio-system", stale)
    assert caught.value.status == 409
    status = _status(caught.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "mesh-exporter": {MODIFIED}'
    )
    assert status["details"] == {"name": "mesh-exporter", "group": "coordination.k8s.io", "kind": "leases"}
    stored = api.get("coordination.k8s.io/v1", "leases", "istio-system", "mesh-exporter")
    assert stored is not None and stored["spec"]["holderIdentity"] == "pod-b"


# ---- fault injection -------------------------------------------------------------------------


def test_fail_next_answers_the_next_matching_requests(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    api.add(service("shop", "web"))
    api.add(deployment("shop", "web"))
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    api.fail_next(2, 503, path_prefix="/api/v1/")
    for _ in range(2):
        with pytest.raises(client.ApiException) as caught:
            core.list_service_for_all_namespaces()
        assert caught.value.status == 503
        assert _status(caught.value)["reason"] == "ServiceUnavailable"
        assert names([apps.read_namespaced_deployment("web", "shop")]) == ["web"]  # other paths unaffected
    assert names(core.list_service_for_all_namespaces().items) == ["web"]

    # urllib3's default Retry honours Retry-After on a 429: the kubernetes client retries once by itself...
    api.fail_next(1, 429)
    assert names([apps.read_namespaced_deployment("web", "shop")]) == ["web"]
    assert [r.status for r in api.requests] == [503, 200, 503, 200, 200, 429, 200]
    # ...unless the configuration turns urllib3 retries off, as the exporter does.
    kube.configuration.retries = 0
    with client.ApiClient(kube.configuration) as no_retries:
        api.fail_next(1, 429)
        with pytest.raises(client.ApiException) as caught:
            client.AppsV1Api(no_retries).read_namespaced_deployment("web", "shop")
    assert caught.value.status == 429
    assert some(caught.value.headers)["Retry-After"] == "1"
    assert _status(caught.value)["reason"] == "TooManyRequests"


def test_set_unavailable_is_an_outage_until_cleared(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    api.add(service("shop", "web"))
    core = client.CoreV1Api(kube)
    api.set_unavailable(True)
    for _ in range(3):
        with pytest.raises(client.ApiException) as caught:
            core.list_namespaced_service("shop")
        assert caught.value.status == 503
    api.set_unavailable(False)
    assert len(core.list_namespaced_service("shop").items) == 1


# ---- the patch functions themselves ----------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = {"a/b": {"~k": 1}, "list": [1, 2, 3], "keep": True}
    patched = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "add", "path": "/list/0", "value": 0},
            {"op": "remove", "path": "/list/1"},
            {"op": "replace", "path": "/a~1b/~0k", "value": 2},
            {"op": "copy", "from": "/a~1b", "path": "/copied"},
            {"op": "move", "from": "/keep", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": True},
        ],
    )
    assert patched == {"a/b": {"~k": 2}, "list": [0, 2, 3, 4], "copied": {"~k": 2}, "moved": True}
    assert doc["list"] == [1, 2, 3]  # the input is untouched
    with pytest.raises(JSONPatchError, match="test failed"):
        apply_json_patch({"n": 1}, [{"op": "test", "path": "/n", "value": True}])  # 1 is not true
    with pytest.raises(JSONPatchError):
        apply_json_patch({"n": 1}, [{"op": "remove", "path": "/missing"}])
    with pytest.raises(JSONPatchError):
        apply_json_patch({"l": [1]}, [{"op": "replace", "path": "/l/1", "value": 2}])


def test_merge_patch() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}], "x": 1, "y": 2}}
    patch = {"spec": {"containers": [{"name": "b", "image": "2"}], "x": None}}
    assert apply_merge_patch(target, patch) == {"spec": {"containers": [{"name": "b", "image": "2"}], "y": 2}}
    assert target["spec"]["x"] == 1  # the input is untouched


def test_only_the_kinds_and_versions_in_use_are_served(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(kube).list_namespaced_pod("shop")
    assert caught.value.status == 404
    with pytest.raises(client.ApiException) as caught:
        client.AutoscalingV1Api(kube).list_namespaced_horizontal_pod_autoscaler("shop")
    assert caught.value.status == 404
    with pytest.raises(ValueError, match="serves only"):
        api.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})


def test_horizontal_pod_autoscalers_are_served_under_autoscaling_v2(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    scaling = client.AutoscalingV2Api(kube)
    body = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 4},
    }  # fmt: skip
    scaling.create_namespaced_horizontal_pod_autoscaler("shop", body)
    listed = scaling.list_namespaced_horizontal_pod_autoscaler("shop")
    assert [(h.metadata.name, h.spec.min_replicas, h.spec.max_replicas) for h in listed.items] == [("web", 1, 4)]
    ops = [{"op": "add", "path": "/spec/minReplicas", "value": 3}]
    scaling.patch_namespaced_horizontal_pod_autoscaler("web", "shop", ops)
    stored = some(api.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "web"))
    assert (stored["spec"]["minReplicas"], stored["spec"]["maxReplicas"]) == (3, 4)
    assert stored["kind"] == "HorizontalPodAutoscaler"
    # a built-in group: strategic merge patch is accepted, as on the real server
    scaling.patch_namespaced_horizontal_pod_autoscaler("web", "shop", {"spec": {"maxReplicas": 5}})
    assert some(api.get("autoscaling/v2", "horizontalpodautoscalers", "shop", "web"))["spec"]["maxReplicas"] == 5


def test_events_are_created_with_generate_name_and_kept(api: FakeKubeAPI, kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "reviews."},
        "involvedObject": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "name": "reviews",
                           "namespace": "shop"},
        "reason": "RolloutStep",
        "message": "canary at 5 %",
        "type": "Normal",
    }  # fmt: skip
    made = core.create_namespaced_event("shop", body)
    assert made.metadata.name.startswith("reviews.") and len(made.metadata.name) > len("reviews.")
    (stored,) = api.objects("v1", "events")
    assert stored["involvedObject"]["kind"] == "VirtualService" and stored["reason"] == "RolloutStep"
    assert stored["metadata"]["namespace"] == "shop"


def test_slow_next_holds_matching_requests_and_the_log_says_when_each_arrived(
    api: FakeKubeAPI, kube: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube)
    api.slow_next(1, 0.5, path_prefix="/api/v1/namespaces/shop/services")
    started = time.monotonic()
    core.list_namespaced_service("shop")
    held = time.monotonic() - started
    core.list_namespaced_service("shop")  # served at once: the fault was used up
    quick = time.monotonic() - started - held
    assert held >= 0.5 and quick < 0.5
    first, second = api.requests[-2:]
    assert started <= first.received < second.received
    assert second.received - first.received >= 0.5  # arrival times, not answer times
