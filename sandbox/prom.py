"""A real Prometheus on loopback serving a TSDB backfilled from a synthetic mesh (promtool)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from sandbox.meshsim import REPORTERS, Phase, write_openmetrics

__all__ = [
    "BackfillError",
    "PrometheusNotInstalled",
    "PrometheusServer",
    "PrometheusStartError",
    "backfill",
    "build_tsdb",
]

_CONFIG = "# written by sandbox.prom: no scrape targets, the data is backfilled\nglobal:\n"
_CONFIG += "  scrape_interval: 1h\n  evaluation_interval: 1h\nscrape_configs: []\n"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusNotInstalled(RuntimeError):
    """promtool or prometheus is not on PATH."""

    def __init__(self, binary: str) -> None:
        super().__init__(f"{binary} not found on PATH: install Debian's prometheus package (make prometheus)")


class BackfillError(RuntimeError):
    """promtool could not turn the OpenMetrics text into TSDB blocks, or lost samples doing so."""


class PrometheusStartError(RuntimeError):
    """Prometheus exited or did not become ready; the message ends with its log tail."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusNotInstalled(name)
    return path


def _block_samples(tsdb_dir: Path) -> dict[str, int]:
    """numSamples of every block in the TSDB, by block directory name."""
    found: dict[str, int] = {}
    for meta in tsdb_dir.glob("*/meta.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            found[meta.parent.name] = int(json.loads(meta.read_text())["stats"]["numSamples"])
    return found


def _promtool(openmetrics: Path, tsdb_dir: Path, max_block_duration: str) -> subprocess.Popen[str]:
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    command = [
        _binary("promtool"),
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--quiet",
        f"--max-block-duration={max_block_duration}",
        str(openmetrics),
        str(tsdb_dir),
    ]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait(process: subprocess.Popen[str], openmetrics: Path) -> None:
    out, err = process.communicate()
    if process.returncode != 0:
        detail = (err or out).strip()
        raise BackfillError(f"promtool failed (exit {process.returncode}) on {openmetrics}: {detail}")


def backfill(openmetrics: Path, tsdb_dir: Path, *, max_block_duration: str = "24h") -> None:
    """Turn an OpenMetrics file into TSDB blocks in `tsdb_dir` (`promtool tsdb create-blocks-from`)."""
    _wait(_promtool(openmetrics, tsdb_dir, max_block_duration), openmetrics)


def build_tsdb(
    phases: Sequence[Phase],
    tsdb_dir: Path,
    *,
    end: float,
    step: float,
    reporters: Sequence[str] = REPORTERS,
    scratch_dir: Path | None = None,
    jobs: int = 2,
    max_block_duration: str = "24h",
) -> int:
    """Write the mesh as OpenMetrics to temporary files, backfill them into `tsdb_dir`, delete them.

    The samples are split in `jobs` consecutive time slices: promtool (single-threaded) backfills one
    slice while the next is written. Two is the most worth having: with three or more adjacent blocks
    Prometheus compacts the older ones in the background soon after it starts. The files go beside
    `tsdb_dir` unless `scratch_dir` says otherwise. Raises BackfillError when the new blocks do not
    hold every sample written (promtool drops out-of-order samples silently). Returns the sample count.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    _binary("promtool")  # fail before writing gigabytes
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    before = _block_samples(tsdb_dir)
    written = 0
    running: list[tuple[subprocess.Popen[str], Path]] = []
    texts: list[Path] = []
    try:
        for index in range(jobs):
            fd, name = tempfile.mkstemp(
                prefix=f".{tsdb_dir.name}-{index}-", suffix=".om", dir=scratch_dir or tsdb_dir.parent
            )
            os.close(fd)
            texts.append(Path(name))
            written += write_openmetrics(texts[-1], phases, end=end, step=step, reporters=reporters, part=(index, jobs))
            running.append((_promtool(texts[-1], tsdb_dir, max_block_duration), texts[-1]))
        while running:
            _wait(*running[0])
            running.pop(0)
    finally:
        for process, _ in running:
            process.kill()
            process.communicate()
        for text in texts:
            text.unlink(missing_ok=True)
    stored = sum(n for block, n in _block_samples(tsdb_dir).items() if block not in before)
    if stored != written:
        raise BackfillError(f"wrote {written} samples but the new blocks in {tsdb_dir} hold {stored}")
    return written


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def end_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server process, killing it when it has not exited within 10 s."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess:
    """A local server run as a child process with its own temporary directory: `start()` (by the
    subclass) and `stop()`, which ends the process and removes the directory; also a context manager."""

    def __init__(self, *, startup_timeout: float) -> None:
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (only once started)."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        raise NotImplementedError

    def _kill(self) -> None:
        process, self._process = self._process, None
        end_process(process)

    def stop(self) -> None:
        self._kill()
        self._port = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class PrometheusServer(ServerProcess):
    """`with PrometheusServer(tsdb_dir) as prom: requests.get(prom.url + "/api/v1/query", ...)`.

    Serves an existing TSDB (one server per directory: Prometheus locks it) on 127.0.0.1. Port 0
    picks a free port (and retries if another process takes it first), so instances can run in parallel.
    """

    def __init__(self, tsdb_dir: Path, *, port: int = 0, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.tsdb_dir = Path(tsdb_dir)
        self._requested_port = port

    @property
    def log_path(self) -> Path | None:
        """Prometheus's log while it runs (the directory is removed by stop())."""
        return self._workdir / "prometheus.log" if self._workdir else None

    def start(self) -> PrometheusServer:
        if self._process is not None:
            raise RuntimeError("PrometheusServer is already started")
        binary = _binary("prometheus")
        if not self.tsdb_dir.is_dir():
            raise PrometheusStartError(f"no TSDB directory at {self.tsdb_dir}")
        self._workdir = Path(tempfile.mkdtemp(prefix="meshsim-prometheus-"))
        config = self._workdir / "prometheus.yml"
        config.write_text(_CONFIG)
        attempts = 5 if self._requested_port == 0 else 1
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port or free_port()
                if self._launch(binary, config, port):
                    return self
                tail = self._log_tail()
                if attempt == attempts or "address already in use" not in tail:
                    raise PrometheusStartError(f"Prometheus did not start on 127.0.0.1:{port}:\n{tail}")
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, binary: str, config: Path, port: int) -> bool:
        """Run Prometheus on `port`; True once ready, False if it exited first (raises on timeout)."""
        assert self.log_path is not None
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.tsdb_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
            f"--web.console.templates={self._workdir}",
            f"--web.console.libraries={self._workdir}",
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._port = port
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                self._port = None
                return False
            try:
                with _NO_PROXY.open(f"{self.url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        tail = self._log_tail()
        raise PrometheusStartError(
            f"Prometheus on 127.0.0.1:{port} not ready after {self._startup_timeout:.0f}s:\n{tail}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
