"""Thin Kubernetes client for the rollout: VirtualServices, DestinationRules, Deployments and
HorizontalPodAutoscalers as plain JSON, JSON patches (RFC 6902) guarded by resourceVersion, core/v1
Events, and the server and Istio versions.

Reads are retried on retryable failures; a patch is retried only when the server answered (a lost
answer may hide an applied patch, whose retry would then look like someone else's edit). A 409 is
never retried here: it means the object changed since we read it, and the caller decides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jsonpatch

from exporter.errors import KubeError

if TYPE_CHECKING:  # the pure helpers above the class load no Kubernetes client (rollout/plan.py imports them)
    from exporter.kube.client import JSON, KubeClient

Op = dict[str, Any]

ISTIO_GROUP, ISTIO_VERSION = "networking.istio.io", "v1"
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def rv_guard(obj: JSON) -> Op:
    """The op that makes a JSON patch conditional on the object's resourceVersion (409 Conflict if it moved)."""
    return {"op": "replace", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}


def pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def apply_patch(obj: JSON, ops: Sequence[Op]) -> JSON:
    """`ops` applied to a copy of `obj` (for dry runs), by the jsonpatch library."""
    return dict(jsonpatch.apply_patch(obj, list(ops)))


def istio_version_of(image: str) -> str | None:
    """`docker.io/istio/pilot:1.24.2-distroless` → `1.24.2`."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    found = _SEMVER.search(tag)
    return found.group(0) if found else None


class Kube:
    """The few Kubernetes calls the rollout makes, as plain JSON through exporter.kube.client."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def server_version(self) -> str:
        return str(self.kube.get("/version", what="GET /version").get("gitVersion", "unknown"))

    def istio_version(self, root_namespace: str) -> str | None:
        """istiod's version from its Deployment's image tag in the root namespace; None when not found."""
        try:
            found = self.kube.list(
                f"/apis/apps/v1/namespaces/{root_namespace}/deployments",
                what=f"list Deployments app=istiod in {root_namespace}",
                query=[("labelSelector", "app=istiod")],
            )
        except KubeError:
            return None
        for item in found:
            for container in item.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []:
                version = istio_version_of(str(container.get("image", "")))
                if version:
                    return version
        return None

    def get_istio(self, plural: str, namespace: str, name: str) -> JSON:
        return self.kube.get(_istio_path(plural, namespace, name), what=f"GET {plural} {namespace}/{name}")

    def patch_istio(self, plural: str, namespace: str, name: str, ops: list[Op]) -> JSON:
        return self.kube.patch(_istio_path(plural, namespace, name), ops, what=f"PATCH {plural} {namespace}/{name}")

    def get_deployment(self, namespace: str, name: str) -> JSON:
        return self.kube.get(_deployment_path(namespace, name), what=f"GET deployment {namespace}/{name}")

    def patch_deployment(self, namespace: str, name: str, ops: list[Op]) -> JSON:
        return self.kube.patch(_deployment_path(namespace, name), ops, what=f"PATCH deployment {namespace}/{name}")

    def list_hpas(self, namespace: str) -> list[JSON]:
        return self.kube.list(_hpa_path(namespace), what=f"list horizontalpodautoscalers in {namespace}")

    def patch_hpa(self, namespace: str, name: str, ops: list[Op]) -> JSON:
        path = f"{_hpa_path(namespace)}/{name}"
        return self.kube.patch(path, ops, what=f"PATCH horizontalpodautoscaler {namespace}/{name}")

    def create_event(self, namespace: str, event: JSON) -> JSON:
        """One attempt: an Event is a record, never worth delaying the rollout for."""
        path = f"/api/v1/namespaces/{namespace}/events"
        return self.kube.request("POST", path, what=f"POST event in {namespace}", body=event)


def _istio_path(plural: str, namespace: str, name: str) -> str:
    return f"/apis/{ISTIO_GROUP}/{ISTIO_VERSION}/namespaces/{namespace}/{plural}/{name}"


def _hpa_path(namespace: str) -> str:
    return f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"


def _deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
