"""The daemon's HTTP server is bounded: idle connections time out, registered routes share a few slots
that the probes never wait for, connections beyond the bound are closed, a busy port is exit-2 material."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.errors import ConfigError
from exporter.export import health
from exporter.export.health import HealthServer, Reply, Request


def server(**routes: object) -> tuple[HealthServer, str]:
    s = HealthServer(ready=lambda: (True, "ready\n"), registry=CollectorRegistry(), idle_seconds=0.5, **routes)  # type: ignore[arg-type]
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


def test_slow_routes_never_starve_the_probes_and_extra_route_calls_get_503() -> None:
    release = threading.Event()

    def slow(request: Request) -> Reply:
        release.wait(10)
        return Reply(200, b"slow\n")

    s, url = server(routes={"/slow": slow})
    try:
        callers = [
            threading.Thread(target=requests.get, args=(f"{url}/slow",), kwargs={"timeout": 15})
            for _ in range(health.ROUTE_SLOTS)
        ]
        for t in callers:
            t.start()
        time.sleep(0.3)  # every slot is now held by a slow call
        assert requests.get(f"{url}/slow", timeout=5).status_code == 503
        for path in ("/healthz", "/readyz", "/metrics"):
            started = time.monotonic()
            assert requests.get(f"{url}{path}", timeout=5).status_code == 200
            assert time.monotonic() - started < 1
        release.set()
        for t in callers:
            t.join()
    finally:
        release.set()
        s.stop()


def test_connections_beyond_the_bound_are_closed_and_freed_by_the_idle_timeout() -> None:
    s, url = server()
    port = int(url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(health.MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        threads_held = threading.active_count()
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        assert extra.recv(1024) == b""  # refused at once: no thread, no descriptor kept for it
        extra.close()
        assert threading.active_count() <= threads_held
        time.sleep(1.0)  # the idle timeout frees every held connection
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        for conn in idle:
            conn.close()
        s.stop()


def test_an_oversized_or_bad_body_is_refused() -> None:
    s, url = server(routes={"/post": lambda request: Reply(200, b"ok\n")})
    try:
        big = requests.post(f"{url}/post", data=b"x" * (health.MAX_BODY_BYTES + 1), timeout=5)
        assert big.status_code == 413
    finally:
        s.stop()
