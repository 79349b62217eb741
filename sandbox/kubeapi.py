"""A Kubernetes API server on loopback: an in-memory object store behind the real REST paths.

It owns what the exporter relies on from the API server (Services with label selectors and
paging; Istio VirtualServices, DestinationRules, PeerAuthentications; Deployments; Leases;
autoscaling/v2 HorizontalPodAutoscalers; core/v1 Events, created with generateName),
with its resourceVersion, patch and Status-error semantics, bearer-token auth and fault
injection, so the real `kubernetes` client runs against it unchanged.

Only what the exporter and its tests use is served (trimmed on purpose: add a kind or a feature when a
test needs it). Approximations:
- `application/strategic-merge-patch+json` (built-in kinds only, as on the real server) is applied as a
  JSON merge patch (RFC 7386): a list in the patch replaces the whole list, where the real server merges
  lists such as containers item by item. The product itself sends only JSON patches.
- Paging reads the current state, not a snapshot at the first page's resourceVersion.
- No watch, DELETE, dry run, field selectors, server-side apply, API discovery, admission or schema
  validation. Status is a subresource for Deployments, Services, HPAs and custom resources: set it with
  `add()` or through `/status`.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonpatch
import jsonpointer
import yaml

from exporter.selectors import LabelSelectorError, parse_label_selector
from sandbox.loopback import Headers, LoopbackServer, QuietHandler

__all__ = [
    "FakeKubeAPI",
    "JSONPatchError",
    "RequestRecord",
    "apply_json_patch",
    "apply_merge_patch",
]

JSON = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Resource catalogue
# --------------------------------------------------------------------------------------------

_KIND_BY_PLURAL: dict[str, str] = {  # the kinds served; any other resource is 404
    "services": "Service",
    "events": "Event",
    "deployments": "Deployment",
    "leases": "Lease",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "virtualservices": "VirtualService",
    "destinationrules": "DestinationRule",
    "peerauthentications": "PeerAuthentication",
}
_PLURAL_BY_KIND = {kind: plural for plural, kind in _KIND_BY_PLURAL.items()}
# Versions served per group.
_SERVED_VERSIONS: dict[str, tuple[str, ...]] = {
    "": ("v1",),
    "apps": ("v1",),
    "coordination.k8s.io": ("v1",),
    "autoscaling": ("v2",),
    "networking.istio.io": ("v1", "v1beta1"),
    "security.istio.io": ("v1", "v1beta1"),
}
# Groups compiled into the real API server; the others are custom resources (CRDs).
_BUILTIN_GROUPS = frozenset({"", "apps", "autoscaling", "coordination.k8s.io"})
# Built-in resources whose status is a subresource (writes to the main resource keep the old
# status); custom resources have one too (Istio's CRDs do).
_BUILTIN_STATUS_SUBRESOURCE = frozenset(
    {("", "services"), ("apps", "deployments"), ("autoscaling", "horizontalpodautoscalers")}
)
_CRD_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")
_BUILTIN_PATCH_TYPES = (*_CRD_PATCH_TYPES, "application/strategic-merge-patch+json")


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(frozen=True)
class _Resource:
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def builtin(self) -> bool:
        return self.group in _BUILTIN_GROUPS

    @property
    def has_status_subresource(self) -> bool:
        return not self.builtin or (self.group, self.plural) in _BUILTIN_STATUS_SUBRESOURCE

    @property
    def has_generation(self) -> bool:
        return self.group != "" and (not self.builtin or self.group == "apps")


# --------------------------------------------------------------------------------------------
# Errors as Kubernetes Status objects
# --------------------------------------------------------------------------------------------

_REASONS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    409: ("Conflict", "the server reported a conflict"),
    410: ("Expired", "the resourceVersion is too old"),
    413: ("RequestEntityTooLarge", "Request entity too large"),
    415: ("UnsupportedMediaType", "the body of the request was in an unknown format"),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    500: ("InternalError", "an error on the server has prevented the request from succeeding"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


class KubeAPIError(Exception):
    """An error answer: HTTP status plus the Kubernetes `Status` body the API server sends."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        reason: str | None = None,
        details: JSON | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_reason, default_message = _REASONS.get(code, ("", f"the server responded with {code}"))
        self.code = code
        self.reason = default_reason if reason is None else reason
        self.message = default_message if message is None else message
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(f"{code} {self.reason}: {self.message}")

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res: _Resource, name: str) -> JSON:
    details: JSON = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return details


