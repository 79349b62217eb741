"""Recording rules evaluated by the real Prometheus tooling: `promtool tsdb create-blocks-from rules`
backfills the recorded series from a running server, whose TSDB then serves them after a restart."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from sandbox.prom import PrometheusServer, free_port


def check_rules(rule_file: Path) -> str:
    """`promtool check rules` on the file; its output (AssertionError when it fails)."""
    out = subprocess.run(["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def backfill_rules(server: PrometheusServer, rule_file: Path, *, start: float, end: float) -> PrometheusServer:
    """Evaluate the rules over [start, end] against `server`, add the blocks to its TSDB, restart it; the new server."""
    blocks = server.tsdb_dir.parent / "rule-blocks"
    command = [
        "promtool", "tsdb", "create-blocks-from", "rules", "--quiet",
        f"--url={server.url}", f"--start={int(start)}", f"--end={int(end)}", f"--output-dir={blocks}", str(rule_file),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    server.stop()
    moved = 0
    for block in blocks.iterdir():
        if (block / "meta.json").exists():
            shutil.move(str(block), server.tsdb_dir / block.name)
            moved += 1
    assert moved, f"promtool wrote no block under {blocks}"
    return PrometheusServer(server.tsdb_dir).start()


def vmalert_replay(url: str, rule_file: Path, *, start: float, end: float, workdir: Path) -> None:
    """VictoriaMetrics' own ruler (vmalert in replay mode) evaluates the rules over [start, end] on the
    server at `url` and writes the recorded series back into it; then they are made searchable."""
    command = [
        "vmalert", f"-rule={rule_file}", f"-datasource.url={url}", f"-remoteWrite.url={url}",
        f"-replay.timeFrom={_rfc3339(start)}", f"-replay.timeTo={_rfc3339(end)}", "-replay.disableProgressBar",
        "-replay.rulesDelay=0s", f"-httpListenAddr=127.0.0.1:{free_port()}",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{url}/internal/force_flush", timeout=60):
        pass


def _rfc3339(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
