"""A TCP proxy on loopback that puts the network back: every byte towards the server arrives `delay` late.

Each chunk read from the client is forwarded to the server `delay` seconds after it was read, in
order (a deadline queue, like netem's delay), so one HTTP request/response round trip costs `delay`
more however many TCP segments its body spans; answers flow back without delay. Connection set-up
is not delayed (clients reuse their connections), and bandwidth is not limited.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlparse

_CHUNK = 1 << 16


def release_time(read_at: float, delay: float, previous: float) -> float:
    """When a chunk read at `read_at` may go out: `delay` later, and never before the previous chunk."""
    return max(read_at + delay, previous)


class DelayProxy:
    """`with DelayProxy("http://127.0.0.1:9090", delay=0.001) as p: requests.get(p.url + "/api/v1/...")`."""

    def __init__(self, target_url: str, *, delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        parsed = urlparse(target_url)
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"target needs a host and a port: {target_url!r}")
        self.target = (parsed.hostname, parsed.port)
        self.delay = delay
        self.clock = clock
        self.connections = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self._listener is None:
            raise RuntimeError("DelayProxy is not started")
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> DelayProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.update((client, server))
                self.connections += 1
            chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(client, chunks), daemon=True).start()
            threading.Thread(target=self._release, args=(chunks, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _read(self, client: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        previous = 0.0
        while True:
            try:
                data = client.recv(_CHUNK)
            except OSError:
                data = b""
            previous = release_time(self.clock(), self.delay, previous)
            chunks.put((previous, data))
            if not data:
                return

    def _release(self, chunks: queue.Queue[tuple[float, bytes]], server: socket.socket) -> None:
        while True:
            at, data = chunks.get()
            wait = at - self.clock()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    server.shutdown(socket.SHUT_WR)
                    return
                server.sendall(data)
            except OSError:
                return

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
