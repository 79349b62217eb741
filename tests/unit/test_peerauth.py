"""PeerAuthentication resolution: every scope, inheritance, duplicates and malformed objects.

Expected modes follow Istio's documented rules (see exporter/peerauth.py's docstring), written out
case by case here rather than derived from the code.
"""

from typing import Any

import pytest

from exporter.mtls.policy import Evidence, Mode, Policy, PolicyError, allowance, resolve

ROOT = "istio-system"


def pa(
    namespace: str,
    name: str,
    mode: str | None = None,
    *,
    created: str = "2026-01-01T00:00:00Z",
    selector: dict[str, str] | None = None,
    ports: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports is not None:
        spec["portLevelMtls"] = {port: ({"mode": m} if m else {}) for port, m in ports.items()}
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
        "spec": spec,
    }


def modes(*objects: dict[str, Any], namespaces: tuple[str, ...] = ("foo",)) -> dict[str, Mode]:
    resolution = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT)
    return {ns: resolution.of(ns).mode for ns in (ROOT, *namespaces)}


def test_nothing_set_means_permissive_everywhere() -> None:
    resolution = resolve([], root_namespace=ROOT)
    assert resolution.mesh.mode is Mode.PERMISSIVE and resolution.mesh.source == "mesh default"
    assert resolution.of("foo").mode is Mode.PERMISSIVE
    assert resolution.of("foo").source == "mesh default"


@pytest.mark.parametrize(
    ("mesh", "expected"),
    [("STRICT", Mode.STRICT), ("DISABLE", Mode.DISABLE), ("PERMISSIVE", Mode.PERMISSIVE), ("UNSET", Mode.PERMISSIVE)],
)
def test_mesh_wide_policy_applies_to_namespaces_without_their_own(mesh: str, expected: Mode) -> None:
    assert modes(pa(ROOT, "default", mesh)) == {ROOT: expected, "foo": expected}


def test_mesh_wide_policy_without_mtls_or_mode_is_unset_hence_permissive() -> None:
    assert modes(pa(ROOT, "default"))["foo"] is Mode.PERMISSIVE
    obj = pa(ROOT, "default")
    obj["spec"]["mtls"] = {}
    assert modes(obj)["foo"] is Mode.PERMISSIVE


def test_namespace_wide_policy_overrides_the_mesh_and_unset_inherits_it() -> None:
    objects = (pa(ROOT, "default", "STRICT"), pa("foo", "default", "PERMISSIVE"), pa("bar", "default", "UNSET"))
    got = modes(*objects, namespaces=("foo", "bar", "baz"))
    assert got == {ROOT: Mode.STRICT, "foo": Mode.PERMISSIVE, "bar": Mode.STRICT, "baz": Mode.STRICT}
    resolution = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT)
    assert resolution.of("foo").source == "foo/default"
    assert resolution.of("bar").source == "bar/default"  # the deciding object, even when it inherits
    assert resolution.of("baz").source == f"{ROOT}/default"


def test_namespace_unset_without_a_mesh_policy_is_permissive() -> None:
    assert modes(pa("foo", "default", "UNSET"))["foo"] is Mode.PERMISSIVE


def test_namespace_wide_policy_does_not_leak_into_other_namespaces() -> None:
    assert modes(pa("foo", "default", "STRICT"), namespaces=("foo", "bar")) == {
        ROOT: Mode.PERMISSIVE,
        "foo": Mode.STRICT,
        "bar": Mode.PERMISSIVE,
    }


def test_the_oldest_mesh_wide_and_namespace_wide_policies_apply_newer_ones_are_ignored() -> None:
    objects = (
        pa(ROOT, "zz-old", "STRICT", created="2025-01-01T00:00:00Z"),
        pa(ROOT, "aa-new", "DISABLE", created="2026-01-01T00:00:00Z"),
        pa("foo", "b-old", "DISABLE", created="2025-06-01T00:00:00Z"),
        pa("foo", "a-new", "PERMISSIVE", created="2025-07-01T00:00:00Z"),
    )
    resolution = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT)
    assert (resolution.mesh.mode, resolution.mesh.source) == (Mode.STRICT, f"{ROOT}/zz-old")
    assert (resolution.of("foo").mode, resolution.of("foo").source) == (Mode.DISABLE, "foo/b-old")
    assert len(resolution.ignored) == 2
    assert any(f"{ROOT}/aa-new" in text and "newer" in text for text in resolution.ignored)
    assert any("foo/a-new" in text and "newer" in text for text in resolution.ignored)


