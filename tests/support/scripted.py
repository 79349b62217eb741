"""A scripted loopback HTTP server: each request is answered by a function of (method, path, query),
which returns (status, headers, body) or a `Cut` (send a Content-Length then close mid-body). Used as a
misbehaving Prometheus (huge, cut or NaN answers to the exporter's four queries) and a misbehaving
Kubernetes API (continue tokens that never end, wrong-shape lists)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.loopback import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Cut:
    """Announce `length` bytes, send `body` (shorter), then close the connection."""

    body: bytes
    length: int


Answer = tuple[int, dict[str, str], bytes] | Cut
Script = Callable[[str, str, dict[str, list[str]]], Answer]


class ScriptedServer(LoopbackServer):
    thread_name = "scripted"

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = parse_qs(parts.query) | parse_qs(body)
                with server.lock:
                    server.requests.append((self.command, parts.path, query))
                answer = server.script(self.command, parts.path, query)
                if isinstance(answer, Cut):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(answer.length))
                    self.end_headers()
                    self.wfile.write(answer.body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                status, headers, payload = answer
                self.reply(status, payload, {"Content-Type": "application/json", **headers})

        return Handler


def vector(samples: list[tuple[dict[str, str], str]]) -> bytes:
    """A Prometheus instant-vector answer."""
    result = [{"metric": m, "value": [1.0, v]} for m, v in samples]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def ok(payload: Any) -> Answer:
    return 200, {}, payload if isinstance(payload, bytes) else json.dumps(payload).encode()
