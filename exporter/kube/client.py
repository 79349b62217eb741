"""Every Kubernetes API call goes through here: one request/decode helper, one paging helper, one error mapping.

Requests are raw REST calls through the official client's ApiClient (its configuration, auth and TLS),
answers are plain JSON: building the client's model objects costs more than the calls themselves. A
failure leaves as a KubeError with the API's own message and whether a retry can help; a write whose
answer was lost is never retried (the patch may have been applied).
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
from exporter.errors import KubeError, retryable_status
from exporter.retry import RetryPolicy, call

JSON = dict[str, Any]
Query = Sequence[tuple[str, Any]]
JSON_PATCH = "application/json-patch+json"


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
        raise KubeError(f"no Kubernetes configuration: {e}") from e
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


class KubeClient:
    """Typed, retried REST calls on one ApiClient. `request` is one attempt; the others retry per `retry`."""

    def __init__(
        self, api: k8s.ApiClient, *, timeout: float = 15.0, retry: RetryPolicy | None = None, page_size: int = 500
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.page_size = page_size
        self.requests_made = 0

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: Query = (),
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """One call; the decoded JSON object, or a KubeError (a lost answer to a write is not retryable)."""
        self.requests_made += 1
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        try:
            request = self.api.param_serialize(
                method, path, query_params=list(query), header_params=headers, body=body, auth_settings=["BearerToken"]
            )
            response: Any = self.api.call_api(*request, _request_timeout=timeout or self.timeout)
            response.read()
            if not 200 <= response.status <= 299:
                raise k8s.ApiException.from_response(http_resp=response, body=None, data=None)
        except (k8s.ApiException, urllib3.exceptions.HTTPError) as e:
            error = kube_error(what, e)
            if method != "GET" and error.status == 0:
                error.retryable = False
            raise error from None
        try:
            answer = json.loads(response.data)
        except ValueError as e:
            raise KubeError(f"{what}: malformed answer: {e}", retryable=True) from None
        if not isinstance(answer, dict):
            raise KubeError(f"{what}: malformed answer: a JSON {type(answer).__name__}, not an object")
        return answer

    def get(self, path: str, *, what: str, query: Query = ()) -> JSON:
        return call(partial(self.request, "GET", path, what=what, query=query), what=what, policy=self.retry)

    def patch(self, path: str, ops: list[JSON], *, what: str) -> JSON:
        """A JSON patch (RFC 6902); retried only when the server answered with a retryable status."""
        return call(
            partial(self.request, "PATCH", path, what=what, body=ops, content_type=JSON_PATCH),
            what=what,
            policy=self.retry,
        )

    def list(self, path: str, *, what: str, query: Query = ()) -> list[JSON]:
        """Every item of a list, page by page (`limit`/`continue`)."""
        items: list[JSON] = []
        token: str | None = None
        while True:
            page_query = [*query, ("limit", self.page_size)] + ([("continue", token)] if token else [])
            page = self.get(path, what=what, query=page_query)
            found = page.get("items")
            if found is None:
                found = []
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                raise KubeError(f"{what}: malformed answer: items is not a list of objects")
            items += found
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items


def name_of(item: JSON, *, what: str) -> tuple[str, str]:
    """(namespace, name) of a listed object; KubeError when the answer lacks them."""
    meta = item.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise KubeError(f"{what}: malformed answer: an item without metadata.namespace and metadata.name")
    return namespace, name
