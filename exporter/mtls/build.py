"""Builds the mTLS coverage report: coverage over a window, plaintext callers, policy verdicts.

Coverage is 100 × mutual-TLS requests / all requests as the destination's proxy reports them,
weighted by requests over the window, for the mesh, per namespace (`destination_service_namespace`)
and per migrated service; the previous window (PromQL `offset`) gives the trend. Four grouped
PromQL requests per report, however large the mesh: all requests and plaintext requests (by
destination and caller), for this window and the previous one; two more read the callers' side
(`reporter="source"`) for destinations that report nothing themselves, whose traffic is unverified.
A seventh, only when in-mesh callers stopped sending plaintext, asks their own proxies whether they
still send where the destination reports nothing from them (a partially injected destination).
Six or seven requests in all, whatever the number of services. The PeerAuthentication objects are
resolved by exporter.mtls.policy, each plaintext flow is tied to the policy that allows it, and each
namespace gets a verdict on moving to STRICT. Rendering lives in exporter.mtls.render, the value types
in exporter.mtls.model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from exporter import durations
from exporter.errors import QueryError
from exporter.model import ServiceRef
from exporter.mtls.model import (
    OUTSIDE,
    Caller,
    Coverage,
    NamespaceReport,
    Others,
    PolicyTimeline,
    Report,
    ServiceReport,
    Trend,
    Verdict,
)
from exporter.mtls.policy import Mode, Resolution, allowance, resolve
from exporter.query import promql
from exporter.query.prometheus import PrometheusClient, vector_by
from exporter.timefmt import utc_text

log = structlog.get_logger("exporter.mtls.build")

CALLER_LABELS: tuple[str, ...] = ("source_workload", "source_workload_namespace")
FLOW_LABELS: tuple[str, ...] = ("destination_app", *CALLER_LABELS)
"""Plaintext flows also carry the destination's app label, so a workload policy's selector can be checked."""


# --------------------------------------------------------------------------------------------- model


# ------------------------------------------------------------------------------------------- traffic
Key = tuple[str, ...]


@dataclass(frozen=True)
class Traffic:
    """One window's vectors: all requests per (namespace, service); plaintext per (ns, service, app, workload,
    workload ns); unverified per (ns, service, workload, ns): what callers' proxies (`reporter="source"`) send to
    destinations that report nothing, and, this window, what in-mesh callers whose plaintext stopped still send
    where the destination reports no request from them (pods without a sidecar).
    """

    requests: dict[Key, float]
    plaintext: dict[Key, float]
    unverified: dict[Key, float] = field(default_factory=dict)


def measure_traffic(
    prom: PrometheusClient, *, at: int, window: str, matchers: Sequence[promql.Matcher] = ()
) -> tuple[Traffic, Traffic]:
    """This window's and the previous window's traffic: six grouped queries, run concurrently, and a
    seventh when in-mesh callers stopped sending plaintext (does their own proxy agree?)."""
    by = promql.SERVICE_LABELS
    labels = {"requests": by, "plaintext": (*by, *FLOW_LABELS), "unverified": (*by, *CALLER_LABELS)}
    queries: dict[tuple[str, str], str] = {}
    for when, offset in (("current", None), ("previous", window)):
        queries |= {
            (when, name): text
            for name, text in promql.coverage_queries(
                callers=FLOW_LABELS, window=window, matchers=matchers, offset=offset
            ).items()
        }
        queries[(when, "unverified")] = promql.unverified_query(
            callers=CALLER_LABELS, window=window, matchers=matchers, offset=offset
        )
    vectors = {}
    for key, answer in prom.query_all(queries, at=at).items():
        if isinstance(answer, QueryError):
            raise answer  # a report is all or nothing
        vectors[key] = vector_by(answer, labels[key[1]], query=queries[key])
    current, previous = (
        Traffic(vectors[(when, "requests")], vectors[(when, "plaintext")], vectors[(when, "unverified")])
        for when in ("current", "previous")
    )
    flows = stopped_in_mesh(current, previous)
    if flows:
        text = promql.unseen_query(flows, labels["unverified"], window=window, matchers=matchers)
        unseen = vector_by(prom.query(text, at=at), labels["unverified"], query=text)
        wanted = set(flows)
        current = replace(
            current, unverified=current.unverified | {k: v for k, v in unseen.items() if k in wanted and v > 0}
        )
    return current, previous


def stopped_in_mesh(current: Traffic, previous: Traffic) -> list[Key]:
    """(ns, service, workload, workload ns) of the in-mesh callers that sent plaintext in the previous window
    and none now, unless the blind-destination query already sees their proxy sending (pure)."""
    out = _senders(previous) - _senders(current)
    return sorted(k for k in out if k[2] != OUTSIDE and current.unverified.get(k, 0.0) <= 0)


def _senders(traffic: Traffic) -> set[Key]:
    """(ns, service, workload, workload ns) of every plaintext flow, whatever the destination's app."""
    return {(ns, svc, workload, wns) for (ns, svc, _app, workload, wns), v in traffic.plaintext.items() if v > 0}


