"""Leader election on a coordination.k8s.io/v1 Lease: which replica submits, and which instants it may submit.

The algorithm is client-go's: every retry period each replica reads the Lease; the holder renews it, the
others take it over only when it has not changed for `leaseDurationSeconds` *as measured on their own clock
from when they saw it change* (never from the holder's renewTime, so clock skew between nodes is harmless).
Every write carries the resourceVersion it read, so of two replicas racing for the Lease one gets 409 Conflict
and stays a follower. A leader that has not renewed for the renew deadline (shorter than the lease duration)
stops submitting before anyone else may take over. Before a cycle is submitted, its instant is written into
the Lease (annotation `mesh-exporter/claimed-instant`) with the same resourceVersion precondition: a replica
submits an instant only if that write succeeds and the Lease holds no later-or-equal instant, so no instant
is ever submitted twice, across takeovers and restarts.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import structlog

from exporter.errors import KubeError
from exporter.kube.client import JSON, KubeClient
from exporter.retry import RetryPolicy, call

log = structlog.get_logger("exporter.kube.lease")

CLAIMED_INSTANT = "mesh-exporter/claimed-instant"


def _micro_time(seconds: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _spec(lease: JSON) -> JSON:
    spec = lease.get("spec")
    return spec if isinstance(spec, dict) else {}


def holder_of(lease: JSON) -> str:
    return str(_spec(lease).get("holderIdentity") or "")


def claimed_instant(lease: JSON) -> int | None:
    """The last instant a leader claimed for submission (None when absent or not an integer)."""
    value = ((lease.get("metadata") or {}).get("annotations") or {}).get(CLAIMED_INSTANT)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        log.warning("ignoring a malformed claimed-instant annotation on the Lease", value=str(value))
        return None


class LeaseLeadership:
    """One replica's campaign for the Lease `namespace/name` (implements exporter.export.daemon.Leadership).

    `start()` runs `step()` (one read, then acquire or renew) every retry period in a background thread;
    tests drive `step()` themselves with their own `clock`.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.kube = kube
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.timeout = max(1.0, retry_period)
        self._stop = threading.Event()
        self._sleep: Callable[[float], None] = sleep or self._wait
        self.retry = retry or RetryPolicy(attempts=3, base_wait=0.2, max_wait=1.0, sleep=self._sleep)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._lease: JSON | None = None  # the Lease as last read or written
        self._observed_rv: str | None = None
        self._observed_at: float | None = None  # our clock when we last saw the Lease change
        self._renewed_at: float | None = None  # our clock when our last renewal began; None: not leading
        self._contact_at: float | None = None  # our clock when the API last answered us
        self._holder_seen: str | None = None

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    # Leadership protocol -------------------------------------------------------------------------
    def status(self) -> str:
        now = self.clock()
        if self._leading(now):
            return "leader"
        if self._contact_at is None or now - self._contact_at >= self.renew_deadline:
            return "unknown"
        return "follower"

    def may_submit(self, at: int) -> bool:
        """True when we lead and could record `at` as the claimed instant in the Lease (no later one is there)."""
        with self._lock:
            for _ in range(2):  # a conflict is re-read once: a benign write (an annotation) must not cost a cycle
                now = self.clock()
                if not self._leading(now) or self._lease is None:
                    return False
                claimed = claimed_instant(self._lease)
                if claimed is not None and at <= claimed:
                    log.info("instant already claimed; not submitting it again", evaluated_at=at, claimed=claimed)
                    return False
                try:
                    written = call(
                        partial(self._replace, self._record(self._lease, now=now, claim=at)),
                        what=f"claim instant {at} in Lease {self.where}",
                        policy=self.retry,
                    )
                except KubeError as e:
                    if e.status != 409:
                        log.warning("cannot record the instant in the Lease; not submitting it", error=str(e))
                        return False
                    if not self._refresh(now):
                        return False
                    continue
                self._wrote(written, now)
                return True
            return False

    def submitted(self, at: int) -> None:
        log.debug("instant submitted", evaluated_at=at, lease=self.where)

    def start(self) -> None:
        """One campaign step now (so a first cycle can already submit), then one every retry period."""
        if self._thread is not None:
            return
        self.step()
        self._thread = threading.Thread(target=self._campaign, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop campaigning; with `release`, clear holderIdentity so a follower takes over at its next step."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + self.retry_period + 1)
        with self._lock:
            if release and self._lease is not None and holder_of(self._lease) == self.identity:
                now = self.clock()
                lease = copy.deepcopy(self._lease)
                lease.setdefault("spec", {}).update(holderIdentity="", renewTime=_micro_time(now))
                try:
                    self._lease = self._replace(lease)
                    log.info("leadership released", lease=self.where, identity=self.identity)
                except KubeError as e:
                    if e.status == 409:
                        log.info("the Lease changed since we last held it; nothing to release", lease=self.where)
                    else:
                        log.warning("could not release the Lease; it expires on its own", error=str(e))
            self._renewed_at = None

    # The campaign ----------------------------------------------------------------------------------
    def step(self) -> None:
        """Read the Lease, then renew it (ours), take it (free or expired) or follow its holder."""
        with self._lock:
            now = self.clock()
            try:
                lease = self._get()
            except KubeError as e:
                self._failed(now, e)
                return
            self._contact_at = now
            if lease is None:
                self._try(partial(self._create, self._record({}, now=now)), now)
                return
            self._observe(lease, now)
            holder = holder_of(lease)
            if holder and holder != self.identity and not self._expired(lease, now):
                if self._renewed_at is not None:
                    self._lose(f"the Lease is held by {holder}")
                return
            if holder and holder != self.identity:
                log.info("taking over an expired Lease", lease=self.where, holder=holder, identity=self.identity)
            self._try(partial(self._replace, self._record(lease, now=now)), now)

    def next_wait(self) -> float:
        """Seconds until the next step: the retry period, or less when a foreign holder's Lease expires sooner."""
        lease, now = self._lease, self.clock()
        holder = holder_of(lease) if lease is not None else ""
        if lease is None or not holder or holder == self.identity or self._observed_at is None:
            return self.retry_period
        remaining = self._observed_at + self._duration(lease) - now
        return min(self.retry_period, remaining) if remaining > 0 else self.retry_period

    def _campaign(self) -> None:
        while not self._stop.is_set():
            self._sleep(self.next_wait())
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception as e:  # a bug must not end the campaign silently
                log.exception("leader election step crashed", error=str(e))

    def _try(self, write: Callable[[], JSON], now: float) -> None:
        try:
            written = write()
        except KubeError as e:
            self._failed(now, e)
            return
        self._wrote(written, now)

    def _wrote(self, lease: JSON, now: float) -> None:
        """Our write succeeded at `now` (measured before the request: the conservative end)."""
        self._observe(lease, now)
        self._contact_at = now
        if self._renewed_at is None:
            log.info(
                "leadership acquired",
                lease=self.where,
                identity=self.identity,
                transitions=_spec(lease).get("leaseTransitions"),
                claimed_instant=claimed_instant(lease),
            )
        self._renewed_at = now

    def _failed(self, now: float, e: KubeError) -> None:
        if e.status == 409:
            log.debug("another replica wrote the Lease first", lease=self.where, identity=self.identity)
        elif self._renewed_at is not None:
            log.warning("could not renew the Lease", lease=self.where, error=str(e))
        else:
            log.info("could not read or take the Lease", lease=self.where, error=str(e))
        if self._renewed_at is not None and not self._leading(now):
            self._lose(f"not renewed within the renew deadline ({self.renew_deadline:g}s)")

    def _refresh(self, now: float) -> bool:
        """After a conflict: re-read the Lease; True when we still hold it."""
        try:
            lease = self._get()
        except KubeError as e:
            log.warning("cannot re-read the Lease after a conflict; not submitting", error=str(e))
            return False
        if lease is None or holder_of(lease) != self.identity:
            self._lose(f"the Lease is held by {holder_of(lease) if lease else 'nobody (deleted)'}")
            if lease is not None:
                self._observe(lease, now)
            return False
        self._observe(lease, now)
        return True

    def _lose(self, reason: str) -> None:
        if self._renewed_at is not None:
            log.warning("leadership lost", lease=self.where, identity=self.identity, reason=reason)
        self._renewed_at = None

    # State -----------------------------------------------------------------------------------------
    def _leading(self, now: float) -> bool:
        return self._renewed_at is not None and now - self._renewed_at < self.renew_deadline

    def _observe(self, lease: JSON, now: float) -> None:
        self._lease = lease
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        if rv != self._observed_rv:
            self._observed_rv, self._observed_at = rv, now
        holder = holder_of(lease)
        if holder != self._holder_seen:
            self._holder_seen = holder
            if holder and holder != self.identity:
                log.info("following the leader", lease=self.where, leader=holder, identity=self.identity)

    def _expired(self, lease: JSON, now: float) -> bool:
        """The holder has not changed the Lease for its leaseDurationSeconds since we saw it change."""
        return self._observed_at is not None and now >= self._observed_at + self._duration(lease)

    def _duration(self, lease: JSON) -> int:
        duration = _spec(lease).get("leaseDurationSeconds")
        if not isinstance(duration, int) or duration <= 0:
            return math.ceil(self.lease_duration)  # a foreign writer's malformed Lease: assume ours
        return duration

    def _record(self, lease: JSON, *, now: float, claim: int | None = None) -> JSON:
        """`lease` held by us and renewed at `now`, other fields and annotations kept (+ the claimed instant)."""
        new = copy.deepcopy(lease) or {"metadata": {"name": self.name, "namespace": self.namespace}}
        new.update(apiVersion="coordination.k8s.io/v1", kind="Lease")
        spec = new.setdefault("spec", {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=math.ceil(self.lease_duration),
            renewTime=_micro_time(now),
        )
        if claim is not None:
            new["metadata"].setdefault("annotations", {})[CLAIMED_INSTANT] = str(claim)
        return new

    # Kubernetes API --------------------------------------------------------------------------------
    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _get(self) -> JSON | None:
        try:
            return self.kube.request(
                "GET", f"{self._path}/{self.name}", what=f"read Lease {self.where}", timeout=self.timeout
            )
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def _create(self, lease: JSON) -> JSON:
        return self.kube.request(
            "POST", self._path, what=f"create Lease {self.where}", body=lease, timeout=self.timeout
        )

    def _replace(self, lease: JSON) -> JSON:
        """PUT with the resourceVersion we read: 409 when anyone wrote the Lease since."""
        return self.kube.request(
            "PUT", f"{self._path}/{self.name}", what=f"update Lease {self.where}", body=lease, timeout=self.timeout
        )


def identity() -> str:
    """This replica's name: POD_NAME (downward API) or the host name."""
    return os.environ.get("POD_NAME") or socket.gethostname()
