"""Synthetic Istio mesh rendered as OpenMetrics text for promtool backfill (tests, demo, benchmarks)."""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "DEFAULT_LATENCY",
    "ISTIO_BUCKETS_MS",
    "LATENCY_FAST",
    "LATENCY_SLOW",
    "LATENCY_TYPICAL",
    "REPORTERS",
    "Caller",
    "Latency",
    "Phase",
    "Service",
    "Version",
    "demo_mesh",
    "kube_service_manifests",
    "scaled_mesh",
    "write_openmetrics",
]

ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
    30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
"""Istio's default request-duration buckets (upper bounds, milliseconds)."""

REPORTERS: tuple[str, ...] = ("destination", "source")
"""Every Istio reporter; the default for `write_openmetrics`."""

REQUESTS_FAMILY = "istio_requests"
DURATION_FAMILY = "istio_request_duration_milliseconds"
UNKNOWN = "unknown"

_BOUNDS: tuple[float, ...] = (*(float(b) for b in ISTIO_BUCKETS_MS), math.inf)
_BOUND_SET = frozenset(_BOUNDS)
_TOLERANCE = 1e-9
_FLUSH_CHARS = 1 << 23  # write in chunks of ~8 MiB


def _le_text(le: float) -> str:
    if math.isinf(le):
        return "+Inf"
    return str(int(le)) if float(le).is_integer() else repr(float(le))


def _check_fraction(what: str, value: float) -> None:
    if not (math.isfinite(value) and -_TOLERANCE <= value <= 1 + _TOLERANCE):
        raise ValueError(f"{what} must be within [0, 1], got {value!r}")


# --------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Latency:
    """Share of requests whose duration falls in each Istio bucket: ((le_ms, fraction), ...).

    Fractions sum to 1; every le is one of ISTIO_BUCKETS_MS or math.inf. A request counted at
    le=25 took more than the previous bound (10 ms) and at most 25 ms. Shares are stored sorted.
    """

    shares: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        shares = tuple(sorted((float(le), float(fraction)) for le, fraction in self.shares))
        bounds = [le for le, _ in shares]
        if len(set(bounds)) != len(bounds):
            raise ValueError(f"latency shares repeat a bucket: {bounds}")
        for le, fraction in shares:
            if le not in _BOUND_SET:
                raise ValueError(f"le={le!r} is not an Istio bucket (ISTIO_BUCKETS_MS or math.inf)")
            _check_fraction(f"latency share at le={le!r}", fraction)
        total = math.fsum(fraction for _, fraction in shares)
        if abs(total - 1.0) > _TOLERANCE:
            raise ValueError(f"latency shares must sum to 1, got {total!r}")
        object.__setattr__(self, "shares", shares)

    @classmethod
    def of(cls, shares: Mapping[float, float]) -> Latency:
        """`Latency.of({25: 0.9, 100: 0.09, 500: 0.01})`: 90 % within 10–25 ms, and so on."""
        return cls(tuple(shares.items()))

    def cumulative(self) -> tuple[tuple[float, float], ...]:
        """Cumulative fraction at every Istio bucket and +Inf (non-decreasing, +Inf exactly 1)."""
        share = dict(self.shares)
        acc = 0.0
        out: list[tuple[float, float]] = []
        for le in _BOUNDS[:-1]:
            acc += share.get(le, 0.0)
            out.append((le, min(acc, 1.0)))
        out.append((math.inf, 1.0))
        return tuple(out)

    @property
    def mean_ms(self) -> float:
        """Mean duration: bucket midpoints weighted by share (the +Inf bucket counts as its lower bound)."""
        total = 0.0
        for le, fraction in self.shares:
            index = _BOUNDS.index(le)
            lower = _BOUNDS[index - 1] if index else 0.0
            total += fraction * (lower if math.isinf(le) else (lower + le) / 2)
        return total


LATENCY_FAST = Latency.of({1: 0.1, 5: 0.55, 10: 0.25, 25: 0.08, 50: 0.02})
LATENCY_TYPICAL = Latency.of({5: 0.2, 10: 0.35, 25: 0.3, 50: 0.1, 100: 0.04, 250: 0.01})
LATENCY_SLOW = Latency.of({100: 0.15, 250: 0.45, 500: 0.3, 1000: 0.07, 2500: 0.03})
DEFAULT_LATENCY = LATENCY_TYPICAL


