"""Canary analysis as a service: requests (query string, JSON body, Flagger webhook payload, the CLI's
flags) validated into one AnalysisRequest, answered by measure.analyse at the current instant floored to a
step, cached per (request, instant) so that a controller polling every few seconds costs one set of queries per step.

HTTP-free: `CanaryService.endpoints()` maps each path to a handler `(method, query, body) -> (status,
document or one-line message)`; exporter.export.canary_api serves them with bounds, deadline and token.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl

from exporter import durations
from exporter.canary.analysis import FAIL, PASS, Thresholds
from exporter.canary.measure import DEFAULT_VERSION_LABEL, Analysis, Scope, analyse
from exporter.errors import QueryError
from exporter.model import ServiceRef
from exporter.query import promql
from exporter.query.prometheus import PrometheusClient
from exporter.selectors import dns_1035_label, dns_label

Answer = tuple[int, dict[str, Any] | str]
Endpoint = Callable[[str, str, bytes], Answer]

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MAX_BODY = 64 * 1024
FLAGGER_LABEL = "destination_workload"
THRESHOLDS = tuple(f.name for f in fields(Thresholds))
FIELDS = ("namespace", "service", "workload", "canary", "stable", "window", "version_label", *THRESHOLDS)
FLAGGER_OVERRIDES = ("workload", "canary", "stable", "window", "version_label", *THRESHOLDS)


class InvalidRequest(ValueError):
    """A request the analysis cannot run: `field` is the parameter (snake_case, the CLI flag's name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_name(field: str, value: str, *, service: bool = False) -> str:
    """A namespace (DNS-1123 label) or Service name (DNS-1035 label), as Kubernetes requires."""
    valid, kind = (dns_1035_label, "RFC 1035") if service else (dns_label, "RFC 1123")
    if not valid(value):
        raise InvalidRequest(
            field, f"not a Kubernetes name: {value!r} (an {kind} label: lower case letters, digits and '-', ≤ 63)"
        )
    return value


def check_version(field: str, value: str) -> str:
    """A version, as a Kubernetes label value (non-empty)."""
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise InvalidRequest(field, f"not a Kubernetes label value: {value!r}")
    return value


def thresholds_from(values: Mapping[str, Any]) -> Thresholds:
    """Thresholds from the request's values (defaults for the missing ones); InvalidRequest naming the field."""
    d = Thresholds()

    def number(name: str, integer: bool = False) -> float:
        raw = values.get(name, getattr(d, name))
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise InvalidRequest(name, f"not a number: {raw!r}") from None
        if integer and not value.is_integer():
            raise InvalidRequest(name, f"not a whole number: {raw!r}")
        if not math.isfinite(value):
            raise InvalidRequest(name, f"not a finite number: {raw!r}")
        return value

    t = {name: number(name, name == "min_requests") for name in THRESHOLDS}
    checks = (
        ("min_success_pct", 0 <= t["min_success_pct"] <= 100, "must be within [0, 100]"),
        ("max_p99_ms", t["max_p99_ms"] > 0, "must be > 0"),
        ("max_p99_ratio", t["max_p99_ratio"] > 0, "must be > 0"),
        ("confidence", 0 < t["confidence"] < 1, "must be within (0, 1), e.g. 0.95"),
        ("min_requests", t["min_requests"] >= 1, "must be >= 1"),
    )
    for name, ok, message in checks:
        if not ok:
            raise InvalidRequest(name, message)
    return Thresholds(
        min_success_pct=t["min_success_pct"],
        max_p99_ms=t["max_p99_ms"],
        max_p99_ratio=t["max_p99_ratio"],
        confidence=t["confidence"],
        min_requests=int(t["min_requests"]),
    )


@dataclass(frozen=True)
class AnalysisRequest:
    """One analysis to run: what (scope, versions, label), over which window, against which thresholds."""

    scope: Scope
    name: str
    canary: str
    stable: str
    window: str
    label: str
    thresholds: Thresholds

    def run(self, client: PrometheusClient, *, at: float) -> Analysis:
        """The analysis at `at` (QueryError when Prometheus fails): the CLI and the endpoints alike."""
        return analyse(
            client,
            self.scope,
            name=self.name,
            canary=self.canary,
            stable=self.stable,
            at=at,
            window=self.window,
            label=self.label,
            thresholds=self.thresholds,
        )


def _common(values: Mapping[str, Any], scope: Scope, name: str) -> AnalysisRequest:
    canary = check_version("canary", str(values.get("canary", "")))
    stable = check_version("stable", str(values.get("stable", "")))
    if canary == stable:
        raise InvalidRequest("canary", "must differ from stable")
    window = str(values.get("window", "5m"))
    try:
        durations.bounded(window)
    except ValueError as e:
        raise InvalidRequest("window", str(e)) from None
    label = str(values.get("version_label", DEFAULT_VERSION_LABEL))
    try:
        promql.check_label_name(label)
    except ValueError as e:
        raise InvalidRequest("version_label", str(e)) from None
    return AnalysisRequest(scope, name, canary, stable, window, label, thresholds_from(values))


def _known(values: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in values:
        if key not in allowed:
            raise InvalidRequest(key, f"unknown {where} (expected one of {', '.join(allowed)})")


def service_request(values: Mapping[str, Any]) -> AnalysisRequest:
    """The analysis endpoint's (and `canary analyze`'s) parameters, by the CLI's flag names in snake_case:
    `namespace` with either a `service` and the `canary` and `stable` versions, or a `workload` (Flagger's
    scope: see workload_request). Missing values are None or empty."""
    _known(values, FIELDS, "parameter")
    given = {k: v for k, v in values.items() if v not in (None, "")}
    if "namespace" not in given:
        raise InvalidRequest("namespace", "required")
    if "workload" in given:
        if "service" in given:
            raise InvalidRequest("workload", "give service or workload, not both")
        return workload_request(given)
    for required in ("service", "canary", "stable"):
        if required not in given:
            raise InvalidRequest(required, "required" if required != "service" else "required (or workload)")
    ref = ServiceRef(
        check_name("namespace", str(given["namespace"])),
        check_name("service", str(given["service"]), service=True),
    )
    return _common(given, Scope.service(ref), ref.name)


def workload_request(values: Mapping[str, Any]) -> AnalysisRequest:
    """Flagger's naming: the workloads `<workload>` (canary) and `<workload>-primary` (stable) of `namespace`,
    selected by destination_workload_namespace/destination_workload and told apart by destination_workload,
    unless `canary`, `stable` or `version_label` say otherwise."""
    namespace = check_name("namespace", str(values["namespace"]))
    workload = check_name("workload", str(values["workload"]))
    pair = (workload, f"{workload}-primary")
    rest = {k: v for k, v in values.items() if k not in ("namespace", "workload")}
    defaults = {"canary": pair[0], "stable": pair[1], "version_label": FLAGGER_LABEL}
    return _common(defaults | rest, Scope.workloads(namespace, pair), workload)


def flagger_request(payload: Mapping[str, Any]) -> AnalysisRequest:
    """A Flagger webhook payload: the workload is the Canary's `name` (Flagger's default assumes the Canary
    is named like its targetRef) unless `metadata` names it (`workload: <targetRef.name>`); `metadata` may
    also override versions, label, window and thresholds."""
    name = check_name("name", str(payload.get("name") or ""))
    namespace = check_name("namespace", str(payload.get("namespace") or ""))
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InvalidRequest("metadata", "must be an object of strings")
    _known(metadata, FLAGGER_OVERRIDES, "metadata key")
    return workload_request({"workload": name, **metadata, "namespace": namespace})


def query_values(query: str) -> dict[str, str]:
    """A query string as a mapping; a parameter given twice is an error."""
    out: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in out:
            raise InvalidRequest(key, "given more than once")
        out[key] = value
    return out


def json_object(body: bytes) -> dict[str, Any]:
    if len(body) > _MAX_BODY:
        raise InvalidRequest("body", f"larger than {_MAX_BODY} bytes")
    try:
        value = json.loads(body or b"{}")
    except ValueError as e:
        raise InvalidRequest("body", f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("body", "must be a JSON object")
    return value


class CanaryService:
    """Answers analysis requests through `client` at `clock()` floored to `step` seconds, with a bounded cache
    of answers (single flight: concurrent identical requests share one computation)."""

    def __init__(
        self,
        client: PrometheusClient,
        *,
        step: float = 30.0,
        cache_entries: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.step = step
        self.clock = clock
        self.cache_entries = cache_entries
        self._cache: OrderedDict[tuple[AnalysisRequest, float], Future[Analysis]] = OrderedDict()
        self._lock = threading.Lock()

    def instant(self) -> int:
        return int(math.floor(self.clock() / self.step) * self.step)

    def analysis(self, request: AnalysisRequest) -> Analysis:
        """The analysis at the current floored instant, computed once per (request, instant)."""
        at = self.instant()
        key = (request, float(at))
        with self._lock:
            for old in [k for k in self._cache if k[1] != at]:  # another instant: never hit again
                del self._cache[old]
            future = self._cache.get(key)
            mine = future is None
            if future is None:
                future = self._cache[key] = Future()
                while len(self._cache) > self.cache_entries:
                    self._cache.popitem(last=False)
        if not mine:
            return future.result()
        try:
            result = request.run(self.client, at=at)
        except BaseException as e:  # failures are not cached: the next poll asks Prometheus again
            with self._lock:
                if self._cache.get(key) is future:
                    del self._cache[key]
            future.set_exception(e)
            raise
        future.set_result(result)
        return result

    def _run(self, parse: Callable[[], AnalysisRequest], status: Callable[[str], int]) -> Answer:
        try:
            result = self.analysis(parse())
        except InvalidRequest as e:
            return 400, str(e)
        except QueryError as e:
            return 503, f"could not analyse: {e}"
        return status(result.verdict.result), result.to_dict()

    def analysis_endpoint(self, method: str, query: str, body: bytes) -> Answer:
        """GET with query parameters or POST with a JSON object; 200 for any verdict."""
        if method == "GET":
            return self._run(lambda: service_request(query_values(query)), lambda verdict: 200)
        if method == "POST":
            return self._run(lambda: service_request(json_object(body)), lambda verdict: 200)
        return 405, "use GET or POST"

    def flagger_check(self, method: str, query: str, body: bytes) -> Answer:
        """Flagger `rollout` hook: 200 on pass or inconclusive, 412 on fail."""
        if method != "POST":
            return 405, "use POST (Flagger webhook)"
        return self._run(lambda: flagger_request(json_object(body)), lambda v: 412 if v == FAIL else 200)

    def flagger_gate(self, method: str, query: str, body: bytes) -> Answer:
        """Flagger `confirm-*` hooks: 200 only on pass, so an inconclusive canary holds the step."""
        if method != "POST":
            return 405, "use POST (Flagger webhook)"
        return self._run(lambda: flagger_request(json_object(body)), lambda v: 200 if v == PASS else 412)

    def endpoints(self) -> dict[str, Endpoint]:
        return {
            "/v1/canary/analysis": self.analysis_endpoint,
            "/v1/flagger/check": self.flagger_check,
            "/v1/flagger/gate": self.flagger_gate,
        }
