"""Istio PeerAuthentication objects resolved to the effective mTLS mode of each namespace (pure).

The rules, as Istio documents them (istio.io, "Security" concepts → "Authentication policies", and
the `security.istio.io` PeerAuthentication reference):

- Scope comes from where a policy is stored and whether it has a selector: in the root namespace
  (`istio_root_namespace`, usually istio-system) without a selector it is **mesh-wide**; in any
  other namespace without a selector it is **namespace-wide**; with a non-empty
  `selector.matchLabels` it is **workload-specific**. Policies with a selector in the root
  namespace are ignored.
- There is only one mesh-wide policy and one namespace-wide policy per namespace: when several
  exist, Istio ignores the newer ones (the oldest by creation time applies). When several
  workload-specific policies match one workload, the oldest applies.
- The narrowest matching policy applies: workload-specific, then namespace-wide, then mesh-wide.
- Mode `UNSET` (also a policy without `mtls` or without `mode`) inherits from the parent scope;
  with no parent it is treated as `PERMISSIVE`, which is therefore the mesh default when nothing
  is set.
- `portLevelMtls` (keyed by the workload's port, not the Service's) applies only when the policy
  has a workload selector; a port's `UNSET` inherits the workload's mode.

Workloads and their labels are not known here, so a namespace's effective mode is its
namespace-wide mode; workload- and port-level policies that change it are reported as exceptions.
`allowance()` ties one plaintext flow to the policy that allows it, as far as request metrics can
tell: they carry the destination's `app` label (`destination_app`) but no port and no other label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"

    def inherit(self, parent: Mode) -> Mode:
        """This mode, or `parent` when UNSET."""
        return parent if self is Mode.UNSET else self


MESH_DEFAULT = Mode.PERMISSIVE
"""What UNSET means with no parent, and the mode of a mesh without any PeerAuthentication."""
MESH_DEFAULT_SOURCE = "mesh default"


class PolicyError(ValueError):
    """A PeerAuthentication object that Istio itself would reject (its name is in the message)."""


@dataclass(frozen=True)
class Policy:
    """One PeerAuthentication object, as far as mTLS modes go."""

    namespace: str
    name: str
    created: str = ""
    """metadata.creationTimestamp (RFC 3339 in UTC, so it sorts as text); decides between duplicates."""
    selector: Mapping[str, str] = field(default_factory=dict)
    """spec.selector.matchLabels; empty for mesh- and namespace-wide policies."""
    mode: Mode = Mode.UNSET
    ports: Mapping[str, Mode] = field(default_factory=dict)
    """spec.portLevelMtls: workload port → mode."""
    changed: str = ""
    """The latest metadata.managedFields[].time (RFC 3339, UTC), else `created`: the last change."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def age_key(self) -> tuple[str, str]:
        return (self.created, self.name)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Policy:
        """A Policy from the API's JSON object; PolicyError when a mode or field is malformed."""
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        ref = f"PeerAuthentication {namespace}/{name}"
        if not namespace or not name:
            raise PolicyError(f"{ref}: metadata.namespace and metadata.name are required")
        spec = obj.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise PolicyError(f"{ref}: spec must be an object")
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        if not isinstance(labels, Mapping):
            raise PolicyError(f"{ref}: spec.selector.matchLabels must be an object")
        ports_spec = spec.get("portLevelMtls") or {}
        if not isinstance(ports_spec, Mapping):
            raise PolicyError(f"{ref}: spec.portLevelMtls must be an object")
        ports = {str(port): _mode(value, f"{ref}: spec.portLevelMtls[{port}]") for port, value in ports_spec.items()}
        created = str(meta.get("creationTimestamp") or "")
        managed = meta.get("managedFields") or []
        times = [str(m["time"]) for m in managed if isinstance(m, Mapping) and m.get("time")]
        return cls(
            namespace=namespace,
            name=name,
            created=created,
            changed=max([created, *times]),
            selector={str(k): str(v) for k, v in labels.items()},
            mode=_mode(spec.get("mtls"), f"{ref}: spec.mtls"),
            ports=ports,
        )


