"""Fault injection against the real daemon: its APScheduler jobs run as in production while the
test moves time forward (time-machine), with a real Prometheus behind a fault proxy and the local
Datadog intake. For every fault the intake must end up holding every point exactly once (after the
dedupe Datadog itself applies: metric, tags, timestamp), or lose exactly the documented points.
docs/reliability.md lists each fault with the test that proves it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import time_machine
from structlog.testing import capture_logs

from exporter.export.daemon import Daemon
from exporter.model import METRICS
from sandbox.intake import FakeIntake, Reply
from sandbox.kubeapi import FakeKubeAPI
from sandbox.meshsim import Phase, kube_service_manifests
from sandbox.proxy import Fault, FaultProxy, ProxyRequest
from tests.support.expected import expected
from tests.support.faults import KEY, PER_INSTANT, SERVICES, STEP, T0, make_daemon
from tests.support.procs import free_port, wait_for
from tests.support.prom import PrometheusFactory

FIELDS = ("request_rate", "success_rate_pct", "mtls_coverage_pct", "p99_latency_ms")


@pytest.fixture(scope="module")
def prom_url(make_prometheus: PrometheusFactory) -> str:
    # One phase of constant rates, with data well past T0 so cycles up to T0 + 70 min see a full window.
    return make_prometheus(
        (Phase(T0 - 20 * 60, SERVICES),), end=T0 + 90 * 60, step=STEP, reporters=("destination",)
    ).url


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with FakeKubeAPI() as kube:
        for manifest in kube_service_manifests(SERVICES):
            kube.add(manifest)
        yield kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@pytest.fixture
def intake() -> Iterator[FakeIntake]:
    with FakeIntake(api_key=KEY) as server:
        yield server


@pytest.fixture
def proxy(prom_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(prom_url) as p:
        yield p


class Driver:
    """Runs a started daemon's scheduler one interval at a time under travelled time."""

    def __init__(self, daemon: Daemon, traveller: Any) -> None:
        self.daemon, self.traveller = daemon, traveller

    def start(self) -> None:
        self.daemon.start()
        wait_for(lambda: self.daemon.last_at == T0, "the first cycle")

    def next(self, before: Callable[[], None] | None = None) -> int:
        """Advance one interval (after running `before`) and wait until that cycle has run."""
        if before is not None:
            before()
        at = (self.daemon.last_at or T0) + STEP
        self.traveller.shift(STEP)
        scheduler = self.daemon.scheduler
        assert scheduler is not None

        def ran() -> bool:
            if self.daemon.last_at == at:
                return True
            # Due now, again until it runs: APScheduler skips a run while the last one is still finishing
            # (after it set last_at) and would then wait for the next interval, which frozen time never brings.
            scheduler.modify_job("cycle", next_run_time=datetime.now(UTC))
            return False

        wait_for(ran, f"the cycle at {at}")
        return at


def want(
    instants: list[int], *, without: dict[int, set[str]] | None = None
) -> dict[tuple[str, tuple[str, ...], int], float]:
    """Every point the mesh should produce at these instants, from the generator's parameters."""
    out = {}
    for at in instants:
        for service in SERVICES:
            figures = expected(service)
            assert figures is not None
            name, ns = service.name, service.namespace
            tags = tuple(sorted((f"service:{name}", f"kube_service:{name}", f"kube_namespace:{ns}")))
            for field in FIELDS:
                if field not in (without or {}).get(at, set()):
                    out[METRICS[field], tags, at] = getattr(figures, field)
    return out


def held(intake: FakeIntake) -> dict[tuple[str, tuple[str, ...], int], float]:
    """What Datadog would hold: points deduplicated by (metric, tags, timestamp)."""
    return {(p.metric, p.tags, p.timestamp): p.value for p in intake.points()}


def assert_holds(intake: FakeIntake, expected_points: dict[tuple[str, tuple[str, ...], int], float]) -> None:
    got = held(intake)
    assert set(got) == set(expected_points)
    for key, value in expected_points.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def metrics_text(daemon: Daemon) -> str:
    from prometheus_client import generate_latest

    return generate_latest(daemon.metrics.registry).decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