@dataclass(frozen=True)
class Caller:
    """A client of a service. workload "unknown" = traffic from outside the mesh (no sidecar)."""

    workload: str
    """source_workload ("unknown" for outside callers)."""
    namespace: str
    """source_workload_namespace ("unknown" for outside callers)."""
    rps: float
    """Requests per second this caller sends to the service."""
    mtls_share: float = 1.0
    """Fraction sent with connection_security_policy="mutual_tls" (the rest: "none")."""
    unseen: bool = False
    """Its requests reach only pods of the service without a sidecar (partial injection): no
    reporter="destination" series for this caller, while its own proxy still writes reporter="source" ones."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rps) and self.rps >= 0):
            raise ValueError(f"caller {self.workload}: rps must be a finite number >= 0, got {self.rps!r}")
        _check_fraction(f"caller {self.workload}: mtls_share", self.mtls_share)
        if (self.workload == UNKNOWN) != (self.namespace == UNKNOWN):
            raise ValueError("an outside caller has workload and namespace both 'unknown'")
        if self.workload == UNKNOWN and self.mtls_share != 0:
            raise ValueError("a caller from outside the mesh has no sidecar: set mtls_share=0.0")

    @property
    def in_mesh(self) -> bool:
        return self.workload != UNKNOWN


@dataclass(frozen=True)
class Version:
    """One destination_version of a service and how it answers."""

    name: str = "v1"
    """destination_version."""
    share: float = 1.0
    """Fraction of the service's requests served by this version."""
    error_rate: float = 0.0
    """Fraction answered 503."""
    client_error_rate: float = 0.0
    """Fraction answered 404."""
    latency: Latency = DEFAULT_LATENCY
    workload: str = ""
    """destination_workload; empty means `<service>-<version>` (Flagger names its canary `<name>`)."""
    app: str = ""
    """destination_app; empty means the Service's name (one Service may front several apps)."""

    def __post_init__(self) -> None:
        _check_fraction(f"version {self.name}: share", self.share)
        _check_fraction(f"version {self.name}: error_rate", self.error_rate)
        _check_fraction(f"version {self.name}: client_error_rate", self.client_error_rate)
        if self.error_rate + self.client_error_rate > 1 + _TOLERANCE:
            raise ValueError(f"version {self.name}: error_rate + client_error_rate exceeds 1")


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service in the mesh, its callers and its versions."""

    namespace: str
    name: str
    callers: tuple[Caller, ...]
    versions: tuple[Version, ...] = (Version(),)
    migrated: bool = True
    """The Kubernetes Service carries the label migrated=true."""
    sidecar: bool = True
    """Its pods run an Istio proxy; without one there is no reporter="destination" series (callers' proxies
    still write reporter="source" ones), and every request it gets is plaintext."""

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"service {self.namespace}/{self.name} has no versions")
        names = [v.name for v in self.versions]
        if len(set(names)) != len(names):
            raise ValueError(f"service {self.namespace}/{self.name} repeats a version: {names}")
        total = math.fsum(v.share for v in self.versions)
        if abs(total - 1.0) > _TOLERANCE:
            raise ValueError(f"service {self.namespace}/{self.name}: version shares sum to {total!r}, not 1")
        clients = [(c.workload, c.namespace) for c in self.callers]
        if len(set(clients)) != len(clients):
            raise ValueError(f"service {self.namespace}/{self.name} repeats a caller: {clients}")


@dataclass(frozen=True)
class Phase:
    """The mesh's rates from `start` (unix seconds) until the next phase starts."""

    start: float
    services: tuple[Service, ...]

    def __post_init__(self) -> None:
        if not math.isfinite(self.start):
            raise ValueError(f"phase start must be finite, got {self.start!r}")
        keys = [(s.namespace, s.name) for s in self.services]
        if len(set(keys)) != len(keys):
            raise ValueError("a phase lists the same (namespace, service) twice")


# ------------------------------------------------------------------------------------ series building
_POLICIES = ("mutual_tls", "none")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _spiffe(namespace: str, account: str) -> str:
    return f"spiffe://cluster.local/ns/{namespace}/sa/{account}"


