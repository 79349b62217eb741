"""The daemon's HTTP server: /healthz (the process lives), /readyz (see Daemon.ready), /metrics (self-metrics),
plus the routes other features register (a path → handler table).

Bounded: every connection has a read/idle timeout (a silent client is dropped), at most
MAX_CONNECTIONS are served at once (more are closed straight away), request bodies are capped, and
registered routes share a few slots (a request over the bound gets 503 at once); the probes and
/metrics never wait for those slots, so a slow route cannot starve them.
A port already in use is a ConfigError naming EXPORTER_HTTP_PORT.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter.errors import ConfigError

IDLE_SECONDS = 10.0  # a connection that sends nothing for this long is closed
MAX_BODY_BYTES = 1024 * 1024
ROUTE_SLOTS = 4  # registered routes running at once; the built-in probes never wait for a slot
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_CONNECTIONS = 64  # open connections served at once; more are closed at once (no thread, no descriptor kept)


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most MAX_CONNECTIONS connection threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


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
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.ready = ready
        self.idle_seconds = idle_seconds
        self.registry = registry
        self.routes: dict[str, Route] = {
            "/healthz": lambda request: Reply(200, b"ok\n"),
            "/readyz": self._readyz,
            "/metrics": lambda request: Reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST),
            **(routes or {}),
        }
        self._http: ThreadingHTTPServer | None = None
        self._slots = threading.BoundedSemaphore(ROUTE_SLOTS)

    def _readyz(self, request: Request) -> Reply:
        ok, text = self.ready()
        return Reply(200 if ok else 503, text.encode())

    def handle(self, request: Request) -> Reply:
        route = self.routes.get(request.path)
        if route is None:
            return Reply(404, b"not found\n")
        if request.path in PROBES:
            return route(request)
        if not self._slots.acquire(blocking=False):
            return Reply(503, b"busy: too many requests in progress\n")
        try:
            return route(request)
        finally:
            self._slots.release()

    def start(self, port: int) -> int:
        """Start serving; returns the port."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body leave in two writes: no delayed-ACK stall
            timeout = server.idle_seconds  # socket timeout: an idle or slow client is dropped, its thread freed

            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length > MAX_BODY_BYTES or length < 0:
                    self.send_error(413 if length > 0 else 400)
                    return
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

        try:
            self._http = _BoundedServer(("0.0.0.0", port), Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError("EXPORTER_HTTP_PORT", f"port {port} is already in use") from None
            raise ConfigError("EXPORTER_HTTP_PORT", f"cannot listen on port {port}: {e.strerror}") from None
        threading.Thread(target=self._http.serve_forever, name="http", daemon=True).start()
        return int(self._http.server_address[1])

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
