"""Thin Kubernetes client for the rollout: VirtualServices, DestinationRules and Deployments as plain JSON,
JSON patches (RFC 6902) guarded by resourceVersion, and the server and Istio versions.

Reads are retried on retryable failures; a patch is retried only when the server answered (a lost
answer may hide an applied patch, whose retry would then look like someone else's edit). A 409 is
never retried here: it means the object changed since we read it, and the caller decides.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import urllib3
from kubernetes import client as k8s

from exporter.discovery import kube_error
from exporter.errors import KubeError
from exporter.retry import RetryPolicy, call

JSON = dict[str, Any]
Op = dict[str, Any]

ISTIO_GROUP, ISTIO_VERSION = "networking.istio.io", "v1"
JSON_PATCH = "application/json-patch+json"
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def rv_guard(obj: JSON) -> Op:
    """The op that makes a JSON patch conditional on the object's resourceVersion (409 Conflict if it moved)."""
    return {"op": "replace", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}


def pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def apply_patch(obj: JSON, ops: Sequence[Op]) -> JSON:
    """Apply the add/replace/remove ops this package writes to a copy of `obj` (for dry runs)."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                del node[index]
            else:
                node[index] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del node[last]
        else:
            node[last] = copy.deepcopy(op["value"])
    return out


def istio_version_of(image: str) -> str | None:
    """`docker.io/istio/pilot:1.24.2-distroless` → `1.24.2`."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    found = _SEMVER.search(tag)
    return found.group(0) if found else None


class Kube:
    """The few Kubernetes calls the rollout makes, through the official client, with typed errors."""

    def __init__(self, api: k8s.ApiClient, *, retry: RetryPolicy | None = None, timeout: float = 15.0) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.apps = k8s.AppsV1Api(api)
        self.version = k8s.VersionApi(api)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, write: bool = False, **kwargs: Any) -> JSON:
        def attempt() -> JSON:
            try:
                response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
                return dict(json.loads(response.data))
            except (k8s.ApiException, urllib3.exceptions.HTTPError) as e:
                error = kube_error(what, e)
                if write and error.status == 0:
                    error.retryable = False
                raise error from None

        return call(attempt, what=what, policy=self.retry)

    def server_version(self) -> str:
        return str(self._call("GET /version", self.version.get_code).get("gitVersion", "unknown"))

    def istio_version(self, root_namespace: str) -> str | None:
        """istiod's version from its Deployment's image tag in the root namespace; None when not found."""
        try:
            found = self._call(
                f"list Deployments app=istiod in {root_namespace}",
                self.apps.list_namespaced_deployment,
                root_namespace,
                label_selector="app=istiod",
            )
        except KubeError:
            return None
        for item in found.get("items") or []:
            for container in item.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []:
                version = istio_version_of(str(container.get("image", "")))
                if version:
                    return version
        return None

    def get_istio(self, plural: str, namespace: str, name: str) -> JSON:
        return self._call(
            f"GET {plural} {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            ISTIO_GROUP,
            ISTIO_VERSION,
            namespace,
            plural,
            name,
        )

    def patch_istio(self, plural: str, namespace: str, name: str, ops: list[Op]) -> JSON:
        return self._call(
            f"PATCH {plural} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            ISTIO_GROUP,
            ISTIO_VERSION,
            namespace,
            plural,
            name,
            ops,
            write=True,
            _content_type=JSON_PATCH,
        )

    def get_deployment(self, namespace: str, name: str) -> JSON:
        return self._call(f"GET deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)

    def patch_deployment(self, namespace: str, name: str, ops: list[Op]) -> JSON:
        return self._call(
            f"PATCH deployment {namespace}/{name}",
            self.apps.patch_namespaced_deployment,
            name,
            namespace,
            ops,
            write=True,
            _content_type=JSON_PATCH,
        )
