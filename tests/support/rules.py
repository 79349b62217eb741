"""Recording rules evaluated by the real Prometheus tooling: `promtool tsdb create-blocks-from rules`
backfills the recorded series from a running server, whose TSDB then serves them after a restart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sandbox.prom import PrometheusServer


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