def _not_found(res: _Resource, name: str) -> KubeAPIError:
    return KubeAPIError(404, f'{res.group_resource} "{name}" not found', details=_details(res, name))


def _conflict(res: _Resource, name: str, why: str) -> KubeAPIError:
    return KubeAPIError(
        409,
        f'Operation cannot be fulfilled on {res.group_resource} "{name}": {why}',
        details=_details(res, name),
    )


_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def _invalid(res: _Resource, name: str, field: str, problem: str) -> KubeAPIError:
    kind = _KIND_BY_PLURAL[res.plural]
    qualified = f"{kind}.{res.group}" if res.group else kind
    return KubeAPIError(
        422,
        f'{qualified} "{name}" is invalid: {field}: {problem}',
        details={**_details(res, name), "kind": kind, "causes": [{"field": field, "message": problem}]},
    )


# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key, objects merge, everything else replaces)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class JSONPatchError(ValueError):
    """An RFC 6902 operation that cannot be applied (the API server answers 422 Invalid)."""


class _StrictTest(jsonpatch.TestOperation):
    """`test` as the API server's Go decoder sees it: 1 is not true, 1 equals 1.0."""

    def apply(self, obj: Any) -> Any:
        try:
            subobj, part = self.pointer.to_last(obj)
            value = subobj if part is None else self.pointer.walk(subobj, part)
        except jsonpointer.JsonPointerException as e:
            raise jsonpatch.JsonPatchTestFailed(str(e)) from None
        if not _json_equal(value, self.operation["value"]):
            raise jsonpatch.JsonPatchTestFailed(f"testing value {self.location} failed: test failed")
        return obj


class _ServerPatch(jsonpatch.JsonPatch):
    operations = MappingProxyType({**jsonpatch.JsonPatch.operations, "test": _StrictTest})


def apply_json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (the jsonpatch library, with the server's strict `test`) on a copy of `doc`."""
    if not isinstance(operations, list):
        raise TypeError("a JSON patch is a JSON array of operations")
    for number, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise JSONPatchError(f"operation {number} is not an object")
    try:
        return _ServerPatch(operations).apply(doc)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError, TypeError) as e:
        raise JSONPatchError(str(e) or type(e).__name__) from None


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered: what came in and the status that went out."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    status: int
    received: float = 0.0
    """time.monotonic() when the request arrived (before it was handled): when a write went out."""


@dataclass
class _Fault:
    remaining: int
    status: int
    path_prefix: str
    delay_s: float = 0.0
    """A slow answer instead of an error: the request is held this long, then served."""