# ------------------------------------------------------------------------------------ Datadog faults
def test_datadog_outage_of_every_kind_then_recovery_loses_nothing(
    prom_url: str, intake: FakeIntake, kubeconfig: Path
) -> None:
    mode: dict[str, Reply | None] = {"reply": None}
    intake.set_fault(lambda request: mode["reply"])
    daemon = make_daemon(prom_url, intake.url, kubeconfig)
    faults = [
        Reply(503),  # server error
        Reply(500, drop_connection=True),  # connection dropped without an answer
        Reply.rate_limited(reset=1),  # throttled, with Datadog's rate-limit headers
        Reply(408),  # request timeout
        Reply(202, delay_s=3.0),  # accepted, but slower than the client's 2 s timeout: duplicates follow
    ]
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            driver = Driver(daemon, traveller)
            driver.start()
            for reply in faults:
                driver.next(lambda reply=reply: mode.update(reply=reply))  # type: ignore[misc]
                assert len(daemon.backlog) > 0 or reply.status == 202
            mode["reply"] = None
            last = driver.next()
    finally:
        daemon.stop()
    assert_holds(intake, want(list(range(T0, last + 1, STEP))))
    text = metrics_text(daemon)
    assert metric(text, "mesh_exporter_backlog_points") == 0
    # Each failing cycle fails its own points and the backlog it re-sends: 1, 2, … 5 instants' worth. The
    # first may also have failed an early hand-over (the figures ready while the p99 query ran: fewer than
    # an instant's points); after a failure, points wait for the cycle's last round.
    early = metric(text, 'mesh_exporter_errors_total{stage="submit"}') - len(faults)
    failed = metric(text, "mesh_exporter_points_failed_total") - sum(range(1, len(faults) + 1)) * PER_INSTANT
    assert (early, failed) == (0, 0) or (early == 1 and 0 < failed < PER_INSTANT)
    # points kept their original timestamps: the instant they were measured at, not the one they were sent at
    assert {ts for (_, _, ts) in held(intake)} == set(range(T0, last + 1, STEP))


def test_payload_too_large_is_split_and_sent(prom_url: str, intake: FakeIntake, kubeconfig: Path) -> None:
    intake.script(Reply(413))
    daemon = make_daemon(prom_url, intake.url, kubeconfig)
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            Driver(daemon, traveller).start()
    finally:
        daemon.stop()
    assert_holds(intake, want([T0]))
    # The refused batch came back as its two halves; the cycle's other hand-over (if any) went as it was.
    statuses = [r.status for r in intake.requests]
    assert statuses[0] == 413 and statuses[1:] in ([202, 202], [202, 202, 202])
    refused, first_half, second_half = (r.json["series"] for r in intake.requests[:3])
    assert first_half + second_half == refused and len(first_half) == len(refused) // 2


def test_outage_longer_than_an_hour_loses_exactly_the_points_datadog_would_ignore(
    prom_url: str, intake: FakeIntake, kubeconfig: Path
) -> None:
    down = {"flag": False}
    intake.set_fault(lambda request: Reply(503) if down["flag"] else None)
    daemon = make_daemon(prom_url, intake.url, kubeconfig)
    cycles = 126  # the outage covers cycles 1..125: 62.5 minutes
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            driver = Driver(daemon, traveller)
            driver.start()
            down["flag"] = True
            for _ in range(cycles - 1):
                driver.next()
            down["flag"] = False
            recovered = driver.next()
    finally:
        daemon.stop()
    # At recovery (T0 + 126 intervals) Datadog accepts points no older than an hour: instants 1..5
    # are older and were dropped; everything else is there.
    oldest_kept = recovered - 3600
    lost = [t for t in range(T0 + STEP, recovered, STEP) if t < oldest_kept]
    assert len(lost) == 5
    kept = [t for t in range(T0, recovered + 1, STEP) if t not in lost]
    assert_holds(intake, want(kept))
    text = metrics_text(daemon)
    dropped = 'mesh_exporter_points_dropped_total{reason="older_than_datadog_accepts"}'
    assert metric(text, dropped) == len(lost) * PER_INSTANT


