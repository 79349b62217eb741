"""The long-running exporter: APScheduler jobs, HTTP health and self-metrics, graceful shutdown.

Measurement never waits on delivery. The cycle job measures every instant of the grid (the start of
each interval): when a job ran late, the instants it missed are measured at their own instants on the
next run (Prometheus evaluates the past), for as far back as Datadog accepts points (1 h); anything
older is counted and logged, never silently skipped. The figures' points go into the backlog as soon
as their queries answer, and a delivery worker (exporter.export.delivery) sends the backlog oldest
first with the original timestamps while the slowest query (usually the p99) still runs. The cycle
waits for the last round at most half an interval, so a slow or failing Datadog never delays the next
measurement. Discovery is off the cycle's path: cycles measure the Service list the discovery job keeps.

Jobs: a cycle every interval and a discovery refresh on its own interval that keeps the last good
Service list when the Kubernetes API fails. HTTP: /healthz, /readyz (a cycle succeeded within the last
three intervals), /metrics (self-metrics from a private registry). SIGTERM/SIGINT stop scheduling,
let a running cycle finish within a bounded grace, then try one last delivery within a flush
deadline (a stuck worker is abandoned: its points are put back and spooled); exit 0.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from exporter.config import Settings
from exporter.errors import ExporterError, KubeError, QueryError, SubmitError
from exporter.export.cycle import CycleResult, gc_paused, log_cycle, measure_cycle
from exporter.export.delivery import Delivery, deliver
from exporter.export.health import HealthServer, Route
from exporter.export.selfmetrics import SelfMetrics, register_leadership
from exporter.kube.client import KubeClient
from exporter.kube.discovery import KubeDiscovery
from exporter.model import ServiceRef
from exporter.query.prometheus import PrometheusClient
from exporter.retry import RetryPolicy
from exporter.sink.backlog import MAX_AGE_SECONDS, Backlog
from exporter.sink.datadog import DatadogSink, SubmitStats, global_tags

log = structlog.get_logger("exporter.export.daemon")

READY_INTERVALS = 3
DATA_QUALITY = ("non_finite", "duplicate_series")  # query errors whose call itself succeeded
GRACE_SECONDS = 15.0  # a running cycle may finish within this after SIGTERM
FLUSH_SECONDS = 5.0  # then one last delivery within this: 20 s in all, inside a 30 s terminationGracePeriod
RELEASE_SECONDS = 3.0  # then the Lease is released within this (else it expires on its own): 23 s at most


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
        grace_seconds: float = GRACE_SECONDS,
        flush_seconds: float = FLUSH_SECONDS,
        leader: Leadership | None = None,
        backlog: Backlog | None = None,
    ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.prom = prom
        self.sink = sink
        self.clock = clock
        self.grace_seconds = grace_seconds
        self.flush_seconds = flush_seconds
        self.leader = leader
        self.last_at: int | None = None  # the last instant measured (set once its delivery was awaited)
        self._cursor: int | None = None  # the last instant considered (measured, or left to another replica)
        self.metrics = SelfMetrics()
        if leader is not None:
            register_leadership(self.metrics.registry, leader.status)
        self.backlog = backlog if backlog is not None else Backlog(clock=clock)
        self.backlog.on_drop = lambda reason, n: self.metrics.points_dropped.labels(reason).inc(n)
        if self.backlog.set_aside:
            self.metrics.spool_set_aside.inc(self.backlog.set_aside)
        self.services: list[ServiceRef] | None = None
        self.discovered_at: float | None = None
        self.last_success: float | None = None
        self.stop_event = threading.Event()
        self._cycle_lock = threading.Lock()
        self._http: HealthServer | None = None
        self.routes: dict[str, Route] = {}
        """Extra HTTP routes (e.g. the canary analysis endpoints), added before serve_http."""
        self.scheduler: BackgroundScheduler | None = None
        self.delivery = (
            Delivery(sink, self.backlog, on_round=self._delivered, cancel=self.stop_event) if sink is not None else None
        )
        # Retry waits end at once on shutdown, so a cycle caught in an outage finishes within the grace.
        self.prom.retry = replace(self.prom.retry, sleep=self._pause(lambda: QueryError("shutting down", query="-")))
        if isinstance(discovery, KubeDiscovery):
            kube = discovery.kube
            kube.retry = replace(kube.retry, sleep=self._pause(lambda: KubeError("shutting down")))
        for client in (getattr(discovery, "kube", None), getattr(leader, "kube", None)):
            if isinstance(client, KubeClient):  # discovery and the Lease: either one's calls set the gauge
                client.on_call = lambda ok: self.metrics.upstream_up.labels("kubernetes").set(ok)
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
            if getattr(e.__cause__, "kind", None) == "malformed":
                self.metrics.kube_malformed.inc()
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

    def due(self) -> list[int]:
        """The grid instants to measure now, oldest first: every one since the last considered, back
        to the age Datadog still accepts; older ones are counted and logged as missed."""
        interval = self.settings.interval_seconds
        now_at = self.instant()
        if self._cursor is None:
            return [now_at]
        first = self._cursor + interval
        if now_at < first:
            return []
        # Never materialise more than an hour of instants: a clock that jumps years ahead costs a count.
        oldest = self.clock() - MAX_AGE_SECONDS + interval
        skip = max(0, math.ceil((oldest - first) / interval))
        if skip:
            missed = min(skip, int((now_at - first) // interval) + 1)
            self.metrics.instants_missed.labels("older_than_datadog_accepts").inc(missed)
            log.error(
                "instants missed: too old to send",
                instants=missed,
                first=int(first),
                after=int(first + (missed - 1) * interval),
            )
            first += skip * interval
        count = int((now_at - first) // interval) + 1 if now_at >= first else 0
        return [int(first + k * interval) for k in range(count)]

    def cycle(self) -> None:
        """Measure every due instant and queue its points; wait for delivery at most half an interval.
        Never raises (failures are logged and counted)."""
        with self._cycle_lock, gc_paused():
            if self.stop_event.is_set():
                return
            due = self.due()
            if not due:
                return  # this interval's instant was already exported
            if self.services is None:
                self.refresh_discovery()
            if self.services is None:
                log.warning("no service list yet; skipping cycle")
                self.metrics.instants_missed.labels("no_service_list").inc(len(due))
                self._cursor = due[-1]
                return
            results = [r for r in (self._measure(at) for at in due if not self.stop_event.is_set()) if r is not None]
            if not results:
                return
            waited = time.perf_counter()
            round_stats = self.delivery.flush(self.settings.interval_seconds / 2) if self.delivery else None
            last = results[-1]
            last.submitted = round_stats
            if self.delivery is not None:
                last.durations["submit"] = time.perf_counter() - waited
            log_cycle(last, services=len(self.services), backlog=self.backlog)
            self.backlog_metrics()
            delivered = round_stats is None or not round_stats.errors
            if all(not r.query_errors for r in results) and delivered:
                self.last_success = self.clock()
                self.metrics.last_success.set(self.last_success)
            self.last_at = last.at  # measured, and its delivery round awaited (bounded)

    def _measure(self, at: int) -> CycleResult | None:
        """Measure one instant (when this replica may) and queue its points; None when not measured."""
        self._cursor = at
        if self.leader is not None and not self.leader.may_submit(at):
            log.debug("not the leader; skipping cycle", evaluated_at=at, leadership=self.leader.status())
            return None
        assert self.services is not None
        started = time.perf_counter()
        if self.discovered_at is not None:
            self.metrics.discovery_age.set(self.clock() - self.discovered_at)
        before = self.prom.requests_made
        try:
            window, namespaces = self.settings.rate_window, self.settings.namespaces
            source = self.settings.figure_source
            result = measure_cycle(
                self.services,
                prom=self.prom,
                at=at,
                window=window,
                namespaces=namespaces,
                source=source,
                on_points=self.delivery.add if self.delivery is not None else None,
                tags=global_tags(self.settings),
                metric_prefix=self.settings.metric_prefix,
            )
        except Exception as e:  # a bug must not kill the daemon; it is logged with its traceback
            self.metrics.errors.labels("cycle").inc()
            self.metrics.instants_missed.labels("not_measured").inc()
            log.exception("cycle crashed", error=str(e), evaluated_at=at)
            return None
        finally:
            self.metrics.promql_requests.inc(self.prom.requests_made - before)
        self.metrics.cycle_seconds.observe(time.perf_counter() - started)
        for stage, seconds in result.durations.items():
            self.metrics.stage_seconds.labels(stage).set(seconds)
        if result.query_errors:
            self.metrics.errors.labels("query").inc(len(result.query_errors))
            for error in result.query_errors.values():
                self.metrics.query_errors.labels(error.kind).inc()
        for name, count in result.non_finite.items():
            self.metrics.non_finite.labels(name).inc(count)
        if not result.measured:
            self.metrics.instants_missed.labels("not_measured").inc()
            log.error("instant not measured: Prometheus did not answer the request totals", evaluated_at=at)
        # Data-quality errors (non-finite samples, duplicate series) come from calls that succeeded.
        failed_calls = [e for e in result.query_errors.values() if e.kind not in DATA_QUALITY]
        self.metrics.upstream_up.labels("prometheus").set(0 if failed_calls else 1)
        if self.leader is not None:
            self.leader.submitted(at)
        return result

    # Delivery ------------------------------------------------------------------------------------
    def _delivered(self, stats: SubmitStats, seconds: float) -> None:
        """Self-metrics of one delivery round (exporter.export.delivery runs them)."""
        self.metrics.stage_seconds.labels("submit").set(seconds)
        self.metrics.points.inc(stats.points)
        self.metrics.points_failed.inc(stats.failed_points)
        self.metrics.datadog_requests.inc(stats.requests)
        if stats.rejected:
            self.metrics.points_dropped.labels("too_large").inc(len(stats.rejected))
        if stats.requests:
            self.metrics.upstream_up.labels("datadog").set(0 if stats.errors else 1)
        if stats.errors:
            self.metrics.errors.labels("submit").inc(len(stats.errors))
        self.backlog_metrics()

    def backlog_metrics(self) -> None:
        """The backlog's size and the age of its oldest point (0 when empty), for alerting."""
        self.metrics.backlog.set(len(self.backlog))
        oldest = self.backlog.oldest()
        self.metrics.backlog_oldest_age.set(0 if oldest is None else max(0.0, self.clock() - oldest))

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
        self._http = HealthServer(ready=self.readiness, registry=self.metrics.registry, routes=self.routes)
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
        if self.delivery is not None:
            self.delivery.stop()
        self.flush_backlog()
        if self.leader is not None:
            # Bounded like every other stage: a Kubernetes API that never answers must not hold the exit
            # (the Lease then expires on its own, and a follower takes over one lease duration later).
            leader = self.leader
            releasing = threading.Thread(target=leader.stop, name="lease-release", daemon=True)
            releasing.start()
            releasing.join(RELEASE_SECONDS)
            if releasing.is_alive():
                log.warning("shutdown: the Lease was not released in time; it expires on its own",
                            deadline_s=RELEASE_SECONDS)  # fmt: skip
        if self._http is not None:
            self._http.stop()
        return finished

    def flush_backlog(self) -> None:
        """At shutdown: one last attempt (no retries) to send the backlog within the flush deadline;
        what remains is spooled. A request that does not return in time is abandoned (its thread is a
        daemon) and all its points are kept."""
        points = self.backlog.take()
        if not points or self.sink is None:
            self.backlog.settle(points, points)
            return
        last = DatadogSink(self.sink.transport, retry=RetryPolicy(attempts=1))
        box: list[SubmitStats] = []
        flusher = threading.Thread(target=lambda: box.append(deliver(last, points)), name="flush", daemon=True)
        flusher.start()
        flusher.join(self.flush_seconds)
        if not box:
            log.error("shutdown: the last delivery did not finish in time; points kept", deadline_s=self.flush_seconds)
            box.append(SubmitStats(failed=points))
        stats = box[0]
        self.backlog.settle(points, stats.failed)
        if stats.failed and self.backlog.spool is None:
            self.metrics.points_dropped.labels("shutdown").inc(len(stats.failed))
            log.error("shutdown: unsent points lost (set EXPORTER_SPOOL_DIR to keep them)", points=len(stats.failed))
        else:
            log.info("shutdown: backlog flushed", sent=stats.points, spooled=len(stats.failed))

    def run(self) -> int:
        log.info("starting", settings=self.settings.effective())
        port = self.serve_http(self.settings.http_port)
        log.info("http listening", port=port, paths=["/healthz", "/readyz", "/metrics", *self.routes])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.stop_event.set())
        self.start()
        # Python runs signal handlers in the main thread only, and a wait without a timeout is not woken
        # when the kernel hands the signal to another thread: waiting in slices lets the handler run.
        while not self.stop_event.wait(0.5):
            pass
        log.info("stopping: letting a running cycle finish", grace_s=self.grace_seconds, flush_s=self.flush_seconds)
        self.stop()
        log.info("stopped")
        return 0


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
