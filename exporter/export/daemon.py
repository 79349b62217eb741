"""The long-running exporter: APScheduler jobs, HTTP health and self-metrics, graceful shutdown.

Jobs: a cycle every interval (never overlapping: max_instances 1, coalesced, with a misfire grace)
and a discovery refresh on its own interval that keeps the last good Service list when the
Kubernetes API fails. HTTP: /healthz (the process lives), /readyz (a cycle succeeded within the
last three intervals), /metrics (self-metrics from a private registry). SIGTERM/SIGINT stop
scheduling and let a running cycle finish within a bounded grace; then the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.config import Settings
from exporter.errors import ExporterError, QueryError, SubmitError
from exporter.export.cycle import run_cycle
from exporter.export.health import HealthServer
from exporter.export.selfmetrics import SelfMetrics, register_leadership
from exporter.kube.discovery import KubeDiscovery
from exporter.model import ServiceRef
from exporter.query.prometheus import PrometheusClient
from exporter.retry import RetryPolicy
from exporter.sink.backlog import Backlog
from exporter.sink.datadog import DatadogSink

log = structlog.get_logger("exporter.export.daemon")

READY_INTERVALS = 3


class Leadership(Protocol):
    """Who may submit when several replicas run (see exporter.kube.lease)."""

    def may_submit(self, at: int) -> bool:
        """True when this replica leads and no replica has submitted the instant `at` yet."""
        ...

    def submitted(self, at: int) -> None:
        """Record that the cycle evaluated at `at` was submitted."""
        ...

    def status(self) -> str:
        """`leader`, `follower`, or `unknown` (the Lease could not be read lately)."""
        ...

    def stop(self) -> None:
        """Stop campaigning and release the Lease if held."""
        ...

    def start(self) -> None:
        """Begin campaigning: one attempt now, then every retry period in a background thread."""
        ...


class Daemon:
    """Holds the clients and the state between cycles; `run()` blocks until a stop signal."""

    def __init__(
        self,
        settings: Settings,
        *,
        discovery: KubeDiscovery,
        prom: PrometheusClient,
        sink: DatadogSink | None,
        clock: Callable[[], float] = time.time,
        grace_seconds: float = 20.0,
        leader: Leadership | None = None,
        backlog: Backlog | None = None,
    ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.prom = prom
        self.sink = sink
        self.clock = clock
        self.grace_seconds = grace_seconds
        self.leader = leader
        self.last_at: int | None = None
        self.metrics = SelfMetrics()
        if leader is not None:
            register_leadership(self.metrics.registry, leader.status)
        self.backlog = backlog if backlog is not None else Backlog(clock=clock)
        self.backlog.on_drop = lambda reason, n: self.metrics.points_dropped.labels(reason).inc(n)
        self.services: list[ServiceRef] | None = None
        self.discovered_at: float | None = None
        self.last_success: float | None = None
        self.stop_event = threading.Event()
        self._cycle_lock = threading.Lock()
        self._http: HealthServer | None = None
        self.scheduler: BackgroundScheduler | None = None
        # Retry waits end at once on shutdown, so a cycle caught in an outage finishes within the grace.
        self.prom.retry = replace(self.prom.retry, sleep=self._pause(lambda: QueryError("shutting down", query="-")))
        if self.sink is not None:
            self.sink.retry = replace(
                self.sink.retry, sleep=self._pause(lambda: SubmitError("shutting down", retryable=True))
            )

    def _pause(self, interrupted: Callable[[], Exception]) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            if self.stop_event.wait(seconds):
                raise interrupted()

        return sleep

    # Jobs ----------------------------------------------------------------------------------------
    def refresh_discovery(self) -> None:
        try:
            services = self.discovery.list_services()
        except ExporterError as e:
            self.metrics.errors.labels("discovery").inc()
            age = None if self.discovered_at is None else round(self.clock() - self.discovered_at, 1)
            log.error(
                "discovery failed; keeping the last good service list",
                error=str(e),
                list_age_s=age,
                services=len(self.services or []),
            )
            return
        self.services, self.discovered_at = services, self.clock()
        self.metrics.services.set(len(services))
        log.info("discovered services", services=len(services), selector=self.settings.label_selector)

    def instant(self) -> int:
        """The evaluation instant of a cycle starting now: the start of the current interval, so that
        every replica and every retry of a cycle names the same instant."""
        interval = self.settings.interval_seconds
        return int(self.clock() // interval * interval)

    def cycle(self) -> None:
        """One cycle at the current interval's instant; never raises (failures are logged and counted)."""
        with self._cycle_lock:
            if self.stop_event.is_set():
                return
            at = self.instant()
            if at == self.last_at:
                return  # this interval's instant was already exported
            if self.leader is not None and not self.leader.may_submit(at):
                log.debug("not the leader; skipping cycle", evaluated_at=at, leadership=self.leader.status())
                return
            if self.services is None:
                self.refresh_discovery()
            if self.services is None:
                log.warning("no service list yet; skipping cycle")
                return
            started = time.perf_counter()
            if self.discovered_at is not None:
                self.metrics.discovery_age.set(self.clock() - self.discovered_at)
            before = self.prom.requests_made
            try:
                result = run_cycle(
                    self.services,
                    prom=self.prom,
                    at=at,
                    window=self.settings.rate_window,
                    namespaces=self.settings.namespaces,
                    sink=self.sink,
                    tags=self.settings.tags,
                    backlog=self.backlog,
                    source=self.settings.figure_source,
                )
            except Exception as e:  # a bug must not kill the daemon; it is logged with its traceback
                self.metrics.errors.labels("cycle").inc()
                log.exception("cycle crashed", error=str(e))
                return
            finally:
                self.metrics.promql_requests.inc(self.prom.requests_made - before)
            self.last_at = at
            if self.leader is not None and result.submitted is not None:
                self.leader.submitted(at)
            self.metrics.cycle_seconds.observe(time.perf_counter() - started)
            for stage, seconds in result.durations.items():
                self.metrics.stage_seconds.labels(stage).set(seconds)
            if result.query_errors:
                self.metrics.errors.labels("query").inc(len(result.query_errors))
                for error in result.query_errors.values():
                    self.metrics.query_errors.labels(error.kind).inc()
            self.metrics.backlog.set(len(self.backlog))
            if result.submitted is not None:
                self.metrics.points.inc(result.submitted.points)
                self.metrics.points_failed.inc(result.submitted.failed_points)
                self.metrics.datadog_requests.inc(result.submitted.requests)
                if result.submitted.errors:
                    self.metrics.errors.labels("submit").inc(len(result.submitted.errors))
            if result.ok:
                self.last_success = self.clock()
                self.metrics.last_success.set(self.last_success)

    # Health --------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """A leader (or a single replica) is ready when a cycle succeeded within three intervals; a
        follower when it can see the Lease, so that it is ready to take over."""
        if self.leader is not None and self.leader.status() == "follower":
            return True
        if self.last_success is None:
            return False
        return self.clock() - self.last_success <= READY_INTERVALS * self.settings.interval_seconds

    def readiness(self) -> tuple[bool, str]:
        ok = self.ready()
        role = f" ({self.leader.status()})" if self.leader is not None else ""
        return ok, ("ready" if ok else "not ready") + role + "\n"

    def serve_http(self, port: int) -> int:
        """Start /healthz, /readyz and /metrics on 0.0.0.0:`port` (0 picks one); returns the port."""
        self._http = HealthServer(ready=self.readiness, registry=self.metrics.registry)
        return self._http.start(port)

    # Lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Schedule the jobs (first cycle now) on a background scheduler."""
        if self.leader is not None:
            self.leader.start()  # first, so that the first cycle may already submit
        interval = self.settings.interval_seconds
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": max(1, int(interval))},
        )
        self.scheduler.add_job(
            self.refresh_discovery, "interval", seconds=self.settings.discovery_interval_seconds, id="discovery"
        )
        self.scheduler.add_job(self.cycle, "interval", seconds=interval, id="cycle", next_run_time=_now())
        self.scheduler.start()
        self.metrics.up.set(1)

    def stop(self) -> bool:
        """Stop scheduling; wait up to the grace for a running cycle. True when it finished in time."""
        self.stop_event.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        finished = self._cycle_lock.acquire(timeout=self.grace_seconds)
        if finished:
            self._cycle_lock.release()
        else:
            log.warning("a cycle was still running when the grace period ended", grace_s=self.grace_seconds)
        self.flush_backlog()
        if self.leader is not None:
            self.leader.stop()
        if self._http is not None:
            self._http.stop()
        self.metrics.up.set(0)
        return finished

    def flush_backlog(self) -> None:
        """At shutdown: one last attempt (no retries) to send the backlog; what remains is spooled."""
        points = self.backlog.take()
        if not points or self.sink is None:
            self.backlog.add(points)
            return
        stats = DatadogSink(self.sink.transport, retry=RetryPolicy(attempts=1)).submit(points)
        self.backlog.add(stats.failed)
        if stats.failed and self.backlog.spool is None:
            self.metrics.points_dropped.labels("shutdown").inc(len(stats.failed))
            log.error("shutdown: unsent points lost (set EXPORTER_SPOOL_DIR to keep them)", points=len(stats.failed))
        else:
            log.info("shutdown: backlog flushed", sent=stats.points, spooled=len(stats.failed))

    def run(self) -> int:
        log.info("starting", settings=self.settings.effective())
        port = self.serve_http(self.settings.http_port)
        log.info("http listening", port=port, paths=["/healthz", "/readyz", "/metrics"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.stop_event.set())
        self.start()
        self.stop_event.wait()
        log.info("stopping: letting a running cycle finish", grace_s=self.grace_seconds)
        self.stop()
        log.info("stopped")
        return 0


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
