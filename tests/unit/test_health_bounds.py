"""The daemon's HTTP server is bounded: a request must arrive whole within the read deadline however slowly it
drips, slow routes and slow or excess connections never keep the probes out, a client reset is one log line,
a busy port is exit-2 material."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from exporter.errors import ConfigError
from exporter.export import health
from exporter.export.health import HealthServer, Reply, Request, Route


def server(routes: dict[str, Route] | None = None, read_seconds: float = 0.5) -> tuple[HealthServer, str]:
    s = HealthServer(ready=lambda: (True, "ready\n"), registry=CollectorRegistry(), routes=routes,
                     read_seconds=read_seconds)  # fmt: skip
    port = s.start(0)
    return s, f"http://127.0.0.1:{port}"


def test_a_port_in_use_is_a_config_error_naming_the_setting() -> None:
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    try:
        with pytest.raises(ConfigError, match=r"^EXPORTER_HTTP_PORT: port \d+ is already in use$"):
            HealthServer(ready=lambda: (True, ""), registry=CollectorRegistry()).start(busy.getsockname()[1])
    finally:
        busy.close()


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    s, url = server()
    try:
        conn = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        conn.settimeout(5)
        started = time.monotonic()
        assert conn.recv(1024) == b""  # the server hung up on a client that sent nothing
        assert time.monotonic() - started < 3
        conn.close()
    finally:
        s.stop()


def test_slow_routes_never_starve_the_probes() -> None:
    release = threading.Event()

    def slow(request: Request) -> Reply:
        release.wait(10)
        return Reply(200, b"slow\n")

    s, url = server(routes={"/slow": slow})
    callers = [threading.Thread(target=requests.get, args=(f"{url}/slow",), kwargs={"timeout": 15}) for _ in range(8)]
    try:
        for t in callers:
            t.start()
        time.sleep(0.3)  # eight slow calls hold their threads: the server itself sets them no bound of its own
        for path in ("/healthz", "/readyz", "/metrics"):
            assert requests.get(f"{url}{path}", timeout=5).status_code == 200
        assert all(t.is_alive() for t in callers)
    finally:
        release.set()
        for t in callers:
            t.join()
        s.stop()


def test_a_request_dripping_slowly_is_closed_at_its_read_deadline() -> None:
    s, url = server()  # read deadline 0.5 s
    try:
        conn = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while not closed and time.monotonic() - started < 10:  # one header byte every 0.1 s, forever
            try:
                conn.sendall(b"X")
                conn.settimeout(0.1)
                closed = conn.recv(1024) == b""
            except TimeoutError:
                pass
            except OSError:
                closed = True
        assert closed  # the server hung up although the client kept sending, well within the 10 s allowed
        conn.close()
    finally:
        s.stop()


def test_slow_drip_connections_beyond_the_bound_never_keep_healthz_out() -> None:
    """80 slowloris connections (more than MAX_CONNECTIONS), kept open and reopened when dropped: /healthz
    still answers every time it is asked."""
    s, url = server(read_seconds=30.0)  # only eviction, not the read deadline, can make room here
    port = int(url.rsplit(":", 1)[1])
    stop = threading.Event()

    def drip() -> None:
        conn: socket.socket | None = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = socket.create_connection(("127.0.0.1", port))
                    conn.sendall(b"GET /healthz HTTP/1.1\r\n")
                conn.sendall(b"X")
            except OSError:
                if conn is not None:
                    conn.close()
                conn = None
            stop.wait(0.2)
        if conn is not None:
            conn.close()

    drippers = [threading.Thread(target=drip) for _ in range(80)]
    try:
        for t in drippers:
            t.start()
        time.sleep(1.0)  # every connection slot is held by a dripping client
        for _ in range(5):
            assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
            time.sleep(0.2)
    finally:
        stop.set()
        for t in drippers:
            t.join()
        s.stop()


def test_every_connection_slot_answering_closes_a_new_connection_at_once() -> None:
    release = threading.Event()
    s, url = server(routes={"/slow": lambda request: Reply(200, b"slow\n") if release.wait(10) else Reply(500, b"")})
    callers = [
        threading.Thread(target=requests.get, args=(f"{url}/slow",), kwargs={"timeout": 15})
        for _ in range(health.MAX_CONNECTIONS)
    ]
    try:
        for t in callers:
            t.start()
        time.sleep(0.5)  # every slot answers a request: none is waiting for one, so none can be evicted
        extra = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        extra.settimeout(5)
        assert extra.recv(1024) == b""  # refused: no thread, no descriptor kept for it
        extra.close()
    finally:
        release.set()
        for t in callers:
            t.join()
        s.stop()


def test_a_client_reset_mid_reply_is_one_log_line_never_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    big = Reply(200, b"x" * 5_000_000)
    s, url = server(routes={"/big": lambda request: big})
    try:
        with capture_logs() as logs:
            conn = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.recv(1024)  # the reply has started
            conn.close()
            deadline = time.monotonic() + 10
            while not logs and time.monotonic() < deadline:
                time.sleep(0.05)
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        s.stop()
    assert [entry["event"] for entry in logs] == ["http connection ended early"]
    assert logs[0]["error"].startswith(("ConnectionResetError", "BrokenPipeError"))
    assert "Traceback" not in capfd.readouterr().err


def test_an_oversized_or_bad_body_is_refused() -> None:
    s, url = server(routes={"/post": lambda request: Reply(200, b"ok\n")})
    try:
        big = requests.post(f"{url}/post", data=b"x" * (health.MAX_BODY_BYTES + 1), timeout=5)
        assert big.status_code == 413
    finally:
        s.stop()