def test_restart_during_an_outage_loses_nothing_with_a_spool(
    prom_url: str, intake: FakeIntake, kubeconfig: Path, tmp_path: Path
) -> None:
    down = {"flag": False}
    intake.set_fault(lambda request: Reply(503) if down["flag"] else None)
    first = make_daemon(prom_url, intake.url, kubeconfig, spool=tmp_path)
    with time_machine.travel(T0, tick=False) as traveller:
        driver = Driver(first, traveller)
        driver.start()
        down["flag"] = True
        for _ in range(3):
            driver.next()
        first.stop()  # SIGTERM: the last flush fails too, so the backlog is spooled
        spooled = json.loads((tmp_path / "backlog.json").read_text())["points"]
        assert len(spooled) == 3 * PER_INSTANT and KEY not in (tmp_path / "backlog.json").read_text()

        down["flag"] = False
        traveller.shift(STEP)
        second = make_daemon(prom_url, intake.url, kubeconfig, spool=tmp_path)  # a new process, same volume
        assert len(second.backlog) == 3 * PER_INSTANT
        try:
            second.start()
            wait_for(lambda: second.last_at == T0 + 4 * STEP, "the second daemon's cycle")
        finally:
            second.stop()
    assert_holds(intake, want([T0 + k * STEP for k in range(5)]))
    assert len(intake.points()) == len(held(intake))  # not even a duplicate
    assert not (tmp_path / "backlog.json").exists()


# --------------------------------------------------------------------------------- Prometheus faults
def figure_query(request: ProxyRequest) -> str:
    """Which of the four figure queries a request carries."""
    q = request.query.get("query", "")
    if "histogram_quantile" in q:
        return "p99"
    if "response_code" in q:
        return "ok"
    if "connection_security_policy" in q:
        return "mtls"
    return "requests"


def rewrite_value(namespace: str, service: str, new: str) -> Callable[[bytes], bytes]:
    """A rewrite of a real answer: `service`'s sample becomes `new` (e.g. "NaN", "+Inf")."""

    def rewrite(body: bytes) -> bytes:
        doc = json.loads(body)
        for sample in doc["data"]["result"]:
            labels = sample["metric"]
            if (labels["destination_service_namespace"], labels["destination_service_name"]) == (namespace, service):
                sample["value"][1] = new
        return json.dumps(doc).encode()

    return rewrite


def duplicate_first_series(body: bytes) -> bytes:
    doc = json.loads(body)
    doc["data"]["result"].append(doc["data"]["result"][0])
    return json.dumps(doc).encode()


def on(query: str, fault: Fault) -> Callable[[ProxyRequest], Fault | None]:
    """`fault` for one of the four figure queries; the others pass through untouched."""
    return lambda request: fault if figure_query(request) == query else None