def test_selector_policies_in_the_root_namespace_are_ignored() -> None:
    objects = (pa(ROOT, "default", "PERMISSIVE"), pa(ROOT, "gw", "STRICT", selector={"app": "ingress"}))
    resolution = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT)
    assert resolution.mesh.mode is Mode.PERMISSIVE
    assert resolution.of("foo").mode is Mode.PERMISSIVE
    assert [t for t in resolution.ignored if f"{ROOT}/gw" in t and "root namespace" in t]


def test_workload_policy_that_differs_is_an_exception_and_does_not_change_the_namespace_mode() -> None:
    objects = (pa("foo", "default", "STRICT"), pa("foo", "legacy", "PERMISSIVE", selector={"app": "legacy"}))
    ns = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT).of("foo")
    assert ns.mode is Mode.STRICT
    assert len(ns.exceptions) == 1
    exception = ns.exceptions[0]
    assert (exception.policy, dict(exception.selector), exception.mode) == (
        "foo/legacy",
        {"app": "legacy"},
        Mode.PERMISSIVE,
    )
    assert exception.describe() == "workloads app=legacy (foo/legacy): PERMISSIVE"


def test_workload_policy_equal_to_its_namespace_mode_is_not_an_exception() -> None:
    objects = (
        pa("foo", "default", "STRICT"),
        pa("foo", "same", "STRICT", selector={"app": "a"}),
        pa("foo", "inherits", "UNSET", selector={"app": "b"}),
        pa("foo", "port-same", "UNSET", selector={"app": "c"}, ports={"8080": "STRICT", "9090": "UNSET"}),
    )
    assert resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT).of("foo").exceptions == ()


def test_port_level_modes_inherit_the_workload_mode_which_inherits_the_namespace() -> None:
    # namespace inherits the mesh's STRICT; the workload inherits that; port 8080 is plaintext, 9090 inherits.
    objects = (
        pa(ROOT, "default", "STRICT"),
        pa("foo", "finance", "UNSET", selector={"app": "finance"}, ports={"8080": "DISABLE", "9090": None}),
        pa("foo", "metrics", "PERMISSIVE", selector={"app": "metrics"}, ports={"15090": "UNSET"}),
    )
    ns = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT).of("foo")
    assert ns.mode is Mode.STRICT and ns.source == f"{ROOT}/default"
    by_policy = {e.policy: e for e in ns.exceptions}
    assert set(by_policy) == {"foo/finance", "foo/metrics"}
    assert by_policy["foo/finance"].mode is Mode.STRICT
    assert dict(by_policy["foo/finance"].ports) == {"8080": Mode.DISABLE}  # 9090 inherits STRICT: no exception
    assert by_policy["foo/metrics"].mode is Mode.PERMISSIVE
    assert dict(by_policy["foo/metrics"].ports) == {}  # 15090 inherits the workload's PERMISSIVE
    assert by_policy["foo/finance"].describe() == "workloads app=finance (foo/finance): STRICT; port 8080: DISABLE"


def test_port_level_modes_without_a_selector_are_ignored() -> None:
    objects = (pa("foo", "default", "STRICT", ports={"8080": "DISABLE"}),)
    resolution = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT)
    assert resolution.of("foo").mode is Mode.STRICT
    assert resolution.of("foo").exceptions == ()
    assert [t for t in resolution.ignored if "foo/default" in t and "portLevelMtls" in t]


def test_a_namespace_with_only_workload_policies_inherits_the_mesh() -> None:
    objects = (pa(ROOT, "default", "DISABLE"), pa("foo", "one", "STRICT", selector={"app": "one"}))
    ns = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT).of("foo")
    assert (ns.mode, ns.source) == (Mode.DISABLE, f"{ROOT}/default")
    assert [e.mode for e in ns.exceptions] == [Mode.STRICT]


def test_an_empty_selector_is_namespace_wide() -> None:
    assert modes(pa("foo", "default", "STRICT", selector={}))["foo"] is Mode.STRICT


