"""The daemon's HTTP endpoints: /healthz (the process lives), /readyz (see Daemon.ready), /metrics (self-metrics)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Reply = tuple[int, bytes, str]
"""status, body, content type"""


class HealthServer:
    """A threading HTTP server on 0.0.0.0:`port` (0 picks one) in a daemon thread."""

    def __init__(self, *, ready: Callable[[], tuple[bool, str]], registry: CollectorRegistry) -> None:
        self.ready = ready
        self.registry = registry
        self._http: ThreadingHTTPServer | None = None

    def route(self, path: str) -> Reply:
        if path == "/healthz":
            return 200, b"ok\n", "text/plain"
        if path == "/readyz":
            ok, text = self.ready()
            return (200 if ok else 503), text.encode(), "text/plain"
        if path == "/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        return 404, b"not found\n", "text/plain"

    def start(self, port: int) -> int:
        """Start serving; returns the port."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body leave in two writes: no delayed-ACK stall

            def do_GET(self) -> None:
                status, body, content_type = server.route(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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