BAD_DATA = b'{"status":"error","errorType":"bad_data","error":"x"}'
PROM_FAULTS: list[tuple[str, Callable[[ProxyRequest], Fault | None], str, set[str]]] = [
    ("p99 answers 503", on("p99", Fault(status=503, body=b"overloaded")), "http_5xx", {"p99_latency_ms"}),
    ("ok answers malformed JSON", on("ok", Fault(rewrite=lambda b: b[: len(b) // 2])), "malformed",
     {"success_rate_pct"}),
    ("mtls has a duplicate series", on("mtls", Fault(rewrite=duplicate_first_series)), "duplicate_series",
     {"mtls_coverage_pct"}),
    ("p99 is slower than the timeout", on("p99", Fault(delay_s=1.5)), "timeout", {"p99_latency_ms"}),
    ("p99 connection dropped", on("p99", Fault(drop_connection=True)), "connection", {"p99_latency_ms"}),
    ("requests answers 400", on("requests", Fault(status=400, body=BAD_DATA)), "http_4xx",
     set(FIELDS) - {"p99_latency_ms"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fault", "kind", "missing"), PROM_FAULTS, ids=[f[0] for f in PROM_FAULTS])
def test_a_failing_query_costs_only_its_figures(
    proxy: FaultProxy,
    intake: FakeIntake,
    kubeconfig: Path,
    name: str,
    fault: Callable[[ProxyRequest], Fault | None],
    kind: str,
    missing: set[str],
) -> None:
    daemon = make_daemon(proxy.url, intake.url, kubeconfig)
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            driver = Driver(daemon, traveller)
            driver.start()
            faulty = driver.next(lambda: proxy.set_fault(fault))
            up_after_fault = metric(metrics_text(daemon), 'mesh_exporter_upstream_up{upstream="prometheus"}')
            proxy.set_fault(None)
            last = driver.next()
            ready = daemon.ready()
    finally:
        daemon.stop()
    assert_holds(intake, want([T0, faulty, last], without={faulty: missing}))
    assert all(p.value == p.value for p in intake.points())  # no NaN ever sent
    text = metrics_text(daemon)
    assert metric(text, f'mesh_exporter_query_errors_total{{kind="{kind}"}}') == 1
    # a duplicate series is bad data from a call that succeeded: Prometheus stays "up"
    assert up_after_fault == (1 if kind == "duplicate_series" else 0)
    assert ready


def test_nan_and_inf_values_are_never_sent(proxy: FaultProxy, intake: FakeIntake, kubeconfig: Path) -> None:
    rewrites = {"requests": rewrite_value("shop", "cart", "NaN"), "p99": rewrite_value("pay", "api", "+Inf")}
    proxy.set_fault(lambda r: Fault(rewrite=rewrites[figure_query(r)]) if figure_query(r) in rewrites else None)
    daemon = make_daemon(proxy.url, intake.url, kubeconfig)
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            Driver(daemon, traveller).start()
    finally:
        daemon.stop()
    # shop/cart's traffic is unknown (NaN total): no figure at all; pay/api's p99 is unusable: the
    # other three figures stand; nothing NaN or infinite is ever sent
    everything = want([T0])
    cart = {k for k in everything if "service:cart" in k[1]}
    pay_p99 = {k for k in everything if "kube_namespace:pay" in k[1] and k[0] == METRICS["p99_latency_ms"]}
    assert_holds(intake, {k: v for k, v in everything.items() if k not in cart | pay_p99})


def test_readiness_turns_false_only_after_prometheus_stays_down(
    proxy: FaultProxy, intake: FakeIntake, kubeconfig: Path
) -> None:
    daemon = make_daemon(proxy.url, intake.url, kubeconfig)
    readiness = []
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            driver = Driver(daemon, traveller)
            driver.start()
            proxy.set_fault(lambda r: Fault(status=503))
            for _ in range(4):
                driver.next()
                readiness.append(daemon.ready())
            proxy.set_fault(None)
            driver.next()
            readiness.append(daemon.ready())
    finally:
        daemon.stop()
    assert readiness == [True, True, True, False, True]  # not ready once no success for > 3 intervals
    assert {ts for (_, _, ts) in held(intake)} == {T0, T0 + 5 * STEP}  # nothing, not zeros, while down
    # the four instants Prometheus could not answer are counted, never skipped silently
    assert metric(metrics_text(daemon), 'mesh_exporter_instants_missed_total{reason="not_measured"}') == 4


# ------------------------------------------------------------------------------- shutdown and load


def test_sigterm_during_a_datadog_outage_exits_0_quickly_and_spools(
    prom_url: str, intake: FakeIntake, kubeconfig: Path, tmp_path: Path
) -> None:
    intake.set_fault(lambda request: Reply(503))
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
    env |= {
        "EXPORTER_PROMETHEUS_URL": prom_url, "EXPORTER_DATADOG_URL": intake.url, "DD_API_KEY": KEY,
        "KUBECONFIG": str(kubeconfig), "EXPORTER_HTTP_PORT": str(port), "EXPORTER_INTERVAL_SECONDS": "1",
        "EXPORTER_SPOOL_DIR": str(tmp_path),
    }  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(intake.requests) >= 2, "a failed submission", timeout=30)  # now inside retry waits
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert took < 10  # retry waits end at once; the default retries alone would take 7 s and more
    spool = (tmp_path / "backlog.json").read_text()
    assert json.loads(spool)["points"] and KEY not in spool and KEY not in stderr
    assert '"shutdown: backlog flushed"' in stderr


@pytest.mark.parametrize("leader_election", ["false", "true"])
def test_sigterm_with_a_hung_kubernetes_api_and_a_hung_prometheus_exits_within_the_grace(
    prom_url: str, intake: FakeIntake, tmp_path: Path, leader_election: str
) -> None:
    """Upstreams that accept and never answer: the daemon still exits 0 well inside the pod's 30 s
    terminationGracePeriod, with its unsent points spooled (worker threads stuck in requests are left);
    with leader election, the Lease release that cannot reach the API is abandoned after its deadline."""
    intake.set_fault(lambda request: Reply(503))  # points stay in the backlog, hence in the spool
    hang = Fault(delay_s=120)
    with FakeKubeAPI() as kube, FaultProxy(kube.url) as kube_proxy, FaultProxy(prom_url) as prom_proxy:
        for manifest in kube_service_manifests(SERVICES):
            kube.add(manifest)
        config = kube.write_kubeconfig(tmp_path / "kubeconfig")
        config.write_text(config.read_text().replace(kube.url, kube_proxy.url))
        port = free_port()
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("EXPORTER_", "DD_"))}
        env |= {
            "EXPORTER_PROMETHEUS_URL": prom_proxy.url, "EXPORTER_DATADOG_URL": intake.url, "DD_API_KEY": KEY,
            "KUBECONFIG": str(config), "EXPORTER_HTTP_PORT": str(port), "EXPORTER_INTERVAL_SECONDS": "1",
            "EXPORTER_DISCOVERY_INTERVAL_SECONDS": "1", "EXPORTER_SPOOL_DIR": str(tmp_path / "spool"),
            "EXPORTER_LEADER_ELECTION": leader_election,
        }  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "run"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(intake.requests) >= 1, "a failed submission", timeout=30)  # (as the leader)
            # Prometheus first: a leader that can no longer renew its Lease stops measuring
            prom_proxy.set_fault(lambda r: hang)
            prom_seen = len(prom_proxy.requests)
            wait_for(lambda: len(prom_proxy.requests) > prom_seen, "a hung Prometheus query", timeout=30)
            kube_proxy.set_fault(lambda r: hang)
            kube_seen = len(kube_proxy.requests)
            wait_for(lambda: len(kube_proxy.requests) > kube_seen, "a hung Kubernetes request", timeout=30)
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
            took = time.monotonic() - sent_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    # grace 15 s for the hung cycle + the flush (+ the Lease release's 3 s); never the requests' own timeouts
    assert took < (20 if leader_election == "false" else 23), stderr
    assert '"event": "stopped"' in stderr
    unreleased = ("the Lease was not released in time", "could not release the Lease")
    assert any(m in stderr for m in unreleased) == (leader_election == "true"), stderr
    spool = json.loads((tmp_path / "spool" / "backlog.json").read_text())["points"]
    assert {p[2] for p in spool} and all(p[0] in METRICS.values() for p in spool)


def test_http_answers_while_a_cycle_runs(proxy: FaultProxy, intake: FakeIntake, kubeconfig: Path) -> None:
    daemon = make_daemon(proxy.url, intake.url, kubeconfig)
    port = daemon.serve_http(0)
    proxy.set_fault(lambda r: Fault(delay_s=0.8))  # a slow Prometheus: the cycle takes about a second
    try:
        worker = threading.Thread(target=daemon.cycle)
        worker.start()
        wait_for(lambda: len(proxy.requests) >= 1, "the cycle to query")
        started = time.monotonic()
        for path in ("/healthz", "/readyz", "/metrics"):
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)
        assert time.monotonic() - started < 0.5 and worker.is_alive()
        worker.join()
    finally:
        daemon.stop()


MEMORY_PROBE = """
import gc, json, sys, tracemalloc
from pathlib import Path
from tests.support.faults import STEP, T0, make_daemon

prom_url, intake_url, kubeconfig = sys.argv[1], sys.argv[2], Path(sys.argv[3])
daemon = make_daemon(prom_url, intake_url, kubeconfig)
now = [float(T0)]
daemon.clock = lambda: now[0]


def cycles(n):
    for _ in range(n):
        daemon.cycle()
        now[0] += STEP


def traced():
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


tracemalloc.start()
cycles(40)  # warm up caches, pools, lazily built objects
first = traced()
cycles(60)
middle = traced()
cycles(60)  # 160 cycles in all: 80 minutes, inside the generated data
last = traced()
daemon.stop()
print(json.dumps({"first": middle - first, "second": last - middle}))
"""


def test_memory_stays_flat_over_many_cycles(prom_url: str, intake: FakeIntake, kubeconfig: Path) -> None:
    # The daemon alone in a fresh process (the intake, which keeps every request, stays here): two
    # equal stretches of 60 cycles; a leak grows in both, caches filling up in the first only.
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, prom_url, intake.url, str(kubeconfig)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"exporter memory growth: cycles 40-100 {result['first']} B, cycles 100-160 {result['second']} B")
    # every cycle measured and submitted (in one or two requests: most figures, then the slowest)
    assert len(held(intake)) == 160 * PER_INSTANT
    instants = sorted({ts for (_, _, ts) in held(intake)})
    assert instants == list(range(instants[0], instants[0] + 160 * STEP, STEP))
    # keeping one cycle's figures and points per cycle would add ~300 KB per stretch
    assert result["first"] < 50_000 and result["second"] < 20_000, result


