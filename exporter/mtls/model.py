"""The mTLS report's value types: coverage, trends, plaintext callers, namespace verdicts, the whole report."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from exporter.model import ServiceRef
from exporter.mtls.policy import Allowance, Mode, NamespaceMode

OUTSIDE = "unknown"  # source_workload of traffic from outside the mesh (no sidecar, no identity)


class Verdict(StrEnum):
    """What a namespace's policy and observed traffic say about moving it to STRICT."""

    READY = "ready for STRICT"
    BLOCKED = "blocked"
    STRICT_CLEAN = "STRICT and clean"
    STRICT_EXCEPTED = "STRICT (plaintext only to exceptions)"
    STRICT_PLAINTEXT = "STRICT but plaintext observed"
    DISABLED = "mTLS disabled"
    UNVERIFIED = "destination without sidecar: traffic unverified"
    NO_TRAFFIC = "no traffic"


UNVERIFIED_FLAG = "destination without sidecar: traffic unverified"
"""Shown beside any namespace or service that callers reach but that reports no traffic itself."""


@dataclass(frozen=True)
class Coverage:
    """Requests over a window (> 0) and how many were plaintext."""

    rate: float
    """All requests per second, averaged over the window."""
    plaintext_rate: float
    seconds: float

    @property
    def requests(self) -> float:
        return self.rate * self.seconds  # increase() == rate() × window in PromQL

    @property
    def plaintext(self) -> float:
        return self.plaintext_rate * self.seconds

    @property
    def pct(self) -> float:
        if self.plaintext_rate <= 0:
            return 100.0  # exactly: no plaintext series had a request
        return max(0.0, min(100.0, 100.0 * (self.rate - self.plaintext_rate) / self.rate))


@dataclass(frozen=True)
class Trend:
    """Coverage in this window and in the previous one (None: no requests)."""

    current: Coverage | None
    previous: Coverage | None

    @property
    def change(self) -> float | None:
        """Percentage points gained since the previous window."""
        if self.current is None or self.previous is None:
            return None
        return self.current.pct - self.previous.pct


@dataclass(frozen=True)
class Caller:
    """A source workload sending plaintext to a destination service."""

    destination: ServiceRef
    workload: str
    namespace: str
    rate: float
    """Plaintext requests per second in this window (0 when it stopped)."""
    previous_rate: float | None
    """The same in the previous window; None when it sent no plaintext then."""
    app: str = ""
    """destination_app: the destination workload's `app` label, as the metrics carry it."""
    allowance: Allowance | None = None
    """The policy that lets this plaintext through (None for unverified flows)."""
    previous_plaintext: float | None = None
    """For an unverified flow: the plaintext rate the destination reported in the previous window."""

    @property
    def outside_mesh(self) -> bool:
        return self.workload == OUTSIDE

    @property
    def name(self) -> str:
        return "outside the mesh (unknown)" if self.outside_mesh else f"{self.namespace}/{self.workload}"

    @property
    def app_note(self) -> str:
        """` (app=x)` when the destination's app is not the Service's name (a Service may front several apps)."""
        return f" (app={self.app})" if self.app and self.app != self.destination.name else ""

    @property
    def target(self) -> str:
        return f"{self.destination}{self.app_note}"


@dataclass(frozen=True)
class Others:
    """A namespace's destinations that are not migrated Services (or not Services at all)."""

    names: tuple[str, ...]
    coverage: Trend


@dataclass(frozen=True)
class NamespaceReport:
    namespace: str
    coverage: Trend
    policy: NamespaceMode
    verdict: Verdict
    callers: tuple[Caller, ...]
    """Plaintext callers of this namespace's services in this window."""
    others: Others | None = None
    """The row that makes the service rows add up to the namespace; None when every destination is migrated."""
    unverified: tuple[Caller, ...] = ()
    """Source-reported traffic to destinations of this namespace that report nothing themselves."""


@dataclass(frozen=True)
class ServiceReport:
    service: ServiceRef
    coverage: Trend
    unverified_rate: float = 0.0
    """Source-reported requests/s to this service while it reports none itself (no sidecar)."""


@dataclass(frozen=True)
class PolicyTimeline:
    """One PeerAuthentication as read now: scope, mode, creation and last change."""

    ref: str
    scope: str
    """mesh-wide, namespace-wide or `workloads app=x`."""
    mode: Mode
    created: str
    changed: str
    created_in_window: bool
    changed_in_window: bool
    """The last change falls within the window (an earlier change, if any, is not recorded)."""
    created_after_window: bool = False
    """Created after the window's end (a historical --at): it did not apply to the window's traffic."""
    changed_after_window: bool = False
    """Last changed after the window's end: what is shown may not be what applied during the window."""

    @property
    def when(self) -> str:
        """`created during the window (…)`, `changed after the window (…)`, …, or `no change`."""
        parts = [
            f"created after the window ({self.created})" if self.created_after_window else "",
            f"created during the window ({self.created})" if self.created_in_window else "",
            f"changed during the window ({self.changed})"
            if self.changed_in_window and self.changed != self.created
            else "",
            f"changed after the window ({self.changed})"
            if self.changed_after_window and not self.created_after_window
            else "",
        ]
        return ", ".join(p for p in parts if p) or "no change"


@dataclass(frozen=True)
class Report:
    at: int
    """Evaluation instant (unix seconds): the end of the window."""
    window: str
    seconds: float
    mesh: Trend
    mesh_policy: NamespaceMode
    namespaces: tuple[NamespaceReport, ...]
    """Worst coverage first; namespaces without traffic last."""
    services: tuple[ServiceReport, ...]
    """Migrated services, worst coverage first, then by volume; without traffic last."""
    offenders: tuple[Caller, ...]
    """Plaintext callers now, by destination, biggest first."""
    resolved: tuple[Caller, ...]
    """Callers that sent plaintext in the previous window and none in this one, as a proxy can see."""
    undetermined: tuple[Caller, ...] = ()
    """Callers from outside the mesh that sent plaintext in the previous window to a destination that reports
    nothing now: no proxy on either side can tell whether they stopped."""
    ignored_policies: tuple[str, ...] = ()
    promql_requests: int = 0
    unverified: tuple[Caller, ...] = ()
    """Source-reported flows to destinations that report no traffic themselves, biggest first."""
    policies: tuple[PolicyTimeline, ...] = ()

    @property
    def start(self) -> float:
        return self.at - self.seconds

    def count(self, verdict: Verdict) -> int:
        return sum(1 for ns in self.namespaces if ns.verdict is verdict)
