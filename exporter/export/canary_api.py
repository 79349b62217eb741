"""Serves slow, feature-owned HTTP endpoints (the canary analysis and Flagger webhooks) safely beside the probes.

Each request runs in this module's own bounded pool, never on the server's threads beyond a deadline:
at most `workers` analyses run at once (a request over the bound is refused at once with 429), and a
request whose work outlasts `deadline` seconds is answered 503 while its work finishes in the pool
(the slot is freed only then, so the bound holds). /healthz, /readyz and /metrics never wait on it.
An optional bearer token guards every endpoint. Every reply passes the log redactor (an upstream error
can echo a URL password or a header value). Self-metrics: requests by endpoint and status (the 429s
included), and verdicts by endpoint.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from exporter.export.health import Reply, Request, Route
from exporter.logs import redactor

log = structlog.get_logger("exporter.export.canary_api")

Answer = tuple[int, dict[str, Any] | str]
Endpoint = Callable[[str, str, bytes], Answer]
JSON = "application/json"


class GuardedEndpoints:
    """Routes for `endpoints` (path → handler of method, query string and body) with bounds, deadline, token."""

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        *,
        registry: CollectorRegistry,
        workers: int = 4,
        deadline: float = 20.0,
        token: str | None = None,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.deadline = deadline
        self.workers = workers
        self._token = token.encode() if token else None
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="canary-api")
        self.requests = Counter(
            "mesh_exporter_canary_api_requests",
            "Requests to the canary analysis endpoints, by endpoint and HTTP status",
            ("endpoint", "status"),
            registry=registry,
        )
        self.verdicts = Counter(
            "mesh_exporter_canary_api_verdicts",
            "Verdicts served by the canary analysis endpoints, by endpoint and verdict",
            ("endpoint", "verdict"),
            registry=registry,
        )

    def routes(self) -> dict[str, Route]:
        return {path: self._route(path) for path in self.endpoints}

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, b"Bearer " + self._token)

    def _route(self, path: str) -> Route:
        endpoint = self.endpoints[path]

        def route(request: Request) -> Reply:
            reply, verdict = self._serve(endpoint, request)
            self.requests.labels(path, str(reply.status)).inc()
            if verdict is not None:
                self.verdicts.labels(path, verdict).inc()
            return reply

        return route

    def _serve(self, endpoint: Endpoint, request: Request) -> tuple[Reply, str | None]:
        if not self._authorized(request):
            return _text(401, "missing or wrong Authorization token"), None
        if not self._slots.acquire(blocking=False):
            return _text(429, f"busy: {self.workers} analyses already running; retry shortly"), None

        def work() -> Answer:
            try:
                return endpoint(request.method, request.query, request.body)
            finally:
                self._slots.release()

        try:
            future = self._pool.submit(work)
        except RuntimeError:  # shutting down
            self._slots.release()
            return _text(503, "shutting down"), None
        try:
            status, body = future.result(timeout=self.deadline)
        except FutureTimeout:
            log.warning("canary analysis exceeded its deadline", path=request.path, deadline_s=self.deadline)
            return _text(503, f"analysis did not finish within {self.deadline:g}s"), None
        except Exception as e:  # a bug is a 500 with one line, never a crashed server thread
            log.exception("canary endpoint crashed", path=request.path, error=str(e))
            return _text(500, f"internal error: {type(e).__name__}"), None
        if isinstance(body, str):
            return _text(status, body), None
        return Reply(status, json.dumps(redactor.scrub(body)).encode() + b"\n", JSON), str(body.get("verdict"))


def _text(status: int, line: str) -> Reply:
    return Reply(status, (" ".join(redactor.scrub(line).split()) + "\n").encode())