def _mode(mtls: Any, where: str) -> Mode:
    if mtls is None:
        return Mode.UNSET
    if not isinstance(mtls, Mapping):
        raise PolicyError(f"{where} must be an object with a mode")
    value = mtls.get("mode") or "UNSET"
    try:
        return Mode(str(value).upper())
    except ValueError:
        raise PolicyError(f"{where}.mode: {value!r} is not one of UNSET, DISABLE, PERMISSIVE, STRICT") from None


@dataclass(frozen=True)
class WorkloadException:
    """A workload-specific policy whose mode, or one of whose ports' modes, differs from its namespace's."""

    policy: str
    """namespace/name of the PeerAuthentication."""
    selector: Mapping[str, str]
    mode: Mode
    """The workload's effective mode (UNSET resolved)."""
    ports: Mapping[str, Mode]
    """Effective modes of the ports that differ from `mode`."""

    def describe(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))
        text = f"workloads {labels} ({self.policy}): {self.mode}"
        ports = "; ".join(f"port {port}: {mode}" for port, mode in sorted(self.ports.items()))
        return f"{text}; {ports}" if ports else text


@dataclass(frozen=True)
class NamespaceMode:
    """The effective mode of a namespace, where it comes from, and what differs inside it."""

    namespace: str
    mode: Mode
    """Never UNSET."""
    source: str
    """`ns/name` of the deciding policy, or "mesh default" when none applies."""
    exceptions: tuple[WorkloadException, ...] = ()
    workloads: tuple[WorkloadException, ...] = ()
    """Every workload-specific policy of the namespace (oldest first), whether or not it differs."""


@dataclass(frozen=True)
class Resolution:
    mesh: NamespaceMode
    """The mesh-wide mode (namespace = the root namespace)."""
    namespaces: dict[str, NamespaceMode]
    ignored: tuple[str, ...] = ()
    """Policies Istio ignores, each with the reason."""
    policies: tuple[Policy, ...] = ()
    """Every policy read, in namespace/name order (for the timeline)."""

    def of(self, namespace: str) -> NamespaceMode:
        """The mode of any namespace: one without a namespace-wide policy inherits the mesh's."""
        found = self.namespaces.get(namespace)
        if found is not None:
            return found
        return NamespaceMode(namespace, self.mesh.mode, self.mesh.source)


def _oldest_first(policies: Iterable[Policy]) -> list[Policy]:
    return sorted(policies, key=lambda p: p.age_key)


def resolve(policies: Iterable[Policy], *, root_namespace: str) -> Resolution:
    """Resolve every policy to the mesh's mode and the mode of each namespace that has a policy."""
    policies = list(policies)
    ignored: list[str] = []
    mesh_wide = _oldest_first(p for p in policies if p.namespace == root_namespace and not p.selector)
    for p in policies:
        if p.namespace == root_namespace and p.selector:
            ignored.append(f"{p.ref}: a workload selector in the root namespace is ignored")
    for p in mesh_wide[1:]:
        ignored.append(f"{p.ref}: newer than mesh-wide {mesh_wide[0].ref}, which applies")
    if mesh_wide:
        mesh = NamespaceMode(root_namespace, mesh_wide[0].mode.inherit(MESH_DEFAULT), mesh_wide[0].ref)
    else:
        mesh = NamespaceMode(root_namespace, MESH_DEFAULT, MESH_DEFAULT_SOURCE)

    by_namespace: dict[str, list[Policy]] = {}
    for p in policies:
        if p.namespace != root_namespace:
            by_namespace.setdefault(p.namespace, []).append(p)
    out: dict[str, NamespaceMode] = {}
    for namespace, found in sorted(by_namespace.items()):
        wide = _oldest_first(p for p in found if not p.selector)
        for p in wide[1:]:
            ignored.append(f"{p.ref}: newer than namespace-wide {wide[0].ref}, which applies")
        for p in wide:
            if p.ports:
                ignored.append(f"{p.ref}: portLevelMtls applies only to policies with a workload selector")
        mode, source = (wide[0].mode.inherit(mesh.mode), wide[0].ref) if wide else (mesh.mode, mesh.source)
        workloads = []
        for p in _oldest_first(p for p in found if p.selector):
            workload = p.mode.inherit(mode)
            ports = {port: m.inherit(workload) for port, m in p.ports.items()}
            differing = {port: m for port, m in ports.items() if m is not workload}
            workloads.append(WorkloadException(p.ref, p.selector, workload, differing))
        exceptions = tuple(w for w in workloads if w.mode is not mode or w.ports)
        out[namespace] = NamespaceMode(namespace, mode, source, exceptions, tuple(workloads))
    return Resolution(mesh, out, tuple(ignored), tuple(sorted(policies, key=lambda p: p.ref)))