def _coverage(traffic: Traffic, keep: Callable[[Key], bool], seconds: float) -> Coverage | None:
    rate = sum(v for k, v in traffic.requests.items() if keep(k))
    if rate <= 0:
        return None
    plaintext = float(sum(v for k, v in traffic.plaintext.items() if keep(k[:2]) and v > 0))
    return Coverage(rate, plaintext, seconds)


def _trend(current: Traffic, previous: Traffic, keep: Callable[[Key], bool], seconds: float) -> Trend:
    return Trend(_coverage(current, keep, seconds), _coverage(previous, keep, seconds))


def _in_namespace(namespace: str) -> Callable[[Key], bool]:
    return lambda key: key[0] == namespace


def _is_service(service: ServiceRef) -> Callable[[Key], bool]:
    return lambda key: key == (service.namespace, service.name)


def _worst_first(trend: Trend, name: Any) -> tuple[Any, ...]:
    c = trend.current
    return (c is None, c.pct if c else 0.0, -(c.rate if c else 0.0), name)


def _verdict(mode: Mode, coverage: Coverage | None, flows: Sequence[Caller], unverified: bool) -> Verdict:
    if coverage is None:
        return Verdict.UNVERIFIED if unverified else Verdict.NO_TRAFFIC
    if mode is Mode.STRICT:
        if not flows:
            return Verdict.STRICT_CLEAN
        excepted = all(c.allowance is not None and c.allowance.exception for c in flows)
        return Verdict.STRICT_EXCEPTED if excepted else Verdict.STRICT_PLAINTEXT
    if mode is Mode.DISABLE:
        return Verdict.DISABLED
    return Verdict.BLOCKED if flows else Verdict.READY


def _timeline(policies: Resolution, start: float, end: float) -> tuple[PolicyTimeline, ...]:
    """Every policy as read now, its creation and last change placed against the window [start, end];
    RFC 3339 UTC timestamps compare as text."""
    since, until = utc_text(start), utc_text(end)
    out = []
    for p in policies.policies:
        scope = (
            f"workloads {','.join(f'{k}={v}' for k, v in sorted(p.selector.items()))}"
            if p.selector
            else "mesh-wide"
            if p.namespace == policies.mesh.namespace
            else "namespace-wide"
        )
        created, changed = p.created, p.changed or p.created
        out.append(
            PolicyTimeline(
                p.ref,
                scope,
                p.mode,
                created,
                changed,
                since <= created <= until,
                since <= changed <= until,
                created > until,
                changed > until,
            )
        )
    return tuple(out)


def _flows(
    current: Traffic, previous: Traffic, policies: Resolution
) -> tuple[list[Caller], list[Caller], list[Caller]]:
    """Plaintext flows now, each tied to the policy that allows it, keyed by the destination's app (one
    Service may front several apps, each with its own policy); then the flows that stopped since the
    previous window, and those for which nobody can tell. A caller that still sends plaintext to the Service,
    to another app (its `app` label changed), has not stopped.

    A flow seen in the previous window and not in this one is stopped when a proxy can see it: a caller in
    the mesh, when its own proxy sends nothing the destination does not see (measure_traffic asked it); a
    caller outside the mesh, when the destination still reports traffic, and otherwise nobody can tell. A
    caller whose proxy still sends where the destination sees nothing from it is unverified, not stopped.
    """
    now = {k: v for k, v in current.plaintext.items() if v > 0}
    before = {k: v for k, v in previous.plaintext.items() if v > 0}
    reporting = {k for k, v in current.requests.items() if v > 0}
    sending = _senders(current)
    offenders, resolved, unknown = [], [], []
    for flow in sorted(set(now) | set(before)):
        rate, was = now.get(flow, 0.0), before.get(flow, 0.0)
        ns, svc, app, workload, wns = flow
        why = allowance(policies.of(ns), app=app, mesh_source=policies.mesh.source)
        caller = Caller(ServiceRef(ns, svc), workload, wns, rate, was if was > 0 else None, app, why)
        if rate > 0:
            offenders.append(caller)
        elif (ns, svc, workload, wns) in sending:
            continue  # it still sends plaintext to the Service, to another app: listed as such
        elif current.unverified.get((ns, svc, workload, wns), 0.0) > 0:
            continue  # its proxy still sends: listed as unverified
        elif (ns, svc) in reporting or not caller.outside_mesh:
            resolved.append(caller)
        else:
            unknown.append(caller)
    offenders.sort(key=lambda c: (c.destination, c.app, -c.rate, c.name))
    for stopped in (resolved, unknown):
        stopped.sort(key=lambda c: (c.destination, c.app, -(c.previous_rate or 0.0), c.name))
    return offenders, resolved, unknown