@dataclass
class _Combo:
    """One istio_requests_total series (and its histogram): per-phase request rate and latency."""

    reporter: str
    service: Service
    caller: Caller
    version: str
    code: str
    policy: str
    rates: list[float]
    latencies: list[Latency | None]
    workload: str = ""
    app: str = ""

    def label_text(self) -> str:
        svc, caller = self.service, self.caller
        mtls = self.policy == "mutual_tls"
        if self.reporter == "source":
            # The client sidecar knows its own identity but not the connection's security policy:
            # both policies are merged into one series whose labels reveal nothing about mTLS.
            source_principal = _spiffe(caller.namespace, caller.workload)
            destination_principal = UNKNOWN
        else:
            source_principal = _spiffe(caller.namespace, caller.workload) if mtls else UNKNOWN
            destination_principal = _spiffe(svc.namespace, svc.name) if mtls else UNKNOWN
        pairs = (
            ("reporter", self.reporter),
            ("source_workload", caller.workload),
            ("source_workload_namespace", caller.namespace),
            ("source_principal", source_principal),
            ("source_app", caller.workload),
            ("source_version", "v1" if caller.in_mesh else UNKNOWN),
            ("destination_workload", self.workload or f"{svc.name}-{self.version}"),
            ("destination_workload_namespace", svc.namespace),
            ("destination_principal", destination_principal),
            ("destination_app", self.app or svc.name),
            ("destination_version", self.version),
            ("destination_service", f"{svc.name}.{svc.namespace}.svc.cluster.local"),
            ("destination_service_name", svc.name),
            ("destination_service_namespace", svc.namespace),
            ("request_protocol", "http"),
            ("response_code", self.code),
            ("response_flags", "-"),
            ("connection_security_policy", self.policy),
        )
        return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


def _combos(phases: Sequence[Phase], reporters: frozenset[str]) -> list[_Combo]:
    """Every (reporter, service, caller, version, code, policy) with a nonzero rate in some phase."""
    n = len(phases)
    combos: dict[tuple[str, ...], _Combo] = {}

    def add(
        reporter: str,
        svc: Service,
        caller: Caller,
        version: Version,
        code: str,
        policy: str,
        phase: int,
        rate: float,
    ) -> None:
        key = (
            reporter,
            svc.namespace,
            svc.name,
            caller.workload,
            caller.namespace,
            version.name,
            code,
            policy,
        )
        combo = combos.get(key)
        if combo is None:
            combo = combos[key] = _Combo(
                reporter, svc, caller, version.name, code, policy, [0.0] * n, [None] * n, version.workload, version.app
            )
        combo.rates[phase] += rate
        combo.latencies[phase] = version.latency

    for index, phase in enumerate(phases):
        for svc in phase.services:
            for caller in svc.callers:
                for version in svc.versions:
                    base = caller.rps * version.share
                    ok = max(0.0, 1.0 - version.error_rate - version.client_error_rate)
                    for code, fraction in (
                        ("200", ok),
                        ("404", version.client_error_rate),
                        ("503", version.error_rate),
                    ):
                        rate = base * fraction
                        if "destination" in reporters and svc.sidecar and not caller.unseen:
                            for policy, share in zip(
                                _POLICIES, (caller.mtls_share, 1.0 - caller.mtls_share), strict=True
                            ):
                                add("destination", svc, caller, version, code, policy, index, rate * share)
                        if "source" in reporters and caller.in_mesh:
                            add("source", svc, caller, version, code, UNKNOWN, index, rate)
    return [c for c in combos.values() if any(r > 0 for r in c.rates)]


class _Grid:
    """Sample instants start, start+step, … ≤ end, each with its phase and the time into that phase."""

    def __init__(self, starts: Sequence[float], *, end: float, step: float, part: tuple[int, int]) -> None:
        count = math.floor((end - starts[0]) / step + 1e-9) + 1
        index, parts = part
        self.lo, self.hi = count * index // parts, count * (index + 1) // parts
        times = [float(starts[0]) + k * float(step) for k in range(count)]
        self.starts = list(starts)
        self.durations = [b - a for a, b in pairwise(starts)]
        self.ts_text = [str(int(t)) if t.is_integer() else repr(t) for t in times]
        self.phase: list[int] = []
        self.elapsed: list[float] = []
        p = 0
        for t in times:
            while p + 1 < len(starts) and t >= starts[p + 1]:
                p += 1
            self.phase.append(p)
            self.elapsed.append(t - starts[p])
        # first sample index at or after each phase's start
        self.first = [next((k for k, t in enumerate(times) if t >= s), count) for s in starts]

    def values(self, rates: Sequence[float], birth: int) -> list[str]:
        """'<value> <timestamp>\\n' for every sample from the birth phase on (counter born at 0)."""
        base = [0.0] * len(rates)
        acc = 0.0
        for i in range(birth, len(rates)):
            base[i] = acc
            if i < len(self.durations):
                acc += rates[i] * self.durations[i]
        k, hi = max(self.first[birth], self.lo), self.hi
        return [
            f"{base[p] + rates[p] * el!r} {ts}\n"
            for p, el, ts in zip(self.phase[k:hi], self.elapsed[k:hi], self.ts_text[k:hi], strict=True)
        ]

    def cached(self, cache: dict[tuple[float, ...], list[str]], rates: tuple[float, ...], birth: int) -> list[str]:
        found = cache.get(rates)
        if found is None:
            found = cache[rates] = self.values(rates, birth)
        return found