def test_without_a_spool_a_shutdown_during_an_outage_counts_and_logs_what_is_lost(
    prom_url: str, intake: FakeIntake, kubeconfig: Path
) -> None:
    intake.set_fault(lambda request: Reply(503))
    daemon = make_daemon(prom_url, intake.url, kubeconfig)
    with time_machine.travel(T0, tick=False) as traveller:
        driver = Driver(daemon, traveller)
        driver.start()
        driver.next()
        with capture_logs() as logs:
            daemon.stop()
    assert metric(metrics_text(daemon), 'mesh_exporter_points_dropped_total{reason="shutdown"}') == 2 * PER_INSTANT
    lost = [e for e in logs if e["event"].startswith("shutdown: unsent points lost")]
    assert lost and lost[0]["points"] == 2 * PER_INSTANT and lost[0]["log_level"] == "error"


# ------------------------------------------------------------------- measurement never waits on delivery
def test_a_slow_intake_costs_no_instant_every_one_is_measured_and_delivered_oldest_first(
    prom_url: str, intake: FakeIntake, kubeconfig: Path
) -> None:
    """Interval 1 s; the intake first answers slower than the client timeout (2 s: retried, duplicates),
    then slower than the interval, then normally. Every instant of the grid is measured and held."""
    phase = {"delay": 2.5}
    intake.set_fault(lambda request: Reply(202, delay_s=phase["delay"]) if phase["delay"] else None)
    daemon = make_daemon(prom_url, intake.url, kubeconfig)
    daemon.settings = daemon.settings.model_copy(update={"interval_seconds": 1.0})
    measured: list[tuple[int, float]] = []
    original = daemon._measure

    def recording(at: int) -> Any:
        measured.append((at, time.time()))
        return original(at)

    daemon._measure = recording  # type: ignore[method-assign]
    try:
        daemon.start()
        wait_for(lambda: len(measured) >= 6, "six instants during the timeouts", timeout=60)
        phase["delay"] = 1.5
        wait_for(lambda: len(measured) >= 10, "four instants while slower than the interval", timeout=60)
        phase["delay"] = 0.0
        wait_for(lambda: len(daemon.backlog) == 0 and len(measured) >= 12, "the backlog to drain", timeout=60)
    finally:
        daemon.stop()
    instants = [at for at, _ in measured]
    first, last = instants[0], instants[-1]
    assert instants == list(range(first, last + 1))  # every instant of the grid, in order, none twice
    late = [when - at for at, when in measured]
    # measured when due (a late job catches up at once), never held up by the 2.5 s deliveries
    assert sorted(late)[len(late) // 2] < 1.0
    # the grid was 1 s but the intake took 1.5-7.5 s per round: each instant still held once, original timestamp
    assert {ts for (_, _, ts) in held(intake)} == set(range(first, last + 1))
    assert len(held(intake)) == PER_INSTANT * len(instants)
    text = metrics_text(daemon)
    assert metric(text, 'mesh_exporter_instants_missed_total{reason="older_than_datadog_accepts"}') == 0
    first_seen = list(dict.fromkeys(p.timestamp for p in intake.points()))
    assert first_seen == sorted(first_seen)  # delivered oldest first


class Stuck:
    """A transport whose request never returns (a hung connection without a timeout)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def send_series(self, payload: bytes) -> None:
        self.calls += 1
        self.release.wait(120)

    def send_event(self, event: dict[str, Any]) -> None:
        self.release.wait(120)


def test_a_wrong_shape_kubernetes_answer_is_counted_and_the_last_good_list_kept(
    prom_url: str, intake: FakeIntake, tmp_path: Path
) -> None:
    from exporter.kube.client import KubeClient, api_client
    from exporter.kube.discovery import KubeDiscovery
    from tests.support.scripted import ScriptedServer, ok

    shape = {"page": {"items": [{"metadata": {"name": "cart", "namespace": "shop"}}]}}
    with ScriptedServer(lambda m, p, q: ok(shape["page"])) as kube:
        with FakeKubeAPI() as real:  # its kubeconfig, pointed at the misbehaving API
            config = real.write_kubeconfig(tmp_path / "kubeconfig")
            config.write_text(config.read_text().replace(real.url, kube.url))
        daemon = make_daemon(prom_url, intake.url, config)
        daemon.discovery = KubeDiscovery(KubeClient(api_client(str(config))), label_selector="migrated=true")
        daemon.refresh_discovery()
        good = list(daemon.services or [])
        shape["page"] = {"items": "abc"}
        daemon.refresh_discovery()
        shape["page"] = {"items": [{"metadata": {"namespace": "shop"}}]}
        daemon.refresh_discovery()
    assert [s.name for s in good] == ["cart"] and daemon.services == good
    text = metrics_text(daemon)
    assert metric(text, "mesh_exporter_kube_malformed_answers_total") == 2
    assert metric(text, 'mesh_exporter_errors_total{stage="discovery"}') == 2


def test_a_stuck_delivery_never_blocks_exit_and_its_points_are_spooled(
    prom_url: str, intake: FakeIntake, kubeconfig: Path, tmp_path: Path
) -> None:
    from exporter.sink.datadog import DatadogSink

    stuck = Stuck()
    daemon = make_daemon(prom_url, intake.url, kubeconfig, spool=tmp_path, sink=DatadogSink(stuck))
    daemon.grace_seconds, daemon.flush_seconds = 1.0, 1.0
    try:
        with time_machine.travel(T0, tick=False) as traveller:
            Driver(daemon, traveller).start()  # the cycle waited half an interval at most, then measured on
            wait_for(lambda: stuck.calls == 1, "the stuck request")
            started = time.monotonic()
            daemon.stop()
            took = time.monotonic() - started
    finally:
        stuck.release.set()
    assert took < 4.0  # grace 1 s + worker join 1 s + flush deadline 1 s, never the hung request's 120 s
    spooled = json.loads((tmp_path / "backlog.json").read_text())["points"]
    assert {p[2] for p in spooled} == {T0} and len(spooled) == PER_INSTANT
