"""A Datadog API intake on loopback: it owns the HTTP surface the exporter submits to.

`POST /api/v2/series` (MetricPayload, gzip/deflate/identity, zstd1 when `zstandard` is
importable, Datadog's documented size limits), `POST /api/v1/events` and `GET /api/v1/validate`;
the configuration APIs `datadog setup` uses: metric metadata (`GET|PUT /api/v1/metrics/{name}`; a PUT
for a metric no accepted point has named is a 404, as Datadog answers), dashboards (`GET|POST
/api/v1/dashboard`, the list paged by `start` and `count`, `GET|PUT /api/v1/dashboard/{id}`) and monitors
(`GET|POST /api/v1/monitor` with `monitor_tags`, `GET|PUT /api/v1/monitor/{id}`), kept in memory
and needing DD-APPLICATION-KEY as Datadog does. Optional DD-API-KEY checking, records of every
request (keys redacted), and fault injection (any status and headers such as Datadog's
X-RateLimit-*, delays, dropped connections) so the real `datadog-api-client` runs against it unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.loopback import Headers, LoopbackServer, QuietHandler

__all__ = [
    "MAX_COMPRESSED_BYTES",
    "MAX_DECOMPRESSED_BYTES",
    "REDACTED",
    "FakeIntake",
    "IntakeRequest",
    "Point",
    "Reply",
]

MAX_COMPRESSED_BYTES = 512_000
"""Datadog's limit for a compressed /api/v2/series body."""
MAX_DECOMPRESSED_BYTES = 5_242_880
"""Datadog's limit for a decompressed /api/v2/series body."""

_SECRET_HEADERS = frozenset({"dd-api-key", "dd-application-key"})
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Point:
    """One accepted point of one series."""

    metric: str
    tags: tuple[str, ...]  # sorted
    timestamp: int
    value: float
    type: int  # 0 unspecified, 1 count, 2 rate, 3 gauge


@dataclass(frozen=True)
class Reply:
    """A scripted answer. A 2xx reply still lets the intake accept the payload (slow or lost success)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | dict[str, Any] | None = None  # None: Datadog's usual body for the status
    delay_s: float = 0.0
    drop_connection: bool = False  # close the connection without any response

    @classmethod
    def rate_limited(
        cls, *, limit: int = 100, period: int = 10, remaining: int = 0, reset: int = 1, name: str = "metrics"
    ) -> Reply:
        """A 429 with the X-RateLimit-* headers Datadog sends."""
        return cls(
            429,
            headers={
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Period": str(period),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(reset),
                "X-RateLimit-Name": name,
            },
            body={"errors": ["Too many requests"]},
        )


@dataclass(frozen=True)
class IntakeRequest:
    """One request as received: secrets redacted, body decompressed and decoded where possible."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # case-insensitive; DD-API-KEY / DD-APPLICATION-KEY are "<redacted>"
    raw_length: int  # body bytes as sent (compressed)
    content_encoding: str | None
    decoded_length: int | None  # after decompression; None if it could not be decompressed
    json: Any  # the decoded JSON body; None if absent or not JSON
    api_key_valid: bool | None  # None when the intake checks no key
    status: int | None = None  # the answer; None while a fault hook runs, and for dropped connections


