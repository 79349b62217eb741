"""Service discovery: the Services that carry the label selector, from the Kubernetes API.

Lists all namespaces (or each configured one) with `limit`/`continue` paging through the official
`kubernetes` client. Pages are read as raw JSON and only namespace/name are kept: building client
model objects for thousands of Services costs more than the rest of a cycle.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from exporter import logs
from exporter.errors import DiscoveryError, KubeError, retryable_status
from exporter.model import ServiceRef
from exporter.retry import RetryPolicy, call


def api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient from in-cluster config, or from KUBECONFIG/`kubeconfig` when given or when not in a pod."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as e:
        raise DiscoveryError(f"no Kubernetes configuration: {e}") from e
    configuration.retries = 0  # retries are ours (tenacity)
    for value in (configuration.api_key or {}).values():  # bearer tokens must never reach a log line
        logs.redactor.add(str(value).removeprefix("Bearer ").strip(), str(value))
    return k8s.ApiClient(configuration)


def kube_error(what: str, e: Exception) -> KubeError:
    """A kubernetes client exception as a KubeError with the API's own message."""
    if isinstance(e, k8s.ApiException):
        status = int(e.status or 0)
        message = e.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(e.body or "{}").get("message") or message
        return KubeError(f"{what} -> {status}: {message}", status=status, retryable=retryable_status(status))
    return KubeError(f"{what} -> no answer: {type(e).__name__}", retryable=True)


class KubeDiscovery:
    """Lists the Services matching `label_selector` in `namespaces` (None: every namespace)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        label_selector: str,
        namespaces: Sequence[str] | None = None,
        page_size: int = 500,
        retry: RetryPolicy | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.api = api  # raw GETs: CoreV1Api would build ~250 pydantic models first (~0.4 s of every start)
        self.label_selector = label_selector
        self.namespaces = list(namespaces) if namespaces else None
        self.page_size = page_size
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.requests_made = 0

    def list_services(self) -> list[ServiceRef]:
        """Every matching Service, sorted; DiscoveryError when the API cannot answer."""
        found: set[ServiceRef] = set()
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        for namespace in scopes:
            found.update(self._list(namespace))
        return sorted(found)

    def _list(self, namespace: str | None) -> list[ServiceRef]:
        out: list[ServiceRef] = []
        token: str | None = None
        while True:
            page = call(partial(self._page, namespace, token), what="list services", policy=self.retry)
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                out.append(ServiceRef(meta["namespace"], meta["name"]))
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return out

    def _page(self, namespace: str | None, token: str | None) -> dict[str, Any]:
        self.requests_made += 1
        query: list[tuple[str, Any]] = [("labelSelector", self.label_selector), ("limit", self.page_size)]
        if token:
            query.append(("continue", token))
        where = f"namespace {namespace}" if namespace else "all namespaces"
        try:
            request = self.api.param_serialize(
                "GET",
                "/api/v1/namespaces/{namespace}/services" if namespace else "/api/v1/services",
                path_params={"namespace": namespace} if namespace else None,
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            response: Any = self.api.call_api(*request, _request_timeout=self.timeout)
            response.read()
            if not 200 <= response.status <= 299:
                raise k8s.ApiException.from_response(http_resp=response, body=None, data=None)
            return dict(json.loads(response.data))
        except (k8s.ApiException, urllib3.exceptions.HTTPError) as e:
            error = kube_error(f"list Services ({self.label_selector}) in {where}", e)
            raise DiscoveryError(str(error), retryable=error.retryable) from None
        except ValueError as e:
            raise DiscoveryError(f"list Services in {where}: malformed answer: {e}") from None
