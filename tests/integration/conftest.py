"""The `integration` marker, derived rather than written by hand: a test here carries it when it starts a
real Prometheus or VictoriaMetrics, i.e. uses a Prometheus fixture of tests/conftest.py or comes from a
module that imports the server stand-ins (sandbox.prom, sandbox.victoria)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
SERVER_FIXTURES = {"make_prometheus", "demo_prom"}  # demo_kube and the rest build on these
SERVER_MODULES = ("sandbox.prom", "sandbox.victoria")


def starts_a_server(item: pytest.Item) -> bool:
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    imported = (getattr(value, "__module__", None) for value in vars(module).values()) if module else ()
    return any(name in SERVER_MODULES for name in imported if isinstance(name, str))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE) and starts_a_server(item):
            item.add_marker(pytest.mark.integration)
