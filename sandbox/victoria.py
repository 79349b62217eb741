"""A real VictoriaMetrics (single-node, Debian's `victoria-metrics`) on loopback, loaded with a synthetic mesh.

The same mesh as sandbox.prom: sandbox.meshsim writes OpenMetrics text, whose sample timestamps (seconds)
become milliseconds for VictoriaMetrics' Prometheus-text import API (`/api/v1/import/prometheus`). The
server runs with the flags a user of it should know about: `-retentionPeriod=100y` (the default, one
month, drops older samples), `-search.latencyOffset=0s` (by default instant queries near now ignore the
last 30 s) and `-search.disableCache` (answers never come from a cache filled before an import).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from sandbox.meshsim import REPORTERS, Phase, write_openmetrics
from sandbox.prom import ServerProcess, free_port

__all__ = ["FLAGS", "VictoriaMetricsNotInstalled", "VictoriaMetricsServer"]

BINARY = "victoria-metrics"
FLAGS: tuple[str, ...] = ("-retentionPeriod=100y", "-search.latencyOffset=0s", "-search.disableCache")
"""Flags that matter for correct answers on backfilled data (see the module docstring)."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_CHUNK = 4 << 20


class VictoriaMetricsNotInstalled(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            f"{BINARY} not found on PATH: install Debian's victoria-metrics package (make victoria-metrics)"
        )


def prometheus_text(openmetrics: Path) -> Iterator[bytes]:
    """The OpenMetrics file as Prometheus text with millisecond timestamps, in chunks (comments dropped)."""
    out: list[str] = []
    size = 0
    with open(openmetrics, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            head, _, stamp = line.rstrip("\n").rpartition(" ")
            text = f"{head} {round(float(stamp) * 1000)}\n"
            out.append(text)
            size += len(text)
            if size >= _CHUNK:
                yield "".join(out).encode()
                out, size = [], 0
    if out:
        yield "".join(out).encode()


class VictoriaMetricsServer(ServerProcess):
    """`with VictoriaMetricsServer() as vm: vm.load(phases, end=..., step=...); requests.get(vm.url + ...)`."""

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout=startup_timeout)  # `url` serves the Prometheus query API under /api/v1/

    def start(self) -> VictoriaMetricsServer:
        binary = shutil.which(BINARY)
        if binary is None:
            raise VictoriaMetricsNotInstalled()
        self._workdir = Path(tempfile.mkdtemp(prefix="sandbox-victoria-"))
        for _ in range(5):
            self._port = free_port()
            command = [
                binary,
                f"-storageDataPath={self._workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self._port}",
                *FLAGS,
            ]
            with open(self._workdir / "victoria.log", "ab") as log:
                self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if self._ready():
                return self
            self._kill()
        tail = (self._workdir / "victoria.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"VictoriaMetrics did not start:\n{tail}")

    def _ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with _NO_PROXY.open(f"{self.url}/health", timeout=1.0) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    def load(self, phases: Sequence[Phase], *, end: float, step: float, reporters: Sequence[str] = REPORTERS) -> int:
        """Import the mesh's samples (as sandbox.prom backfills them) and make them searchable; the sample count."""
        assert self._workdir is not None
        text = self._workdir / "mesh.om"
        written = write_openmetrics(text, phases, end=end, step=step, reporters=reporters)
        try:
            for chunk in prometheus_text(text):
                request = urllib.request.Request(f"{self.url}/api/v1/import/prometheus", data=chunk, method="POST")
                with _NO_PROXY.open(request, timeout=120) as response:
                    if response.status not in (200, 204):
                        raise RuntimeError(f"import answered {response.status}")
        finally:
            text.unlink(missing_ok=True)
        with _NO_PROXY.open(f"{self.url}/internal/force_flush", timeout=60):
            pass
        return written
