"""Misbehaving upstreams on loopback, through the real client libraries: a Prometheus whose answers
are huge, cut short or not finite, and a Kubernetes API whose lists never end or have the wrong shape.
Each is a case of issue 11 (see docs/reliability.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from exporter.errors import KubeError, QueryError
from exporter.kube.client import KubeClient, api_client
from exporter.kube.discovery import KubeDiscovery
from exporter.query import promql
from exporter.query.figures import measure
from exporter.query.prometheus import PrometheusClient
from exporter.retry import RetryPolicy
from sandbox.kubeapi import FakeKubeAPI
from tests.support.procs import run_exporter
from tests.support.prom import DemoProm
from tests.support.scripted import Cut, ScriptedServer, ok, vector

FAST = RetryPolicy(attempts=3, base_wait=0, sleep=lambda s: None)
NS, SVC = "destination_service_namespace", "destination_service_name"


def figure_of(query: dict[str, list[str]]) -> str:
    text = query.get("query", [""])[0]
    for name, q in promql.figure_queries(promql.SERVICE_LABELS, window="5m").items():
        if q == text:
            return name
    return "?"


# -------------------------------------------------------------------------------------- Prometheus
def test_an_answer_over_the_size_limit_is_a_clear_error_not_retried() -> None:
    big = vector([({NS: "ns", SVC: f"svc-{i}"}, "1") for i in range(20_000)])
    with ScriptedServer(lambda m, p, q: ok(big)) as server:
        client = PrometheusClient(server.url, retry=FAST, max_answer_bytes=len(big) - 1)
        with pytest.raises(QueryError) as info:
            client.query("up", at=1)
        assert info.value.kind == "too_large" and "EXPORTER_PROMETHEUS_MAX_ANSWER_BYTES" in str(info.value)
        assert len(server.requests) == 1  # a bigger answer will not come back smaller on a retry
        within = PrometheusClient(server.url, retry=FAST, max_answer_bytes=len(big))
        assert len(within.query("up", at=1)) == 20_000


def test_a_300000_series_answer_is_refused_by_the_default_limit_after_reading_only_the_limit() -> None:
    import tracemalloc

    from exporter.config import Settings

    big = vector([({NS: f"namespace-{i % 500}", SVC: f"service-name-{i}"}, "1.5") for i in range(300_000)])
    limit = Settings().prometheus_max_answer_bytes
    assert len(big) > limit
    with ScriptedServer(lambda m, p, q: ok(big)) as server:
        client = PrometheusClient(server.url, retry=FAST, max_answer_bytes=limit)
        tracemalloc.start()
        try:
            with pytest.raises(QueryError) as info:
                client.query("up", at=1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.kind == "too_large"
    assert peak < 3 * limit  # the chunks read up to the limit and their join: never the 40 MiB answer parsed


def test_a_body_cut_short_is_malformed_and_retried() -> None:
    full = vector([({NS: "ns", SVC: "a"}, "1")])
    calls = {"n": 0}

    def script(method: str, path: str, query: dict[str, list[str]]) -> Cut | tuple[int, dict[str, str], bytes]:
        calls["n"] += 1
        return Cut(full[:20], len(full)) if calls["n"] == 1 else ok(full)

    with ScriptedServer(script) as server:
        client = PrometheusClient(server.url, retry=FAST)
        assert client.query("up", at=1) == [({NS: "ns", SVC: "a"}, 1.0)]
        assert calls["n"] == 2
    with ScriptedServer(lambda m, p, q: Cut(full[:20], len(full))) as server:
        with pytest.raises(QueryError) as info:
            PrometheusClient(server.url, retry=FAST).query("up", at=1)
        assert info.value.kind == "malformed" and len(server.requests) == 3


def test_a_fractional_timeout_is_one_a_real_prometheus_accepts(demo_prom: DemoProm) -> None:
    for timeout in (2.5, 0.001 * 1500, 3599.999):
        client = PrometheusClient(demo_prom.url, timeout=timeout, retry=FAST)
        assert client.query("vector(1)", at=demo_prom.at) == [({}, 1.0)]  # `2500ms`, never `2.5s`


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf"])
def test_a_non_finite_numerator_gives_no_figure_and_is_counted(bad: str) -> None:
    cart, api = {NS: "shop", SVC: "cart"}, {NS: "shop", SVC: "api"}
    answers = {
        "requests": [(cart, "10"), (api, "4")],
        "ok": [(cart, bad), (api, "3")],  # cart's numerator is not finite: never 0 % or 100 %
        "mtls": [(cart, "10"), (api, "4")],
        "p99": [(cart, "12"), (api, bad)],
    }
    with ScriptedServer(lambda m, p, q: ok(vector(answers[figure_of(q)]))) as server:
        m = measure(PrometheusClient(server.url, retry=FAST), at=1, window="5m")
    assert m.figures[("shop", "cart")].success_rate_pct is None
    assert m.figures[("shop", "cart")].mtls_coverage_pct == 100.0
    assert m.figures[("shop", "api")].success_rate_pct == 75.0 and m.figures[("shop", "api")].p99_latency_ms is None
    assert m.non_finite == {"ok": 1, "p99": 1} and not m.errors


def test_once_with_a_non_finite_sample_leaves_the_figure_out_and_exits_1(tmp_path: Path) -> None:
    """Through the real CLI: the figure is absent (null, never 0 %), the JSON names the error, exit 1."""
    cart = {NS: "shop", SVC: "cart"}
    answers = {"requests": [(cart, "10")], "ok": [(cart, "NaN")], "mtls": [(cart, "10")], "p99": [(cart, "12")]}
    manifest = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "cart", "namespace": "shop", "labels": {"migrated": "true"}}}  # fmt: skip
    with ScriptedServer(lambda m, p, q: ok(vector(answers[figure_of(q)]))) as server, FakeKubeAPI() as api:
        api.add(manifest)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_")) and k != "KUBECONFIG"}
        env |= {"EXPORTER_PROMETHEUS_URL": server.url, "KUBECONFIG": str(api.write_kubeconfig(tmp_path / "kc"))}
        proc = run_exporter(env, "once", "--at", "1795663860", "--output", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    [row] = doc["services"]
    assert row["success_rate_pct"] is None and row["mtls_coverage_pct"] == 100.0 and row["p99_latency_ms"] == 12.0
    assert [e["query"] for e in doc["errors"]] == ["ok"] and "non-finite" in doc["errors"][0]["error"]


# -------------------------------------------------------------------------------------- Kubernetes
def kubeconfig_for(url: str, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "kube-token-for-bad-upstreams"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


def service(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "shop"}}


def test_a_continue_token_that_never_ends_is_bounded(tmp_path: Path) -> None:
    def script(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        n = int(query.get("continue", ["0"])[0])
        return ok({"items": [service(f"s{n}")], "metadata": {"continue": str(n + 1)}})

    with ScriptedServer(script) as server:
        kube = KubeClient(api_client(kubeconfig_for(server.url, tmp_path)), retry=FAST, max_pages=50)
        with pytest.raises(KubeError, match="more than 50 pages"):
            kube.list("/api/v1/services", what="list Services")
        assert len(server.requests) == 50


def test_a_repeated_continue_token_is_malformed(tmp_path: Path) -> None:
    with ScriptedServer(lambda m, p, q: ok({"items": [service("a")], "metadata": {"continue": "same"}})) as server:
        kube = KubeClient(api_client(kubeconfig_for(server.url, tmp_path)), retry=FAST)
        with pytest.raises(KubeError) as info:
            kube.list("/api/v1/services", what="list Services")
        assert info.value.kind == "malformed" and len(server.requests) == 2


def test_a_listing_past_its_deadline_stops(tmp_path: Path) -> None:
    ticks = iter(range(1000))

    def script(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        n = int(query.get("continue", ["0"])[0])
        return ok({"items": [service(f"s{n}")], "metadata": {"continue": str(n + 1)}})

    with ScriptedServer(script) as server:
        kube = KubeClient(
            api_client(kubeconfig_for(server.url, tmp_path)), retry=FAST, list_deadline=5, clock=lambda: next(ticks)
        )
        with pytest.raises(KubeError, match="longer than 5s"):
            kube.list("/api/v1/services", what="list Services")
        assert len(server.requests) == 6


@pytest.mark.parametrize(
    "page",
    [{"items": "abc"}, {"items": [{"metadata": {"namespace": "shop"}}]}, {"items": [1, 2]}, ["not", "an", "object"]],
)
def test_wrong_shape_lists_are_a_typed_malformed_error(page: object, tmp_path: Path) -> None:
    with ScriptedServer(lambda m, p, q: ok(page)) as server:
        discovery = KubeDiscovery(
            KubeClient(api_client(kubeconfig_for(server.url, tmp_path)), retry=FAST), label_selector="migrated=true"
        )
        with pytest.raises(Exception) as info:
            discovery.list_services()
    assert getattr(info.value.__cause__, "kind", None) == "malformed"


@pytest.mark.parametrize(
    "page",
    [{"items": "abc"}, {"items": [{"metadata": {"namespace": "shop"}}]}, {"items": [], "metadata": {"continue": 7}}],
)
def test_once_with_a_wrong_shape_kubernetes_answer_exits_1_with_one_line(page: object, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    with ScriptedServer(lambda m, p, q: ok(page)) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
        env |= {"KUBECONFIG": kubeconfig_for(server.url, tmp_path), "EXPORTER_LOG_FORMAT": "console"}
        env["EXPORTER_LOG_LEVEL"] = "error"  # Prometheus is not there either: its retry warnings aside
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "once"], env=env, capture_output=True, text=True, timeout=60
        )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "malformed answer" in lines[0] and "<redacted>" not in lines[0] and proc.stdout == ""


def test_the_daemon_bounds_a_never_ending_listing_at_each_refresh(tmp_path: Path) -> None:
    """A `continue` token that never ends costs the daemon at most the page budget per refresh (200
    requests by default, here 20) and it keeps its last good list: never a storm."""
    from exporter.config import Settings
    from exporter.export.daemon import Daemon

    endless = [False]

    def script(method: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        n = int(query.get("continue", ["0"])[0])
        token = {"continue": str(n + 1)} if endless[0] else {}
        return ok({"items": [service(f"s{n}")], "metadata": token})

    with ScriptedServer(script) as server:
        kube = KubeClient(api_client(kubeconfig_for(server.url, tmp_path)), retry=FAST, max_pages=20)
        daemon = Daemon(
            Settings(),
            discovery=KubeDiscovery(kube, label_selector="migrated=true"),
            prom=PrometheusClient("http://127.0.0.1:9"),
            sink=None,
        )
        daemon.refresh_discovery()
        good = daemon.services
        assert good is not None and len(good) == 1
        endless[0] = True
        for _ in range(3):
            before = len(server.requests)
            daemon.refresh_discovery()
            assert len(server.requests) - before == 20  # the page budget, once per refresh (no retry)
            assert daemon.services == good
    errors = daemon.metrics.registry.get_sample_value("mesh_exporter_errors_total", {"stage": "discovery"})
    assert errors == 3