class _ChunkWriter:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= _FLUSH_CHARS:
            self.flush()

    def series(self, prefix: str, values: list[str]) -> int:
        """Write one series: `prefix` before every '<value> <timestamp>' line; returns samples."""
        if values:
            self.add(prefix + prefix.join(values))
        return len(values)

    def flush(self) -> None:
        self._stream.write("".join(self._parts))
        self._parts.clear()
        self._size = 0


def write_openmetrics(
    path: Path | str,
    phases: Sequence[Phase],
    *,
    end: float,
    step: float,
    reporters: Sequence[str] = REPORTERS,
    part: tuple[int, int] = (0, 1),
) -> int:
    """Write the mesh's istio_requests_total and istio_request_duration_milliseconds series to `path`.

    Samples are taken at phases[0].start + k*step up to `end` (inclusive). Each series is born at 0
    when its combination first has a nonzero rate and grows linearly within each phase; once born it
    is written up to `end`. Families are not interleaved, each series' samples are contiguous and in
    time order (promtool silently drops out-of-order samples), and the text ends with `# EOF`.
    reporter="source" merges mutual_tls and none into one series per caller × version × code, with
    connection_security_policy="unknown". `part=(i, n)` writes only the i-th of n consecutive time
    slices of the samples (promtool can backfill the slices in parallel). Returns the number of samples.
    """
    phases = tuple(phases)
    if not phases:
        raise ValueError("no phases")
    starts = [p.start for p in phases]
    if any(b <= a for a, b in pairwise(starts)):
        raise ValueError(f"phase starts must increase strictly: {starts}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be > 0, got {step!r}")
    if end < starts[0]:
        raise ValueError(f"end ({end}) is before the first phase ({starts[0]})")
    unknown = set(reporters) - set(REPORTERS)
    if unknown or not reporters:
        raise ValueError(f"reporters must be a non-empty subset of {REPORTERS}, got {tuple(reporters)}")

    if not (len(part) == 2 and 0 <= part[0] < part[1]):
        raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part!r}")
    grid = _Grid(starts, end=end, step=step, part=part)
    combos = _combos(phases, frozenset(reporters))
    births = [next(i for i, r in enumerate(c.rates) if r > 0) for c in combos]
    labels = [c.label_text() for c in combos]
    le_texts = [_le_text(le) for le in _BOUNDS]
    samples = 0
    with open(path, "w", encoding="utf-8", newline="\n") as stream:
        out = _ChunkWriter(stream)
        out.add(f"# TYPE {REQUESTS_FAMILY} counter\n# HELP {REQUESTS_FAMILY} Requests (synthetic mesh).\n")
        for combo, birth, text in zip(combos, births, labels, strict=True):
            samples += out.series(f"{REQUESTS_FAMILY}_total{{{text}}} ", grid.values(combo.rates, birth))

        out.add(f"# TYPE {DURATION_FAMILY} histogram\n# HELP {DURATION_FAMILY} Request duration (synthetic mesh).\n")
        for combo, birth, text in zip(combos, births, labels, strict=True):
            cache: dict[tuple[float, ...], list[str]] = {}  # most buckets repeat 0 or the count
            cumulative = [lat.cumulative() if lat else None for lat in combo.latencies]
            for index, le in enumerate(le_texts):
                rates = tuple(r * cum[index][1] if cum else 0.0 for r, cum in zip(combo.rates, cumulative, strict=True))
                samples += out.series(
                    f'{DURATION_FAMILY}_bucket{{{text},le="{le}"}} ', grid.cached(cache, rates, birth)
                )
            count = tuple(combo.rates)
            samples += out.series(f"{DURATION_FAMILY}_count{{{text}}} ", grid.cached(cache, count, birth))
            total = tuple(r * lat.mean_ms if lat else 0.0 for r, lat in zip(combo.rates, combo.latencies, strict=True))
            samples += out.series(f"{DURATION_FAMILY}_sum{{{text}}} ", grid.cached(cache, total, birth))
        out.add("# EOF\n")
        out.flush()
    return samples


