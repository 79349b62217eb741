"""Builds the real upstream clients (Prometheus, Datadog, Kubernetes) from validated settings.

The only place that does: everything below the CLI takes its clients as arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.errors import ConfigError

if TYPE_CHECKING:  # each client library is imported by the builder that needs it (start-up time)
    from exporter.config import Settings
    from exporter.kube.client import KubeClient
    from exporter.kube.discovery import KubeDiscovery
    from exporter.query.prometheus import PrometheusClient
    from exporter.sink.datadog import DatadogSink


def prometheus(settings: Settings) -> PrometheusClient:
    from exporter.query.prometheus import PrometheusClient

    return PrometheusClient(
        settings.prometheus_url, headers=settings.prometheus_headers, timeout=settings.prometheus_timeout_seconds
    )


def datadog(settings: Settings) -> DatadogSink:
    """The Datadog sink; ConfigError when DD_API_KEY is missing."""
    from exporter.sink.datadog import DatadogAPI, DatadogSink

    if settings.dd_api_key is None or not settings.dd_api_key.get_secret_value():
        raise ConfigError("DD_API_KEY", "required to submit to Datadog")
    app_key = settings.dd_app_key.get_secret_value() if settings.dd_app_key else None
    api = DatadogAPI(settings.datadog_base_url, api_key=settings.dd_api_key.get_secret_value(), app_key=app_key)
    return DatadogSink(api)


def kubernetes(settings: Settings) -> KubeClient:
    from exporter.kube.client import KubeClient, api_client

    return KubeClient(api_client(settings.kubeconfig))


def discovery(settings: Settings, kube: KubeClient | None = None) -> KubeDiscovery:
    from exporter.kube.discovery import KubeDiscovery

    return KubeDiscovery(
        kube or kubernetes(settings), label_selector=settings.label_selector, namespaces=settings.namespaces
    )