def _as_of(policies: Resolution, until: str) -> Resolution:
    """The policies that existed at the window's end: one created later did not apply to its traffic."""
    kept = [p for p in policies.policies if p.created <= until]
    if len(kept) == len(policies.policies):
        return policies
    return resolve(kept, root_namespace=policies.mesh.namespace)


def _with_timeline(caller: Caller, timeline: Sequence[PolicyTimeline], now: Resolution) -> Caller:
    """Say so when a policy that now decides the flow was created after the window (it did not apply: the
    flow's allowance is what applied then), or when the one that applied was changed during or after it
    (it may not have applied to all of the window's traffic; policies are read as they are now)."""
    why = caller.allowance
    if why is None:
        return caller
    ns = caller.destination.namespace
    today = allowance(now.of(ns), app=caller.app, mesh_source=now.mesh.source).policy
    notes = []
    for p in timeline:
        if p.ref == today != why.policy and p.created_after_window:
            notes.append(f"{p.ref} created after the window ({p.created}): it did not apply to this traffic")
        elif p.ref == why.policy and p.when != "no change":
            notes.append(f"{p.ref} {p.when}: it may not have applied to all of this traffic")
    if not notes:
        return caller
    return replace(caller, allowance=replace(why, text="; ".join([why.text, *notes])))


def _unverified(current: Traffic, previous: Traffic) -> list[Caller]:
    before_plain: dict[Key, float] = {}
    for (ns, svc, _app, workload, wns), value in previous.plaintext.items():
        before_plain[(ns, svc, workload, wns)] = before_plain.get((ns, svc, workload, wns), 0.0) + value
    out = []
    for key, rate in current.unverified.items():
        if rate > 0:
            was, plain = previous.unverified.get(key, 0.0), before_plain.get(key, 0.0)
            out.append(
                Caller(
                    ServiceRef(key[0], key[1]),
                    key[2],
                    key[3],
                    rate,
                    was if was > 0 else None,
                    previous_plaintext=plain if plain > 0 else None,
                )
            )
    out.sort(key=lambda c: (-c.rate, c.destination, c.name))
    return out


def build_report(
    current: Traffic,
    previous: Traffic,
    *,
    services: Iterable[ServiceRef],
    policies: Resolution,
    at: int,
    window: str,
    namespaces: Sequence[str] | None = None,
    promql_requests: int = 0,
) -> Report:
    """The report from the two windows' traffic, the migrated services and the resolved policies (pure)."""
    seconds = durations.seconds(window)
    root = policies.mesh.namespace
    services = sorted(set(services))
    migrated = {(s.namespace, s.name) for s in services}
    timeline = _timeline(policies, at - seconds, at)
    offenders, resolved, undetermined = _flows(current, previous, _as_of(policies, utc_text(at)))
    offenders = [_with_timeline(c, timeline, policies) for c in offenders]
    unverified = _unverified(current, previous)

    seen = {k[0] for k in (*current.requests, *previous.requests)} | {s.namespace for s in services}
    seen |= {ns for ns in policies.namespaces if ns != root} | {c.destination.namespace for c in unverified}
    if namespaces:
        seen &= set(namespaces)
    rows = []
    for ns in seen:
        trend = _trend(current, previous, _in_namespace(ns), seconds)
        callers = tuple(c for c in offenders if c.destination.namespace == ns)
        blind = tuple(c for c in unverified if c.destination.namespace == ns)
        policy = policies.of(ns)
        other_keys = {k for k in (*current.requests, *previous.requests) if k[0] == ns and k not in migrated}
        others = None
        if other_keys:
            keep = lambda k, keys=frozenset(other_keys): k[:2] in keys  # noqa: E731
            others = Others(tuple(sorted(k[1] for k in other_keys)), _trend(current, previous, keep, seconds))
        verdict = _verdict(policy.mode, trend.current, callers, bool(blind))
        rows.append(NamespaceReport(ns, trend, policy, verdict, callers, others, blind))
    rows.sort(key=lambda r: _worst_first(r.coverage, r.namespace))

    blind_rate: dict[tuple[str, str], float] = {}
    for c in unverified:
        blind_rate[(c.destination.namespace, c.destination.name)] = (
            blind_rate.get((c.destination.namespace, c.destination.name), 0.0) + c.rate
        )
    service_rows = [
        ServiceReport(s, _trend(current, previous, _is_service(s), seconds), blind_rate.get((s.namespace, s.name), 0.0))
        for s in services
    ]
    service_rows.sort(key=lambda r: _worst_first(r.coverage, r.service))
    return Report(
        at=at,
        window=window,
        seconds=seconds,
        mesh=_trend(current, previous, lambda k: True, seconds),
        mesh_policy=policies.mesh,
        namespaces=tuple(rows),
        services=tuple(service_rows),
        offenders=tuple(offenders),
        resolved=tuple(resolved),
        undetermined=tuple(undetermined),
        ignored_policies=policies.ignored,
        promql_requests=promql_requests,
        unverified=tuple(unverified),
        policies=timeline,
    )
