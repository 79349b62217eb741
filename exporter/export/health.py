"""The daemon's HTTP server: /healthz (the process lives), /readyz (see Daemon.ready), /metrics (self-metrics),
plus the routes other features register (a path → handler table)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Request:
    """What a route sees of a request: method, path without the query, raw query string, headers, body."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[Request], Reply]


class HealthServer:
    """A threading HTTP server on 0.0.0.0:`port` (0 picks one) in a daemon thread.

    `routes` maps extra paths to handlers (any method); the probes and /metrics are built in.
    """

    def __init__(
        self,
        *,
        ready: Callable[[], tuple[bool, str]],
        registry: CollectorRegistry,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.ready = ready
        self.registry = registry
        self.routes: dict[str, Route] = {
            "/healthz": lambda request: Reply(200, b"ok\n"),
            "/readyz": self._readyz,
            "/metrics": lambda request: Reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST),
            **(routes or {}),
        }
        self._http: ThreadingHTTPServer | None = None

    def _readyz(self, request: Request) -> Reply:
        ok, text = self.ready()
        return Reply(200 if ok else 503, text.encode())

    def handle(self, request: Request) -> Reply:
        route = self.routes.get(request.path)
        return route(request) if route is not None else Reply(404, b"not found\n")

    def start(self, port: int) -> int:
        """Start serving; returns the port."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body leave in two writes: no delayed-ACK stall

            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server.handle(Request(self.command, path, query, headers, body))
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds are not worth a log line

        self._http = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="http", daemon=True).start()
        return int(self._http.server_address[1])

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