def test_modes_are_read_case_insensitively_like_the_api_enum_names() -> None:
    assert Policy.from_object(pa("foo", "default", "strict")).mode is Mode.STRICT


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (pa("foo", "bad", "MUTUAL"), "foo/bad: spec.mtls.mode: 'MUTUAL' is not one of"),
        (pa("foo", "bad", "STRICT", selector={"a": "b"}, ports={"80": "NOPE"}), "spec.portLevelMtls[80].mode"),
        ({"metadata": {"name": "x"}, "spec": {}}, "metadata.namespace and metadata.name are required"),
        ({"metadata": {"name": "x", "namespace": "foo"}, "spec": {"mtls": "STRICT"}}, "spec.mtls must be an object"),
    ],
)
def test_malformed_objects_are_errors_naming_the_object(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Policy.from_object(obj)


# ------------------------------------------------------------------ the policy behind a plaintext flow
def _ns(*objects: dict[str, Any], namespace: str = "foo") -> tuple[Any, str]:
    resolution = resolve([Policy.from_object(o) for o in objects], root_namespace=ROOT)
    return resolution.of(namespace), resolution.mesh.source


@pytest.mark.parametrize(
    ("objects", "app", "evidence", "policy", "exception"),
    [
        # no policy at all: the mesh default (PERMISSIVE) allows it
        ((), "web", Evidence.ALLOWED, "mesh default", False),
        ((pa(ROOT, "default", "PERMISSIVE"),), "web", Evidence.ALLOWED, f"{ROOT}/default", False),
        ((pa("foo", "default", "DISABLE"),), "web", Evidence.ALLOWED, "foo/default", False),
        # STRICT namespace, no exception for this app
        ((pa("foo", "default", "STRICT"),), "web", Evidence.NONE, "foo/default", False),
        # a workload exception whose app label the metrics carry: proven
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", "PERMISSIVE", selector={"app": "web"})),
            "web",
            Evidence.ALLOWED,
            "foo/w",
            True,
        ),
        # the same exception for another app does not apply
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", "PERMISSIVE", selector={"app": "api"})),
            "web",
            Evidence.NONE,
            "foo/default",
            False,
        ),
        # STRICT workload with a DISABLE port: metrics carry no port, so only "may be"
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", None, selector={"app": "web"}, ports={"9090": "DISABLE"})),
            "web",
            Evidence.MAY_PORT,
            "foo/w",
            True,
        ),
        # a selector on a label the metrics do not carry: "may be"
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", "PERMISSIVE", selector={"tier": "legacy"})),
            "web",
            Evidence.MAY_SELECTOR,
            "foo/w",
            True,
        ),
        # a selector with labels besides `app` whose `app` rules this workload out: it cannot apply (G1)
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", "PERMISSIVE", selector={"app": "other", "version": "v1"})),
            "web",
            Evidence.NONE,
            "foo/default",
            False,
        ),
        # ... whose `app` matches: it may select some of this app's pods
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", "PERMISSIVE", selector={"app": "web", "version": "v1"})),
            "web",
            Evidence.MAY_SELECTOR,
            "foo/w",
            True,
        ),
        # ... but an older policy on `app` alone selects every pod of the app, and the oldest applies
        (
            (
                pa("foo", "default", "STRICT"),
                pa("foo", "all", "STRICT", selector={"app": "web"}, created="2026-01-01T00:00:00Z"),
                pa("foo", "v1", "PERMISSIVE", selector={"app": "web", "version": "v1"}, created="2026-02-01T00:00:00Z"),
            ),
            "web",
            Evidence.NONE,
            "foo/all",
            False,
        ),
        # the destination's app is unknown (no destination_app): any permissive selector may apply
        (
            (pa("foo", "default", "STRICT"), pa("foo", "w", "PERMISSIVE", selector={"app": "other", "version": "v1"})),
            "",
            Evidence.MAY_SELECTOR,
            "foo/w",
            True,
        ),
        # a STRICT workload policy in a PERMISSIVE namespace: nothing allows plaintext to that workload
        (
            (pa("foo", "default", "PERMISSIVE"), pa("foo", "w", "STRICT", selector={"app": "web"})),
            "web",
            Evidence.NONE,
            "foo/w",
            False,
        ),
    ],
)
def test_each_plaintext_flow_names_the_policy_that_allows_it(
    objects: tuple[dict[str, Any], ...], app: str, evidence: Evidence, policy: str, exception: bool
) -> None:
    ns, mesh_source = _ns(*objects)
    got = allowance(ns, app=app, mesh_source=mesh_source)
    assert (got.evidence, got.policy, got.exception) == (evidence, policy, exception), got.text
    assert policy in got.text or policy == "mesh default"
    if evidence is Evidence.MAY_PORT:
        assert got.text.startswith("may be allowed by a port exception") and "port 9090: DISABLE" in got.text


def test_last_change_comes_from_managed_fields_else_creation() -> None:
    obj = pa("foo", "default", "STRICT", created="2026-01-01T00:00:00Z")
    assert Policy.from_object(obj).changed == "2026-01-01T00:00:00Z"
    obj["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Update", "time": "2026-03-04T05:06:07Z"},
        {"manager": "argocd", "operation": "Apply", "time": "2026-02-01T00:00:00Z"},
        {"manager": "old", "operation": "Update"},  # no time: ignored
    ]
    policy = Policy.from_object(obj)
    assert (policy.created, policy.changed) == ("2026-01-01T00:00:00Z", "2026-03-04T05:06:07Z")
