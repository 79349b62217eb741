"""Builds the real upstream clients (Prometheus, Datadog, Kubernetes) from validated settings.

The only place that does: everything below the CLI takes its clients as arguments. Each client library is
imported by the builder that needs it, so a command loads only the clients it uses (start-up time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.errors import ConfigError

if TYPE_CHECKING:
    from datadog_api_client import ApiClient

    from exporter.config import Settings
    from exporter.kube.client import KubeClient
    from exporter.kube.discovery import KubeDiscovery
    from exporter.query.prometheus import PrometheusClient
    from exporter.retry import RetryPolicy
    from exporter.sink.datadog import DatadogSink


def prometheus(
    settings: Settings, *, timeout: float | None = None, retry: RetryPolicy | None = None, parallel: int = 4
) -> PrometheusClient:
    """`timeout` (seconds) lowers the per-query timeout of the settings; `retry` replaces the default policy;
    `parallel` queries run at once."""
    from exporter.query.prometheus import PrometheusClient

    limit = (
        settings.prometheus_timeout_seconds if timeout is None else min(timeout, settings.prometheus_timeout_seconds)
    )
    return PrometheusClient(
        settings.prometheus_url,
        headers=settings.prometheus_headers,
        timeout=limit,
        retry=retry,
        max_answer_bytes=settings.prometheus_max_answer_bytes,
        parallel=parallel,
    )


def datadog(settings: Settings) -> DatadogSink:
    """The Datadog sink; ConfigError when DD_API_KEY is missing."""
    from exporter.sink.datadog import DatadogAPI, DatadogSink

    if settings.dd_api_key is None or not settings.dd_api_key.get_secret_value():
        raise ConfigError("DD_API_KEY", "required to submit to Datadog")
    app_key = settings.dd_app_key.get_secret_value() if settings.dd_app_key else None
    api = DatadogAPI(settings.datadog_base_url, api_key=settings.dd_api_key.get_secret_value(), app_key=app_key)
    return DatadogSink(api)


def datadog_setup(settings: Settings) -> ApiClient:
    """The Datadog API client of `datadog setup`; ConfigError when DD_API_KEY or DD_APP_KEY is missing."""
    from exporter.sink.datadog_setup import api_client

    keys = {}
    for name, secret in (("DD_API_KEY", settings.dd_api_key), ("DD_APP_KEY", settings.dd_app_key)):
        if secret is None or not secret.get_secret_value():
            raise ConfigError(name, "required to set up Datadog metadata, dashboards and monitors")
        keys[name] = secret.get_secret_value()
    return api_client(settings.datadog_base_url, api_key=keys["DD_API_KEY"], app_key=keys["DD_APP_KEY"])


def kubernetes(settings: Settings) -> KubeClient:
    from exporter.kube.client import KubeClient, api_client

    return KubeClient(api_client(settings.kubeconfig))


def discovery(settings: Settings, kube: KubeClient | None = None) -> KubeDiscovery:
    from exporter.kube.discovery import KubeDiscovery

    return KubeDiscovery(
        kube or kubernetes(settings), label_selector=settings.label_selector, namespaces=settings.namespaces
    )