# ---------------------------------------------------------------------------------------- Kubernetes
def kube_service_manifests(services: Iterable[Service]) -> list[dict[str, Any]]:
    """Kubernetes v1 Service objects for the services (label migrated="true" only when migrated)."""
    manifests: list[dict[str, Any]] = []
    for svc in services:
        labels = {"app": svc.name}
        if svc.migrated:
            labels["migrated"] = "true"
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": labels},
                "spec": {
                    "type": "ClusterIP",
                    "selector": {"app": svc.name},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                },
            }
        )
    return manifests


# ------------------------------------------------------------------------------------------- presets
def demo_mesh(now: float) -> tuple[Phase, ...]:
    """A small, realistic mesh with data from now-40min to now (write it with end=now).

    Deliberate traps: legacy/mainframe-gw has 0 % mTLS (no mutual_tls series); legacy/reports-export
    answers every request 503 (no non-5xx series); analytics/warehouse-loader loses all traffic at
    now-15min (series exist, rate 0 at now); shop/api and payments/api share a name; analytics/reporting
    is not migrated; some callers come from outside the mesh; shop/recommendations has three versions.
    """
    gw = Caller("istio-ingressgateway", "istio-system", 0.0)
    outside = Caller(UNKNOWN, UNKNOWN, 0.0, mtls_share=0.0)

    def c(caller: Caller, rps: float, mtls_share: float | None = None) -> Caller:
        share = caller.mtls_share if mtls_share is None else mtls_share
        return Caller(caller.workload, caller.namespace, rps, mtls_share=share)

    web = Caller("web-v1", "frontend", 0.0)
    cart = Caller("cart-v1", "shop", 0.0)
    checkout = Caller("checkout-v1", "shop", 0.0)
    recommendations = Caller("recommendations-v1", "shop", 0.0)
    payments_api = Caller("api-v1", "payments", 0.0)
    auth = Caller("auth-v1", "identity", 0.0)
    products = Caller("products-v1", "catalog", 0.0)
    events = Caller("events-v1", "analytics", 0.0)
    cron = Caller("cron-runner", "analytics", 0.0)

    def services(warehouse_rps: float) -> tuple[Service, ...]:
        return (
            Service("frontend", "web", (c(gw, 120.0),), (Version(latency=LATENCY_TYPICAL),)),
            Service("frontend", "static", (c(gw, 60.0), c(outside, 4.0)), (Version(latency=LATENCY_FAST),)),
            Service("shop", "cart", (c(web, 30.0),), (Version(error_rate=0.01),)),
            Service("shop", "checkout", (c(web, 12.0), c(cart, 5.0)),
                    (Version(error_rate=0.02, client_error_rate=0.01, latency=LATENCY_SLOW),)),
            Service("shop", "api", (c(web, 25.0),), (Version(latency=LATENCY_FAST),)),
            Service("shop", "recommendations", (c(web, 20.0),), (
                Version("v1", share=0.7, latency=LATENCY_TYPICAL),
                Version("v2", share=0.2, error_rate=0.05, latency=LATENCY_SLOW),
                Version("v3", share=0.1, latency=LATENCY_FAST),
            )),
            Service("shop", "notify", (c(checkout, 3.0),), (Version(latency=LATENCY_FAST),)),
            Service("payments", "api", (c(checkout, 8.0),),
                    (Version(error_rate=0.03, client_error_rate=0.02, latency=LATENCY_SLOW),)),
            Service("payments", "ledger", (c(payments_api, 6.0),), (Version(latency=LATENCY_TYPICAL),)),
            Service("payments", "fraud-check", (c(payments_api, 4.0),),
                    (Version(error_rate=0.005, latency=LATENCY_SLOW),)),
            Service("identity", "auth", (c(web, 50.0), c(cart, 10.0), c(checkout, 5.0)),
                    (Version(client_error_rate=0.05, latency=LATENCY_FAST),)),
            Service("identity", "sessions", (c(auth, 40.0),), (Version(latency=LATENCY_FAST),)),
            Service("catalog", "products", (c(web, 45.0), c(recommendations, 15.0)), (Version(),)),
            Service("catalog", "search", (c(web, 22.0, mtls_share=0.9),), (Version(latency=LATENCY_SLOW),)),
            Service("catalog", "inventory", (c(products, 10.0), c(checkout, 4.0)),
                    (Version(error_rate=0.001),)),
            Service("legacy", "mainframe-gw", (c(checkout, 4.0, mtls_share=0.0), c(outside, 2.0)),
                    (Version(latency=LATENCY_SLOW),)),
            Service("legacy", "reports-export", (c(cron, 1.5),), (Version(error_rate=1.0),)),
            Service("analytics", "events", (c(web, 80.0, mtls_share=0.75), c(checkout, 5.0)),
                    (Version(latency=LATENCY_FAST),)),
            Service("analytics", "reporting", (c(outside, 2.0),), (Version(),), migrated=False),
            Service("analytics", "warehouse-loader", (c(events, warehouse_rps),),
                    (Version(latency=LATENCY_SLOW),)),
        )  # fmt: skip

    return (Phase(now - 40 * 60, services(3.0)), Phase(now - 15 * 60, services(0.0)))


