"""A reverse proxy on loopback that forwards to a real server (Prometheus in the tests) and injects
faults on demand: any status, a delay, a dropped connection, or a rewrite of the real answer (NaN
values, duplicate series, malformed JSON). Also usable to add network latency in benchmarks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from sandbox.loopback import LoopbackServer, QuietHandler

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Not forwarded: hop-by-hop headers, and encodings (the upstream answers identity so faults can rewrite it).
_HOP_BY_HOP = {
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "accept-encoding", "host"
}  # fmt: skip


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    path: str
    query: Mapping[str, str]  # query string and form body, first value of each


@dataclass(frozen=True)
class Fault:
    """What to do with one request; `status` set: answer it instead of forwarding."""

    status: int | None = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop_connection: bool = False
    rewrite: Callable[[bytes], bytes] | None = None  # applied to the real answer's body


class FaultProxy(LoopbackServer):
    """`with FaultProxy(prometheus_url) as proxy:` point the client at `proxy.url`, then `set_fault`."""

    def __init__(self, target: str, *, delay_s: float = 0.0) -> None:
        self.target = target.rstrip("/")
        self.delay_s = delay_s  # added to every request (network latency)
        self._fault: Callable[[ProxyRequest], Fault | None] | None = None
        self._lock = threading.Lock()
        self._requests: list[ProxyRequest] = []
        super().__init__()

    thread_name = "fault-proxy"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    @property
    def requests(self) -> list[ProxyRequest]:
        with self._lock:
            return list(self._requests)

    def set_fault(self, fn: Callable[[ProxyRequest], Fault | None] | None) -> None:
        """Decide per request: a Fault, or None to forward unchanged. None removes the fault."""
        with self._lock:
            self._fault = fn

    def _decide(self, request: ProxyRequest) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            fn = self._fault
        return fn(request) if fn is not None else None

    def _forward(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.target + path, data=body or None, method=method)
        for name, value in headers.items():
            if name.lower() not in _HOP_BY_HOP:
                request.add_header(name, value)
        try:
            with _DIRECT.open(request, timeout=60) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if body and "form-urlencoded" in (self.headers.get("Content-Type") or ""):
                query |= {k: v[0] for k, v in parse_qs(body.decode()).items()}
            fault = proxy._decide(ProxyRequest(self.command, parts.path, query)) or Fault()
            time.sleep(proxy.delay_s + fault.delay_s)
            if fault.drop_connection:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.status is not None:
                status, headers, payload = fault.status, dict(fault.headers), fault.body
            else:
                status, headers, payload = proxy._forward(self.command, self.path, dict(self.headers.items()), body)
                if fault.rewrite is not None:
                    payload = fault.rewrite(payload)
            self.reply(status, payload, {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP})

    return Handler