class _Response:
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubeAPI(LoopbackServer):
    """A Kubernetes API server on 127.0.0.1 for tests: `with FakeKubeAPI() as api: ...`."""

    def __init__(self, *, token: str = "test-token", page_limit_cap: int | None = None) -> None:
        self.token = token
        self.page_limit_cap = page_limit_cap
        self._lock = threading.RLock()
        self._store: dict[tuple[str, str], dict[str, JSON]] = {}
        self._rv = 0
        self._records: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._unavailable = False
        super().__init__()

    thread_name = "fake-kube-api"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig for this server (bearer token, current-context) and return its path."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": self.token}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox"}}],
            "current-context": "sandbox",
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ---- test-side access ----------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request answered so far, in order."""
        with self._lock:
            return list(self._records)

    def fail_next(self, n: int, status: int = 503, *, path_prefix: str = "") -> None:
        """The next `n` requests whose path starts with `path_prefix` answer `status` (a Status body)."""
        with self._lock:
            self._faults.append(_Fault(n, status, path_prefix))

    def slow_next(self, n: int, seconds: float, *, path_prefix: str = "") -> None:
        """The next `n` requests whose path starts with `path_prefix` are held `seconds` before being served
        (a hung API server or a congested link), each on its own connection thread."""
        with self._lock:
            self._faults.append(_Fault(n, 0, path_prefix, seconds))

    def set_unavailable(self, flag: bool) -> None:
        """While set, every request answers 503 ServiceUnavailable."""
        with self._lock:
            self._unavailable = flag

    def add(self, obj: Mapping[str, Any]) -> JSON:
        """Store (or replace) an object as-is, assigning uid, creationTimestamp and a new resourceVersion."""
        new = copy.deepcopy(dict(obj))
        group, _ = _split_api_version(str(new.get("apiVersion", "")))
        kind = new.get("kind")
        meta = new.setdefault("metadata", {})
        if not kind or not meta.get("name") or "apiVersion" not in new:
            raise ValueError("an object needs apiVersion, kind and metadata.name")
        if kind not in _PLURAL_BY_KIND:
            raise ValueError(f"the sandbox API server serves only {sorted(_PLURAL_BY_KIND)}, not {kind}")
        res = _Resource(group, _split_api_version(new["apiVersion"])[1], _PLURAL_BY_KIND[kind])
        meta.setdefault("namespace", "default")
        with self._lock:
            bucket = self._store.setdefault((group, res.plural), {})
            key = self._key(meta.get("namespace", ""), meta["name"])
            old = bucket.get(key)
            if old is not None:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
                if res.has_generation:
                    changed = not _json_equal(old.get("spec"), new.get("spec"))
                    meta["generation"] = old["metadata"].get("generation", 1) + (1 if changed else 0)
            else:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                if res.has_generation:
                    meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_rv()
            bucket[key] = new
            return copy.deepcopy(new)

    def get(self, api_version: str, kind_plural: str, namespace: str, name: str) -> JSON | None:
        """The object the server holds now (as stored), or None."""
        group, _ = _split_api_version(api_version)
        with self._lock:
            obj = self._store.get((group, kind_plural), {}).get(self._key(namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, api_version: str, plural: str) -> list[JSON]:
        """Every stored object of that group and plural, in all namespaces, sorted by namespace/name."""
        group, _ = _split_api_version(api_version)
        with self._lock:
            bucket = self._store.get((group, plural), {})
            return [copy.deepcopy(bucket[key]) for key in sorted(bucket)]

    # ---- internals -----------------------------------------------------------------------

    @staticmethod
    def _key(namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if namespace else name

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _check_faults(self, path: str) -> None:
        delay = 0.0
        with self._lock:
            if self._unavailable:
                raise KubeAPIError(503)
            for fault in self._faults:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    if fault.delay_s > 0:
                        delay = fault.delay_s
                        break
                    headers = {"Retry-After": "1"} if fault.status == 429 else None
                    details = {"retryAfterSeconds": 1} if fault.status == 429 else None
                    raise KubeAPIError(fault.status, details=details, headers=headers)
        if delay:
            time.sleep(delay)  # outside the lock: other requests are served meanwhile

    def _dispatch(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> _Response:
        if len(path) > 1:
            path = path.rstrip("/")  # the client asks for "/version/"
        self._check_faults(path)
        if headers.get("Authorization", "") != f"Bearer {self.token}":
            raise KubeAPIError(401, "Unauthorized")
        if path == "/version":
            return _Response(200, _VERSION)
        res, namespace, name, subresource = self._route(path)
        if method == "GET" and name is None:
            return _Response(200, self._list(res, namespace, query))
        if name is None:
            if method != "POST" or namespace is None:
                raise KubeAPIError(405, f"{method} is not supported on this collection by the sandbox API server")
            return self._create(res, namespace, _decode_object(body))
        if subresource not in (None, "status"):
            raise KubeAPIError(404)
        if method == "GET":
            with self._lock:
                return _Response(200, self._present(res, self._current(res, namespace, name)))
        if method == "PUT":
            return self._replace(res, namespace, name, _decode_object(body), subresource)
        if method == "PATCH":
            content_type = headers.get("Content-Type", "").split(";")[0].strip()
            return self._patch(res, namespace, name, content_type, body, subresource)
        raise KubeAPIError(405)

    def _route(self, path: str) -> tuple[_Resource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise KubeAPIError(404)
        if version not in _SERVED_VERSIONS.get(group, ()) or not rest:
            raise KubeAPIError(404)
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise KubeAPIError(404)
        res = _Resource(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if rest[0] not in _KIND_BY_PLURAL or (namespace is None and name is not None):
            raise KubeAPIError(404)
        return res, namespace, name, subresource

    def _present(self, res: _Resource, obj: JSON) -> JSON:
        out = copy.deepcopy(obj)
        out["apiVersion"] = res.api_version
        return out

    def _current(self, res: _Resource, namespace: str | None, name: str) -> JSON:
        obj = self._store.get((res.group, res.plural), {}).get(self._key(namespace, name))
        if obj is None:
            raise _not_found(res, name)
        return obj

    def _list(self, res: _Resource, namespace: str | None, query: Mapping[str, str]) -> JSON:
        try:
            requirements = parse_label_selector(query.get("labelSelector", ""))
        except LabelSelectorError as e:
            raise KubeAPIError(400, str(e)) from None
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise KubeAPIError(400, f"invalid limit: {query.get('limit')!r}") from None
        if self.page_limit_cap is not None:
            limit = min(limit, self.page_limit_cap) if limit > 0 else self.page_limit_cap
        start, list_rv = "", None
        if query.get("continue"):
            start, list_rv = _decode_continue(query["continue"])
        with self._lock:
            bucket = self._store.get((res.group, res.plural), {})
            keys = sorted(k for k in bucket if (namespace is None or k.startswith(namespace + "/")) and k >= start)
            items: list[JSON] = []
            last_key, more, remaining = "", False, 0
            for index, key in enumerate(keys):
                if limit > 0 and len(items) >= limit:
                    more = True
                    remaining = len(keys) - index
                    break
                last_key = key
                obj = bucket[key]
                if all(r.matches((obj.get("metadata") or {}).get("labels") or {}) for r in requirements):
                    items.append(self._present(res, obj))
            rv = list_rv or str(self._rv)
            kind = next((obj.get("kind") for obj in bucket.values() if obj.get("kind")), None)
        if res.builtin:  # typed lists do not repeat apiVersion/kind on their items
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
        list_meta: JSON = {"resourceVersion": rv}
        if more:
            token = {"v": "meta.k8s.io/v1", "rv": int(rv), "start": last_key + "\x00"}
            list_meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            if not requirements:
                list_meta["remainingItemCount"] = remaining
        return {
            "kind": f"{kind or _KIND_BY_PLURAL[res.plural]}List",
            "apiVersion": res.api_version,
            "metadata": list_meta,
            "items": items,
        }

    def _create(self, res: _Resource, namespace: str, obj: JSON) -> _Response:
        self._check_type(res, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise KubeAPIError(400, "metadata must be an object")
        if meta.get("namespace") not in (None, "", namespace):
            raise KubeAPIError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise _invalid(res, "", "metadata.name", "Required value: name or generateName is required")
        if meta.get("resourceVersion"):
            raise KubeAPIError(500, "resourceVersion should not be set on objects to be created", reason="")
        with self._lock:
            bucket = self._store.setdefault((res.group, res.plural), {})
            key = self._key(namespace, name)
            if key in bucket:
                raise KubeAPIError(
                    409,
                    f'{res.group_resource} "{name}" already exists',
                    reason="AlreadyExists",
                    details=_details(res, name),
                )
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            if res.has_generation:
                meta["generation"] = 1
            meta["resourceVersion"] = self._next_rv()
            bucket[key] = copy.deepcopy(obj)
            return _Response(201, self._present(res, obj))

    def _check_type(self, res: _Resource, obj: JSON) -> None:
        api_version = obj.setdefault("apiVersion", res.api_version)
        kind = obj.setdefault("kind", _KIND_BY_PLURAL[res.plural])
        group, _ = _split_api_version(str(api_version))
        if group != res.group:
            raise KubeAPIError(
                400,
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({res.api_version})",
            )
        if kind != _KIND_BY_PLURAL[res.plural]:
            raise KubeAPIError(400, f"the kind in the data ({kind}) does not match the resource ({res.plural})")

    def _replace(
        self, res: _Resource, namespace: str | None, name: str, obj: JSON, subresource: str | None
    ) -> _Response:
        self._check_type(res, obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            raise KubeAPIError(
                400, f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        with self._lock:
            current = self._current(res, namespace, name)
            rv = meta.get("resourceVersion")
            if not rv and not res.builtin:
                raise _invalid(
                    res, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update"
                )
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise _conflict(res, name, _MODIFIED)
            return self._commit(res, current, obj, subresource)

    def _patch(
        self,
        res: _Resource,
        namespace: str | None,
        name: str,
        content_type: str,
        body: bytes,
        subresource: str | None,
    ) -> _Response:
        accepted = _BUILTIN_PATCH_TYPES if res.builtin else _CRD_PATCH_TYPES
        if content_type not in accepted:
            message = "the body of the request was in an unknown format - accepted media types include: "
            raise KubeAPIError(415, message + ", ".join(accepted))
        try:
            patch = json.loads(body or b"null")
        except ValueError as e:
            raise KubeAPIError(400, f"error decoding patch: {e}") from None
        with self._lock:
            current = self._current(res, namespace, name)
            presented = self._present(res, current)
            if content_type == "application/json-patch+json":
                try:
                    patched = apply_json_patch(presented, patch)
                except TypeError as e:
                    raise KubeAPIError(
                        400, f"json: cannot unmarshal into Go value of type jsonpatch.Patch: {e}"
                    ) from None
                except JSONPatchError as e:
                    # The real server builds this with NewGenericServerResponse(422, ...): reason Invalid and
                    # a fixed message; the failing operation is only added here, as a cause.
                    raise KubeAPIError(422, details={"causes": [{"message": str(e)}]}) from None
            elif content_type == "application/merge-patch+json":
                patched = apply_merge_patch(presented, patch)
            else:  # strategic merge, approximated (see the module's docstring)
                if not isinstance(patch, dict):
                    raise KubeAPIError(
                        400, "json: cannot unmarshal array into Go value of type map[string]interface {}"
                    )
                patched = apply_merge_patch(presented, patch)
            if not isinstance(patched, dict):
                raise KubeAPIError(
                    422,
                    f'"" is invalid: patch: Invalid value: "{json.dumps(patched)}": couldn\'t get version/kind; '
                    "json parse error: json: cannot unmarshal array into Go value of type struct "
                    '{ APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }',
                    details={"causes": [{"field": "patch", "reason": "FieldValueInvalid"}]},
                )
            meta = patched.get("metadata")
            if not isinstance(meta, dict) or meta.get("name") != name:
                raise KubeAPIError(400, "the name of the patched object does not match the name on the URL")
            rv = meta.get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise _conflict(res, name, _MODIFIED)
            return self._commit(res, current, patched, subresource)

    def _commit(self, res: _Resource, current: JSON, new: JSON, subresource: str | None) -> _Response:
        """Store `new` in place of `current` (lock held); keeps system fields and, where due, status."""
        if subresource == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = copy.deepcopy(new["status"])
            else:
                result.pop("status", None)
        else:
            result = copy.deepcopy(new)
            if res.has_status_subresource:
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
        result["apiVersion"] = current.get("apiVersion", res.api_version)
        result["kind"] = current.get("kind", _KIND_BY_PLURAL[res.plural])
        meta = result.setdefault("metadata", {})
        old_meta = current["metadata"]
        for key in ("uid", "creationTimestamp", "namespace", "name"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if res.has_generation:
            changed = not _json_equal(current.get("spec"), result.get("spec"))
            meta["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
        meta["resourceVersion"] = self._next_rv()
        self._store[(res.group, res.plural)][self._key(meta.get("namespace"), meta["name"])] = result
        return _Response(200, self._present(res, result))


_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _decode_object(body: bytes) -> JSON:
    try:
        obj = json.loads(body or b"null")
    except ValueError as e:
        raise KubeAPIError(400, f"couldn't get version/kind; json parse error: {e}") from None
    if not isinstance(obj, dict):
        raise KubeAPIError(400, "the body of the request must be a JSON object")
    return obj


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        return str(data["start"]), str(data["rv"])
    except (ValueError, KeyError, TypeError):
        raise KubeAPIError(400, f"continue key is not valid: {token!r}") from None


def _make_handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        server_version = "FakeKubeAPI/1"

        def _handle(self) -> None:
            received = time.monotonic()
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            headers = Headers(list(self.headers.items()))
            try:
                response = api._dispatch(self.command, split.path, query, headers, body)
            except KubeAPIError as e:
                response = _Response(e.code, e.status(), e.headers)
            except Exception as e:  # a bug in the fake must still answer like a server would
                response = _Response(500, KubeAPIError(500, f"Internal error occurred: {e!r}").status())
            if isinstance(response.body, str):
                payload, content_type = response.body.encode(), "text/plain; charset=utf-8"
            else:
                payload, content_type = json.dumps(response.body).encode(), "application/json"
            api._record(RequestRecord(self.command, split.path, query, headers, body, response.status, received))
            self.reply(response.status, payload, {"Content-Type": content_type, **response.headers})

    return Handler