class Evidence(StrEnum):
    """How far the policies explain one plaintext flow."""

    ALLOWED = "allowed"
    """A policy that applies to the destination permits plaintext (PERMISSIVE or DISABLE)."""
    MAY_PORT = "may be allowed by a port exception"
    """The destination's policy is STRICT but some of its ports are not; metrics carry no port."""
    MAY_SELECTOR = "may be allowed"
    """A workload policy that permits plaintext has selector labels the metrics do not carry."""
    NONE = "no policy allows it"


@dataclass(frozen=True)
class Allowance:
    """The policy behind one plaintext flow, and how sure that is."""

    evidence: Evidence
    policy: str
    """namespace/name of the deciding policy, or "mesh default"."""
    text: str
    exception: bool = False
    """Decided by a workload- or port-level exception (proven or possible), not the namespace's mode."""


VISIBLE_LABELS = frozenset({"app"})
"""Workload labels that request metrics carry (as destination_app): selectors on others cannot be checked."""


def _permits(w: WorkloadException) -> bool:
    return w.mode is not Mode.STRICT or any(m is not Mode.STRICT for m in w.ports.values())


def _decides(w: WorkloadException, app: str) -> bool:
    """The policy selects every workload labelled app=`app`, and only on labels the metrics carry."""
    return bool(app) and set(w.selector) <= VISIBLE_LABELS and w.selector.get("app") == app


def _may_select(w: WorkloadException, app: str) -> bool:
    """The policy's `app` label, if any, does not rule out a workload labelled app=`app` (unknown app: may)."""
    return not app or w.selector.get("app", app) == app


def _labels(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def allowance(ns: NamespaceMode, *, app: str, mesh_source: str) -> Allowance:
    """Which policy lets plaintext reach a workload labelled app=`app` in namespace `ns` (pure)."""
    found = next((i for i, w in enumerate(ns.workloads) if _decides(w, app)), None)
    deciding = None if found is None else ns.workloads[found]
    # a policy whose selector the metrics cannot check may select this workload, unless its `app` label rules
    # it out, or an older policy that certainly selects it applies instead (the oldest matching one applies)
    older = ns.workloads if found is None else ns.workloads[:found]
    unknown = [w for w in older if not set(w.selector) <= VISIBLE_LABELS and _permits(w) and _may_select(w, app)]
    if deciding is not None:
        if deciding.mode is not Mode.STRICT:
            text = f"workload policy {deciding.policy} ({_labels(deciding.selector)}): {deciding.mode}"
            return Allowance(Evidence.ALLOWED, deciding.policy, text, exception=True)
        ports = [f"port {p}: {m}" for p, m in sorted(deciding.ports.items()) if m is not Mode.STRICT]
        if ports:
            text = f"may be allowed by a port exception in {deciding.policy} ({'; '.join(ports)})"
            return Allowance(Evidence.MAY_PORT, deciding.policy, text, exception=True)
    elif ns.mode is not Mode.STRICT:
        if ns.source == MESH_DEFAULT_SOURCE:
            text = f"mesh default (no PeerAuthentication): {ns.mode}"
        else:
            scope = "mesh-wide" if ns.source == mesh_source else "namespace"
            text = f"{scope} policy {ns.source}: {ns.mode}"
        return Allowance(Evidence.ALLOWED, ns.source, text)
    if unknown:
        w = unknown[0]
        text = f"may be allowed by {w.policy} ({_labels(w.selector)}: labels not in request metrics)"
        return Allowance(Evidence.MAY_SELECTOR, w.policy, text, exception=True)
    source = deciding.policy if deciding is not None else ns.source
    return Allowance(Evidence.NONE, source, f"no policy allows it (STRICT from {source})")