_PROFILES = (LATENCY_FAST, LATENCY_TYPICAL, LATENCY_TYPICAL, LATENCY_SLOW)


def scaled_mesh(n_services: int, *, now: float, seed: int = 0) -> tuple[Phase, ...]:
    """`n_services` migrated services, ~40 per namespace, varied figures; one phase from now-30min.

    Service i lives in namespace ns-<i mod N> and is named svc-<i div N>, so names repeat across
    namespaces. Deterministic for a given (n_services, seed).
    """
    if n_services < 1:
        raise ValueError("n_services must be >= 1")
    rng = random.Random(seed)
    n_ns = max(1, math.ceil(n_services / 40))
    clients = [f"client-{k}" for k in range(8)]

    def rps() -> float:
        return round(10 ** rng.uniform(-1.3, 2.3), 3)

    def caller() -> Caller:
        r = rng.random()
        mtls = 1.0 if r < 0.8 else 0.0 if r < 0.9 else round(rng.uniform(0.3, 0.95), 2)
        return Caller(rng.choice(clients), f"ns-{rng.randrange(n_ns):04d}", rps(), mtls_share=mtls)

    def version(name: str, share: float) -> Version:
        r = rng.random()
        errors = 0.0 if r < 0.65 else 1.0 if r < 0.66 else round(rng.uniform(0.001, 0.05), 4)
        client_errors = 0.0 if rng.random() < 0.8 else round(rng.uniform(0.001, 0.02), 4)
        client_errors = min(client_errors, 1.0 - errors)
        return Version(name, share, errors, client_errors, rng.choice(_PROFILES))

    services: list[Service] = []
    for i in range(n_services):
        callers = [caller()]
        if rng.random() < 0.3:
            extra = Caller(UNKNOWN, UNKNOWN, rps(), mtls_share=0.0) if rng.random() < 0.3 else caller()
            if (extra.workload, extra.namespace) != (callers[0].workload, callers[0].namespace):
                callers.append(extra)
        versions = (version("v1", 1.0),) if rng.random() < 0.85 else (version("v1", 0.9), version("v2", 0.1))
        services.append(Service(f"ns-{i % n_ns:04d}", f"svc-{i // n_ns:04d}", tuple(callers), versions))
    return (Phase(now - 30 * 60, tuple(services)),)


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.meshsim", description=__doc__)
    parser.add_argument("--services", type=int, default=0, help="scaled mesh size (0: the demo mesh)")
    parser.add_argument("--out", type=Path, required=True, help="OpenMetrics file to write")
    parser.add_argument("--now", type=float, default=None, help="end of the data, unix seconds")
    parser.add_argument("--step", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reporters", default=",".join(REPORTERS), help="comma-separated")
    args = parser.parse_args(argv)
    now = args.now if args.now is not None else math.floor(time.time() / args.step) * args.step
    phases = scaled_mesh(args.services, now=now, seed=args.seed) if args.services else demo_mesh(now)
    began = time.perf_counter()
    samples = write_openmetrics(args.out, phases, end=now, step=args.step, reporters=tuple(args.reporters.split(",")))
    print(f"{samples} samples written to {args.out} in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
