"""Every Kubernetes API call goes through here: one request/decode helper, one paging helper, one error mapping.

Requests are raw REST calls through the official client's ApiClient (its configuration, auth and TLS),
answers are plain JSON: building the client's model objects costs more than the calls themselves. A
failure leaves as a KubeError with the API's own message and whether a retry can help; a write whose
answer was lost is never retried (the patch may have been applied). An answer of the wrong shape is a
KubeError with `kind="malformed"`. Paging is bounded: a page budget, an item budget, a `continue`
token that repeats, and a deadline over the whole list each end it with a KubeError.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from exporter import logs
from exporter.errors import ConfigError, KubeError, retryable_status
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
    except Exception as e:  # a kubeconfig the client cannot read at all (not a mapping, wrong types)
        where = kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config")
        raise ConfigError("KUBECONFIG", f"{where} is not a usable kubeconfig ({type(e).__name__})") from None
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
        self,
        api: k8s.ApiClient,
        *,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        page_size: int = 500,
        max_pages: int = 200,
        max_items: int = 50_000,
        list_deadline: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.api = api
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.page_size = page_size
        self.max_pages = max_pages
        self.max_items = max_items
        self.list_deadline = list_deadline
        self.clock = clock
        self.requests_made = 0
        self.on_call: Callable[[bool], None] = lambda ok: None
        """Told after every call whether the API worked: a usable answer, or the 404/409 of a working API
        (mesh_exporter_upstream_up{upstream="kubernetes"}, for discovery and the Lease alike)."""

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
        try:
            answer = self._request(
                method, path, what=what, query=query, body=body, content_type=content_type, timeout=timeout
            )
        except KubeError as e:
            self.on_call(e.status in (404, 409))
            raise
        self.on_call(True)
        return answer

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: Query,
        body: Any,
        content_type: str | None,
        timeout: float | None,
    ) -> JSON:
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
            raise KubeError(f"{what}: malformed answer: {e}", retryable=True, kind="malformed") from None
        if not isinstance(answer, dict):
            kind = type(answer).__name__
            raise KubeError(f"{what}: malformed answer: a JSON {kind}, not an object", kind="malformed")
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
        """Every item of a list, page by page (`limit`/`continue`), within the page, item and time budgets."""
        items: list[JSON] = []
        token: str | None = None
        seen: set[str] = set()
        deadline = self.clock() + self.list_deadline
        for _ in range(self.max_pages):
            page_query = [*query, ("limit", self.page_size)] + ([("continue", token)] if token else [])
            page = self.get(path, what=what, query=page_query)
            found = page.get("items")
            if found is None:
                found = []
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                raise KubeError(f"{what}: malformed answer: items is not a list of objects", kind="malformed")
            items += found
            if len(items) > self.max_items:
                raise KubeError(f"{what}: more than {self.max_items} items; narrow the selector", kind="too_large")
            meta = page.get("metadata") or {}
            token = meta.get("continue") if isinstance(meta, dict) else None
            if not token:
                return items
            if not isinstance(token, str):
                raise KubeError(f"{what}: malformed answer: the continue token is not a string", kind="malformed")
            if token in seen:
                raise KubeError(f"{what}: malformed answer: the continue token repeats", kind="malformed")
            seen.add(token)
            if self.clock() > deadline:
                raise KubeError(f"{what}: listing took longer than {self.list_deadline:g}s", retryable=True)
        raise KubeError(f"{what}: more than {self.max_pages} pages; the API keeps paging", kind="malformed")


def name_of(item: JSON, *, what: str) -> tuple[str, str]:
    """(namespace, name) of a listed object; KubeError when the answer lacks them."""
    meta = item.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise KubeError(
            f"{what}: malformed answer: an item without metadata.namespace and metadata.name", kind="malformed"
        )
    return namespace, name
