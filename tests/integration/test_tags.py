"""Datadog tags end to end: `exporter once --submit` and the daemon, through the real kubernetes and
datadog-api-client libraries, send points tagged as docs/metrics.md's precedence table says, for Services
carrying the Unified Service Tagging labels and for Services lacking them; a label changed while the daemon
runs shows at its next cycle; EXPORTER_METRIC_PREFIX names every metric sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import clients
from exporter.config import load
from exporter.export.daemon import Daemon
from exporter.model import METRICS
from sandbox.intake import FakeIntake
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import kube_service_manifests
from tests.support.expected import expected
from tests.support.procs import API_KEY, exporter_env, run_exporter
from tests.support.prom import DemoProm

# Services of the demo mesh given Unified Service Tagging labels; the others carry none.
LABELS = {
    ("shop", "cart"): {"env": "staging", "service": "checkout-app", "version": "1.4.2"},
    ("payments", "api"): {"version": "2.0.1"},
    ("catalog", "search"): {"service": "Search-UI"},  # Datadog tags are lower case
}
ENV = {
    "DD_TAGS": "team:mesh env:dev owner:sre",  # the Agent's syntax; lowest precedence
    "EXPORTER_TAGS": "team:platform,kube_service:wrong",  # over DD_TAGS; never over the identity tags
    "DD_ENV": "prod",
    "DD_CLUSTER_NAME": "eks-prod-1",
}


def want_tags(namespace: str, name: str) -> tuple[str, ...]:
    """The precedence table of docs/metrics.md, written out by hand."""
    labels = LABELS.get((namespace, name), {})
    tags = {
        "owner:sre",  # DD_TAGS, not overridden
        "team:platform",  # EXPORTER_TAGS over DD_TAGS' team:mesh
        f"env:{labels.get('env', 'prod')}",  # the label over DD_ENV over DD_TAGS' env:dev
        "kube_cluster_name:eks-prod-1",
        f"service:{labels.get('service', name).lower()}",  # service:<name> only where no label names the app
        f"kube_service:{name}",  # identity over EXPORTER_TAGS' kube_service:wrong
        f"kube_namespace:{namespace}",
    }
    if "version" in labels:
        tags.add(f"version:{labels['version']}")
    return tuple(sorted(tags))


@pytest.fixture(scope="module")
def kube(demo_prom: DemoProm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKubeAPI, Path]]:
    with FakeKubeAPI() as api:
        for manifest in kube_service_manifests(demo_prom.services):
            meta = manifest["metadata"]
            for key, value in LABELS.get((meta["namespace"], meta["name"]), {}).items():
                meta["labels"][f"tags.datadoghq.com/{key}"] = value
            api.add(manifest)
        yield api, api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


def tag(tags: tuple[str, ...], key: str) -> str:
    (value,) = [t.partition(":")[2] for t in tags if t.startswith(f"{key}:")]
    return value


def check(intake: FakeIntake, demo_prom: DemoProm, at: int) -> None:
    with_traffic = {(s.namespace, s.name) for s in demo_prom.services if s.migrated and expected(s) is not None}
    want = {(metric, want_tags(ns, name), at) for ns, name in with_traffic for metric in METRICS.values()}
    got = {(p.metric, p.tags, p.timestamp) for p in intake.points()}
    assert got == want
    assert len(intake.points()) == len(want)
    # the labelled Services are among those with traffic, so every row of the table was exercised
    assert set(LABELS) <= with_traffic


def test_once_tags_points_by_the_precedence_table(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], tmp_path: Path
) -> None:
    at = int(demo_prom.at)
    with FakeIntake(api_key=API_KEY) as intake:
        env = exporter_env(demo_prom, kube[1], intake) | ENV
        proc = run_exporter(env, "once", "--at", str(at), "--submit")
        assert proc.returncode == 0, proc.stderr
        check(intake, demo_prom, at)


def test_daemon_tags_points_by_the_precedence_table(
    demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeIntake(api_key=API_KEY) as intake:
        for name, value in (exporter_env(demo_prom, kube[1], intake) | ENV).items():
            if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
                monkeypatch.setenv(name, value)
        settings = load()
        daemon = Daemon(
            settings,
            discovery=clients.discovery(settings),
            prom=clients.prometheus(settings),
            sink=clients.datadog(settings),
            clock=lambda: demo_prom.at,
        )
        try:
            daemon.cycle()
        finally:
            daemon.stop()
        check(intake, demo_prom, daemon.instant())


def test_daemon_sends_a_changed_version_label_at_the_next_cycle(
    demo_prom: DemoProm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Service's identity ignores its labels; its tags must not: every deploy changes `version`
    with FakeKubeAPI() as api, FakeIntake(api_key=API_KEY) as intake:
        for manifest in kube_service_manifests(demo_prom.services):
            meta = manifest["metadata"]
            if (meta["namespace"], meta["name"]) == ("shop", "cart"):
                meta["labels"]["tags.datadoghq.com/version"] = "1.4.2"
            api.add(manifest)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in exporter_env(demo_prom, kubeconfig, intake).items():
            if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
                monkeypatch.setenv(name, value)
        settings = load()
        now = [demo_prom.at]
        daemon = Daemon(
            settings,
            discovery=clients.discovery(settings),
            prom=clients.prometheus(settings),
            sink=clients.datadog(settings),
            clock=lambda: now[0],
        )

        def versions_sent(since: int) -> set[str]:
            points = [p for p in intake.points()[since:] if "kube_service:cart" in p.tags]
            assert len(points) == len(METRICS)  # one per figure: cart has traffic in both cycles
            return {t for p in points for t in p.tags if t.startswith("version:")}

        try:
            daemon.cycle()
            assert versions_sent(0) == {"version:1.4.2"}
            cart = api.get("v1", "services", "shop", "cart")
            assert cart is not None
            cart["metadata"]["labels"]["tags.datadoghq.com/version"] = "1.5.0"
            api.add(cart)
            daemon.refresh_discovery()
            now[0] += settings.interval_seconds
            sent = len(intake.points())
            daemon.cycle()
            assert versions_sent(sent) == {"version:1.5.0"}
        finally:
            daemon.stop()


def test_once_sends_every_figure_under_a_configured_prefix(demo_prom: DemoProm, kube: tuple[FakeKubeAPI, Path]) -> None:
    at = int(demo_prom.at)
    with FakeIntake(api_key=API_KEY) as intake:
        env = exporter_env(demo_prom, kube[1], intake) | {"EXPORTER_METRIC_PREFIX": "mesh.istio"}
        proc = run_exporter(env, "once", "--at", str(at), "--submit")
        assert proc.returncode == 0, proc.stderr
        with_traffic = {(s.namespace, s.name) for s in demo_prom.services if s.migrated and expected(s) is not None}
        want = {(f"mesh.istio.{figure}", ns, name) for ns, name in with_traffic for figure in METRICS}
        got = {(p.metric, tag(p.tags, "kube_namespace"), tag(p.tags, "kube_service")) for p in intake.points()}
        assert got == want and len(intake.points()) == len(want)
