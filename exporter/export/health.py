"""The daemon's HTTP server: /healthz (the process lives), /readyz (see Daemon.ready), /metrics (self-metrics),
plus the routes other features register (a path → handler table).

Bounded: a request (request line, headers and body) must arrive whole within `read_seconds` of when the
server starts waiting for it, however slowly it drips, or its connection is closed; at most
MAX_CONNECTIONS are served at once, and a connection beyond that evicts the one that has been waiting
longest for its request (slow or idle clients cannot keep the probes out); request bodies are capped.
The probes and /metrics wait on nothing; a registered route that can be slow brings its own bound
(exporter.export.canary_api). A client that goes away mid-reply is one log line, never a traceback.
A port already in use is a ConfigError naming EXPORTER_HTTP_PORT.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter.errors import ConfigError

log = structlog.get_logger("exporter.export.health")

READ_SECONDS = 10.0  # a request (line, headers, body) must arrive whole within this, idle wait included
MAX_BODY_BYTES = 1024 * 1024
MAX_CONNECTIONS = 64  # connections served at once; one more evicts the longest-waiting request read
EVICTION_WAIT_SECONDS = 1.0  # how long a new connection waits for an evicted one's thread to end


class _BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most MAX_CONNECTIONS connection threads. When they are all taken, a new
    connection evicts the one that has waited longest for its request to arrive; when none is waiting
    (every thread is answering), the new connection is closed at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._lock = threading.Lock()
        self._reading: dict[socket.socket, None] = {}  # connections waiting for a request, oldest first

    def reading(self, connection: socket.socket, waiting: bool) -> None:
        """Mark `connection` as waiting for (or done reading) its next request."""
        with self._lock:
            self._reading.pop(connection, None)
            if waiting:
                self._reading[connection] = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            with self._lock:
                victim = next(iter(self._reading), None)
                if victim is not None:
                    del self._reading[victim]
            if victim is not None:
                with contextlib.suppress(OSError):  # already closed by its client
                    victim.shutdown(socket.SHUT_RDWR)  # its read returns at once and its thread ends
            if victim is None or not self._connections.acquire(timeout=EVICTION_WAIT_SECONDS):
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
            self.reading(request, False)
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line (a client that resets mid-reply is routine), never socketserver's traceback."""
        error = sys.exc_info()[1]
        log.info("http connection ended early", error=f"{type(error).__name__}: {error}")


class _DeadlineReader(io.RawIOBase):
    """The socket's reads, each allowed only what is left before `deadline` (time.monotonic)."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive within its read deadline")
        self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


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
        read_seconds: float = READ_SECONDS,
    ) -> None:
        self.ready = ready
        self.read_seconds = read_seconds
        self.registry = registry
        self.routes: dict[str, Route] = {
            "/healthz": lambda request: Reply(200, b"ok\n"),
            "/readyz": self._readyz,
            "/metrics": lambda request: Reply(200, generate_latest(self.registry), CONTENT_TYPE_LATEST),
            **(routes or {}),
        }
        self._http: _BoundedServer | None = None

    def _readyz(self, request: Request) -> Reply:
        ok, text = self.ready()
        return Reply(200 if ok else 503, text.encode())

    def handle(self, request: Request) -> Reply:
        route = self.routes.get(request.path)
        if route is None:
            return Reply(404, b"not found\n")
        return route(request)

    def start(self, port: int) -> int:
        """Start serving; returns the port."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body leave in two writes: no delayed-ACK stall
            timeout = server.read_seconds  # for writes: a client that stops reading is dropped

            def setup(self) -> None:
                super().setup()
                self._reader = _DeadlineReader(self.connection)
                self.rfile = io.BufferedReader(self._reader)

            def handle_one_request(self) -> None:
                self._reader.deadline = time.monotonic() + server.read_seconds
                cast(_BoundedServer, self.server).reading(self.connection, True)
                super().handle_one_request()

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
                cast(_BoundedServer, self.server).reading(self.connection, False)  # read whole: not evictable
                self._reader.deadline = math.inf
                self.connection.settimeout(server.read_seconds)
                if len(body) != length:  # evicted mid-body, or the client closed: nothing to answer
                    self.close_connection = True
                    return
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
