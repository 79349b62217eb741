"""Istio PeerAuthentication objects, listed as plain JSON (security.istio.io v1, or v1beta1 before Istio 1.22)."""

from __future__ import annotations

from exporter.errors import KubeError
from exporter.kube.client import JSON, KubeClient

PA_GROUP, PA_VERSIONS, PA_PLURAL = "security.istio.io", ("v1", "v1beta1"), "peerauthentications"


def list_peer_authentications(kube: KubeClient) -> list[JSON]:
    """Every PeerAuthentication in the cluster, from the newest API version this Istio serves."""
    for version in PA_VERSIONS:
        try:
            return kube.list(
                f"/apis/{PA_GROUP}/{version}/{PA_PLURAL}",
                what=f"list {PA_PLURAL}.{PA_GROUP}/{version} in all namespaces",
            )
        except KubeError as e:
            if e.status == 404 and version != PA_VERSIONS[-1]:
                continue  # this Istio does not serve the version: try the older one
            raise
    raise AssertionError("unreachable")  # pragma: no cover
