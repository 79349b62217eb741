"""Kubernetes service-link variables (a Service named `exporter…` in the pod's namespace) never break the
settings loader, real typos still do, and a link that lands on a real setting names its cause and the fix."""

from __future__ import annotations

import os

import pytest

from exporter.config import load, service_link
from exporter.errors import ConfigError

# What the kubelet injects for `Service exporter` (ports 8000 "http" and 9090/UDP) and `exporter-metrics`.
LINKS = {
    "EXPORTER_SERVICE_HOST": "10.96.12.7",
    "EXPORTER_SERVICE_PORT": "8000",
    "EXPORTER_SERVICE_PORT_HTTP": "8000",
    "EXPORTER_PORT": "tcp://10.96.12.7:8000",
    "EXPORTER_PORT_8000_TCP": "tcp://10.96.12.7:8000",
    "EXPORTER_PORT_8000_TCP_PROTO": "tcp",
    "EXPORTER_PORT_8000_TCP_PORT": "8000",
    "EXPORTER_PORT_8000_TCP_ADDR": "10.96.12.7",
    "EXPORTER_PORT_9090_UDP": "udp://10.96.12.7:9090",
    "EXPORTER_METRICS_SERVICE_HOST": "fd00:10:96::7",
    "EXPORTER_METRICS_PORT": "tcp://[fd00:10:96::7]:9100",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")):
            monkeypatch.delenv(name)


def test_service_link_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LINKS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EXPORTER_INTERVAL_SECONDS", "15")
    assert load().interval_seconds == 15
    assert service_link("EXPORTER_PORT", LINKS["EXPORTER_PORT"]) == "exporter"
    assert service_link("EXPORTER_METRICS_PORT", LINKS["EXPORTER_METRICS_PORT"]) == "exporter-metrics"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXPORTER_INTERVAL_SECOND", "30"),  # a typo
        ("EXPORTER_SERVICE_HOST", "prometheus.istio-system"),  # the right name with a value Kubernetes never writes
        ("EXPORTER_PORT", "8000"),
        ("EXPORTER_PORT_8000_TCP_PROTO", "http"),
        ("EXPORTER_PROMETHEUS_PORT", "http://prometheus:9090"),
    ],
)
def test_real_typos_are_still_refused(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as e:
        load()
    assert str(e.value) == f"{name}: unknown setting (see docs/settings.md for the list)"


def test_a_link_on_a_real_setting_names_the_service_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_HTTP_PORT", "tcp://10.0.0.1:80")  # from a Service named exporter-http
    with pytest.raises(ConfigError) as e:
        load()
    message = str(e.value)
    assert message.startswith("EXPORTER_HTTP_PORT: holds 'tcp://10.0.0.1:80'")
    assert "'exporter-http'" in message and "enableServiceLinks: false" in message
    assert "\n" not in message
