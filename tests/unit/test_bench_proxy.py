"""The benchmark's delay proxy: every request pays the delay once, however many segments it spans."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from bench.proxy import DelayProxy, release_time

DELAY = 0.05


def test_a_chunk_leaves_after_the_delay_and_never_before_the_previous_one() -> None:
    assert release_time(10.0, 0.03, 0.0) == pytest.approx(10.03)
    assert release_time(10.0, 0.03, 10.5) == 10.5  # order is kept: a later chunk never overtakes


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _round_trip(session: requests.Session, url: str, body: bytes) -> float:
    started = time.perf_counter()
    answer = session.post(url, data=body)
    elapsed = time.perf_counter() - started
    assert answer.content == body  # bytes pass through unchanged, in order
    return elapsed


def test_each_request_pays_the_delay_once(echo: str) -> None:
    direct = requests.Session()
    with DelayProxy(echo, delay=DELAY) as proxy, requests.Session() as session:
        small, large = b"x" * 100, bytes(range(256)) * 8192  # 2 MiB: dozens of TCP segments
        _round_trip(session, proxy.url, small)  # connection set-up
        for body in (small, large):
            plain = min(_round_trip(direct, echo, body) for _ in range(2))
            delayed = [_round_trip(session, proxy.url, body) for _ in range(3)]
            assert min(delayed) >= DELAY
            assert min(delayed) < plain + 2 * DELAY  # not once per segment
        assert proxy.connections == 1  # keep-alive goes through the same proxied connection
