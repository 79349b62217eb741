"""Start-up stays instant: `--version`, `--help` and `rules` load no client library, and each command
loads only the clients it uses (Datadog's only when submitting, the scheduler only in `run`), checked
in fresh interpreters (sys.modules after the command's imports)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLIENTS = ("requests", "urllib3", "prometheus_api_client", "kubernetes", "datadog_api_client", "apscheduler")
HEAVY = (*CLIENTS, "pydantic", "structlog", "tenacity", "yaml", "jsonpatch", "jinja2")


def loaded_after(code: str) -> set[str]:
    """The HEAVY top-level packages in sys.modules after running `code` in a fresh interpreter."""
    probe = "import json, sys\n" + code + f"\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def main_of(*argv: str) -> str:
    return (
        "import contextlib, io\nfrom exporter.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({list(argv)!r})"
    )


@pytest.mark.parametrize("argv", [("--version",), ("--help",), ("once", "--help"), ("report", "mtls", "--help")])
def test_version_and_help_load_nothing_heavy(argv: tuple[str, ...]) -> None:
    assert loaded_after(main_of(*argv)) == set()


def test_rules_reads_settings_but_loads_no_client() -> None:
    loaded = loaded_after(main_of("rules"))
    assert {"pydantic", "yaml"} <= loaded  # it did run: settings validated, YAML printed
    assert not loaded & set(CLIENTS)


def test_a_cycle_without_a_sink_loads_neither_datadog_nor_the_scheduler() -> None:
    loaded = loaded_after("from exporter.cli import clients, once\nfrom exporter.export import cycle")
    assert not loaded & {"datadog_api_client", "kubernetes", "apscheduler", "requests"}
    built = loaded_after(
        "from exporter.cli import clients\nfrom exporter.config import Settings\nfrom exporter.export import cycle\n"
        "clients.prometheus(Settings())"
    )
    assert {"requests", "prometheus_api_client"} <= built
    assert not built & {"datadog_api_client", "kubernetes", "apscheduler"}


def test_each_client_loads_with_its_builder() -> None:
    setup = "from exporter.cli import clients\nfrom exporter.config import Settings\ns = Settings(dd_api_key='k')\n"
    assert "kubernetes" in loaded_after(setup + "import exporter.kube.discovery")
    assert "datadog_api_client" in loaded_after(setup + "clients.datadog(s)")
    assert "apscheduler" not in loaded_after(setup + "clients.datadog(s)")
