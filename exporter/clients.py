"""Builds the real upstream clients (Prometheus, Datadog, Kubernetes) from validated settings."""

from __future__ import annotations

from kubernetes import client as k8s

from exporter.datadog import DatadogAPI, DatadogSink
from exporter.discovery import KubeDiscovery, api_client
from exporter.errors import ConfigError
from exporter.prometheus import PrometheusClient
from exporter.settings import Settings


def prometheus(settings: Settings) -> PrometheusClient:
    return PrometheusClient(
        settings.prometheus_url, headers=settings.prometheus_headers, timeout=settings.prometheus_timeout_seconds
    )


def datadog(settings: Settings) -> DatadogSink:
    """The Datadog sink; ConfigError when DD_API_KEY is missing."""
    if settings.dd_api_key is None or not settings.dd_api_key.get_secret_value():
        raise ConfigError("DD_API_KEY", "required to submit to Datadog")
    app_key = settings.dd_app_key.get_secret_value() if settings.dd_app_key else None
    api = DatadogAPI(settings.datadog_base_url, api_key=settings.dd_api_key.get_secret_value(), app_key=app_key)
    return DatadogSink(api)


def kubernetes(settings: Settings) -> k8s.ApiClient:
    return api_client(settings.kubeconfig)


def discovery(settings: Settings, api: k8s.ApiClient | None = None) -> KubeDiscovery:
    return KubeDiscovery(
        api or kubernetes(settings), label_selector=settings.label_selector, namespaces=settings.namespaces
    )