class _Undecodable(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _decompress(raw: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        try:
            inflater = zlib.decompressobj(wbits)
            data = inflater.decompress(raw, MAX_DECOMPRESSED_BYTES + 1)
        except zlib.error as e:
            raise _Undecodable(400, f"Payload could not be decompressed: {e}") from None
        return data
    if encoding == "zstd1":
        try:
            import zstandard  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise _Undecodable(415, "Unsupported Content-Encoding: zstd1") from None
        try:
            reader = zstandard.ZstdDecompressor().decompressobj()
            return bytes(reader.decompress(raw))[: MAX_DECOMPRESSED_BYTES + 1]
        except zstandard.ZstdError as e:
            raise _Undecodable(400, f"Payload could not be decompressed: {e}") from None
    raise _Undecodable(415, f"Unsupported Content-Encoding: {encoding}")


def _series_points(payload: Any) -> list[Point]:
    """The points of a v2 MetricPayload; raises ValueError with Datadog-like wording when malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("series"), list):
        raise ValueError("Payload is not in the expected format: missing 'series'")
    points: list[Point] = []
    for i, series in enumerate(payload["series"]):
        if not isinstance(series, dict):
            raise ValueError(f"series[{i}] is not an object")
        metric = series.get("metric")
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"series[{i}].metric is required")
        kind = series.get("type", 0)
        if not isinstance(kind, int) or isinstance(kind, bool) or kind not in (0, 1, 2, 3):
            raise ValueError(f"series[{i}].type must be one of 0, 1, 2, 3")
        tags = series.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"series[{i}].tags must be a list of strings")
        raw_points = series.get("points")
        if not isinstance(raw_points, list) or not raw_points:
            raise ValueError(f"series[{i}].points is required")
        for j, point in enumerate(raw_points):
            ts = point.get("timestamp") if isinstance(point, dict) else None
            value = point.get("value") if isinstance(point, dict) else None
            if not isinstance(ts, int) or isinstance(ts, bool):
                raise ValueError(f"series[{i}].points[{j}].timestamp must be an integer")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"series[{i}].points[{j}].value must be a number")
            points.append(Point(metric, tuple(sorted(tags)), ts, float(value), kind))
    return points


class _Outcome:
    def __init__(
        self,
        status: int,
        body: bytes | dict[str, Any],
        *,
        points: list[Point] | None = None,
        event: dict[str, Any] | None = None,
        action: Callable[[], Any] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.points = points
        self.event = event
        self.action = action  # a configuration change, applied (under the lock) only if the answer is a success


class FakeIntake(LoopbackServer):
    """A Datadog API intake on 127.0.0.1 for tests: `with FakeIntake(api_key="k") as dd: ...`."""

    def __init__(self, *, api_key: str | None = None, app_key: str | None = None) -> None:
        self.api_key = api_key
        self.app_key = app_key
        self._metadata: dict[str, dict[str, Any]] = {}
        self._received: set[str] = set()  # metric names of accepted points: the only ones metadata may name
        self._dashboards: dict[str, dict[str, Any]] = {}
        self._monitors: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._records: list[IntakeRequest] = []
        self._points: list[Point] = []
        self._events: list[dict[str, Any]] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._fault: Callable[[IntakeRequest], Reply | None] | None = None
        self._next_event_id = 1
        super().__init__()

    thread_name = "fake-intake"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    # ---- test-side access ----------------------------------------------------------------

    @property
    def requests(self) -> list[IntakeRequest]:
        """A snapshot of every request received, in arrival order (secrets redacted)."""
        with self._lock:
            return list(self._records)

    def points(self) -> list[Point]:
        """Every point of every accepted /api/v2/series request, in arrival order."""
        with self._lock:
            return list(self._points)

    def events(self) -> list[dict[str, Any]]:
        """The bodies of accepted /api/v1/events requests."""
        with self._lock:
            return copy.deepcopy(self._events)

    def metadata(self) -> dict[str, dict[str, Any]]:
        """Metric metadata by metric name, as last set."""
        with self._lock:
            return copy.deepcopy(self._metadata)

    def dashboards(self) -> dict[str, dict[str, Any]]:
        """Dashboards by id, as stored."""
        with self._lock:
            return copy.deepcopy(self._dashboards)

    def monitors(self) -> dict[int, dict[str, Any]]:
        """Monitors by id, as stored."""
        with self._lock:
            return copy.deepcopy(self._monitors)

    def script(self, *responses: Reply) -> None:
        """The next requests get these replies, in order; then the intake answers normally again."""
        with self._lock:
            self._script.extend(responses)

    def set_fault(self, fn: Callable[[IntakeRequest], Reply | None] | None) -> None:
        """Ask `fn` about every request (after the script is used up); a Reply it returns is the answer."""
        with self._lock:
            self._fault = fn

    # ---- internals -----------------------------------------------------------------------

    def _pick_fault(self, request: IntakeRequest) -> Reply | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            fn = self._fault
        return fn(request) if fn is not None else None

    def _outcome(self, request: IntakeRequest, problem: _Undecodable | None) -> _Outcome:
        if request.api_key_valid is False:
            return _Outcome(403, {"errors": ["Forbidden"]})
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/api/v1/validate"):
            return _Outcome(200, {"valid": True})
        if route == ("POST", "/api/v2/series"):
            if request.raw_length > MAX_COMPRESSED_BYTES:
                return _Outcome(413, {"errors": ["Payload too large"]})
            if problem is not None:
                return _Outcome(problem.status, {"errors": [problem.message]})
            if request.decoded_length is not None and request.decoded_length > MAX_DECOMPRESSED_BYTES:
                return _Outcome(413, {"errors": ["Payload too large"]})
            try:
                points = _series_points(request.json)
            except ValueError as e:
                return _Outcome(400, {"errors": [str(e)]})
            return _Outcome(202, {"errors": []}, points=points)
        if route[1].startswith(("/api/v1/metrics/", "/api/v1/dashboard", "/api/v1/monitor")):
            with self._lock:
                return self._configuration(request, route)
        if route == ("POST", "/api/v1/events"):
            if problem is not None:
                return _Outcome(problem.status, {"errors": [problem.message]})
            body = request.json
            if not isinstance(body, dict) or not body.get("title") or not body.get("text"):
                return _Outcome(400, {"errors": ["Event title and text are required"]})
            return _Outcome(202, {"status": "ok"}, event=body)
        return _Outcome(404, {"errors": ["Not found"]})

    def _configuration(self, request: IntakeRequest, route: tuple[str, str]) -> _Outcome:
        """Metric metadata, dashboards and monitors: Datadog's v1 REST paths, stored in memory."""
        if self.app_key is not None and request.headers.get("DD-APPLICATION-KEY") is None:
            return _Outcome(403, {"errors": ["Forbidden: an application key is required"]})
        method, path = route
        parts = path.split("/")[3:]  # after /api/v1
        body = request.json if isinstance(request.json, dict) else None
        if parts[0] == "metrics" and len(parts) == 2:
            name = parts[1]
            if method == "GET":
                found = self._metadata.get(name)
                return _Outcome(200, found) if found is not None else _Outcome(404, {"errors": ["Metric not found"]})
            if method == "PUT" and body is not None:
                bad = set(body) - {"description", "per_unit", "short_name", "statsd_interval", "type", "unit"}
                if bad:
                    return _Outcome(400, {"errors": [f"Unknown metadata fields: {sorted(bad)}"]})
                if name not in self._received and name not in self._metadata:  # as Datadog answers
                    return _Outcome(404, {"errors": ["metric_name not found"]})
                return _Outcome(200, body, action=lambda: self._set_metadata(name, body))
        if parts[0] == "dashboard":
            if method == "GET" and len(parts) == 1:
                summaries = [
                    {k: d.get(k) for k in ("id", "title", "description", "layout_type", "url", "author_handle")}
                    for d in self._dashboards.values()
                ]
                try:
                    start = int(request.query.get("start", "0"))
                    count = int(request.query.get("count", str(len(summaries))))
                except ValueError:
                    return _Outcome(400, {"errors": ["start and count must be integers"]})
                return _Outcome(200, {"dashboards": summaries[start : start + count]})
            if method in ("POST", "PUT") and body is not None:
                missing = [k for k in ("title", "layout_type", "widgets") if k not in body]
                if missing:
                    return _Outcome(400, {"errors": [f"Missing required fields: {missing}"]})
            if method == "POST" and len(parts) == 1 and body is not None:
                return _Outcome(200, body, action=lambda: self._store_dashboard(None, body))
            if len(parts) == 2 and parts[1] not in self._dashboards:
                return _Outcome(404, {"errors": ["Dashboard not found"]})
            if method == "GET" and len(parts) == 2:
                return _Outcome(200, self._dashboards[parts[1]])
            if method == "PUT" and len(parts) == 2 and body is not None:
                return _Outcome(200, body, action=lambda: self._store_dashboard(parts[1], body))
        if parts[0] == "monitor":
            if method == "GET" and len(parts) == 1:
                wanted = {t for t in request.query.get("monitor_tags", "").split(",") if t}
                return _Outcome(200, [m for m in self._monitors.values() if wanted <= set(m.get("tags") or [])])  # type: ignore[arg-type]
            if method == "POST" and len(parts) == 1 and body is not None:
                missing = [k for k in ("type", "query") if k not in body]
                if missing:
                    return _Outcome(400, {"errors": [f"Missing required fields: {missing}"]})
                return _Outcome(200, body, action=lambda: self._store_monitor(None, body))
            if len(parts) == 2 and (not parts[1].isdigit() or int(parts[1]) not in self._monitors):
                return _Outcome(404, {"errors": ["Monitor not found"]})
            if method == "GET" and len(parts) == 2:
                return _Outcome(200, self._monitors[int(parts[1])])
            if method == "PUT" and len(parts) == 2 and body is not None:
                return _Outcome(200, body, action=lambda: self._store_monitor(int(parts[1]), body))
        return _Outcome(404 if body is not None or method == "GET" else 400, {"errors": ["Not found"]})

    def _set_metadata(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._metadata[name] = body
        return body

    def _store_dashboard(self, dashboard_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
        if dashboard_id is None:
            n = len(self._dashboards) + 1
            dashboard_id = f"{n:03d}-mex-{n:03d}"
            created = now
        else:
            created = self._dashboards[dashboard_id]["created_at"]
        stored = {**body, "id": dashboard_id, "created_at": created, "modified_at": now,
                  "url": f"/dashboard/{dashboard_id}", "author_handle": "tests@example.com"}  # fmt: skip
        self._dashboards[dashboard_id] = stored
        return stored

    def _store_monitor(self, monitor_id: int | None, body: dict[str, Any]) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
        if monitor_id is None:
            monitor_id = max(self._monitors, default=1000) + 1
            stored = {"options": {}, "tags": [], "message": "", "name": "", **body}
            stored |= {"id": monitor_id, "created": now, "overall_state": "No Data"}
        else:
            stored = {**self._monitors[monitor_id], **body}
        stored["modified"] = now
        self._monitors[monitor_id] = stored
        return stored

    def _accept(self, outcome: _Outcome) -> dict[str, Any] | bytes:
        """Record what an answered-with-success request delivered; returns the response body."""
        with self._lock:
            if outcome.action is not None:
                return outcome.action()  # type: ignore[no-any-return]
            if outcome.points is not None:
                self._points.extend(outcome.points)
                self._received.update(p.metric for p in outcome.points)
            if outcome.event is not None:
                event_id = self._next_event_id
                self._next_event_id += 1
                self._events.append(outcome.event)
                body = outcome.event
                return {
                    "status": "ok",
                    "event": {
                        "id": event_id,
                        "id_str": str(event_id),
                        "title": body.get("title"),
                        "text": body.get("text"),
                        "date_happened": body.get("date_happened", int(time.time())),
                        "priority": body.get("priority") or "normal",
                        "alert_type": body.get("alert_type") or "info",
                        "tags": body.get("tags") or [],
                        "url": f"https://app.datadoghq.com/event/event?id={event_id}",
                    },
                }
        return outcome.body

    def _record(self, request: IntakeRequest) -> None:
        with self._lock:
            self._records.append(request)

    def _handle_request(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], raw: bytes
    ) -> tuple[Reply | None, int | None, Mapping[str, str], bytes]:
        """Decide the answer: (fault or None, status or None to drop, headers, body)."""
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        redacted = [(k, REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers]
        given_key = next((v for k, v in headers if k.lower() == "dd-api-key"), None)
        encoding = next((v for k, v in headers if k.lower() == "content-encoding"), None)
        problem: _Undecodable | None = None
        decoded: bytes | None = None
        try:
            decoded = _decompress(raw, encoding)
        except _Undecodable as e:
            problem = e
        document: Any = None
        if decoded:
            with contextlib.suppress(ValueError):
                document = json.loads(decoded)
        request = IntakeRequest(
            method=method,
            path=split.path,
            query=query,
            headers=Headers(redacted),
            raw_length=len(raw),
            content_encoding=encoding,
            decoded_length=len(decoded) if decoded is not None else None,
            json=document,
            api_key_valid=None if self.api_key is None else given_key == self.api_key,
        )
        fault = self._pick_fault(request)
        outcome = self._outcome(request, problem)
        if fault is not None and not 200 <= fault.status < 300:
            status: int | None = fault.status
            body: bytes | dict[str, Any] = fault.body if fault.body is not None else {"errors": [_phrase(fault.status)]}
            reply_headers: Mapping[str, str] = fault.headers
        else:
            body = self._accept(outcome) if 200 <= outcome.status < 300 else outcome.body
            status = outcome.status
            reply_headers = {}
            if fault is not None:
                status = fault.status
                reply_headers = fault.headers
                body = fault.body if fault.body is not None else body
        if fault is not None and fault.drop_connection:
            status = None
        self._record(replace(request, status=status))
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        return fault, status, reply_headers, payload


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _make_handler(intake: FakeIntake) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        server_version = "FakeIntake/1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            fault, status, headers, payload = intake._handle_request(
                self.command, self.path, list(self.headers.items()), raw
            )
            if fault is not None and fault.delay_s > 0:
                time.sleep(fault.delay_s)
            if status is None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.reply(status, payload, {"Content-Type": "application/json", **headers})

    return Handler
