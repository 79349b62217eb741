"""Service discovery: the Services that carry the label selector, from the Kubernetes API.

Lists all namespaces (or each configured one) page by page through exporter.kube.client; namespace,
name and the Unified Service Tagging labels (`tags.datadoghq.com/env|service|version`) are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.errors import DiscoveryError, KubeError
from exporter.kube.client import JSON, KubeClient, name_of
from exporter.model import UST_KEYS, UST_LABEL_PREFIX, ServiceRef


def service_ref(item: JSON, *, what: str) -> ServiceRef:
    """The ServiceRef of a listed Service, with its Unified Service Tagging labels (non-empty strings only)."""
    meta = item.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    labels = labels if isinstance(labels, dict) else {}
    ust = [(key, labels.get(UST_LABEL_PREFIX + key)) for key in UST_KEYS]
    return ServiceRef(*name_of(item, what=what), labels=tuple((k, v) for k, v in ust if isinstance(v, str) and v))


class KubeDiscovery:
    """Lists the Services matching `label_selector` in `namespaces` (None: every namespace)."""

    def __init__(self, kube: KubeClient, *, label_selector: str, namespaces: Sequence[str] | None = None) -> None:
        self.kube = kube
        self.label_selector = label_selector
        self.namespaces = list(namespaces) if namespaces else None

    @property
    def requests_made(self) -> int:
        return self.kube.requests_made

    def list_services(self) -> list[ServiceRef]:
        """Every matching Service, sorted; DiscoveryError when the API cannot answer."""
        found: set[ServiceRef] = set()
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        for namespace in scopes:
            path = f"/api/v1/namespaces/{namespace}/services" if namespace else "/api/v1/services"
            what = f"list Services ({self.label_selector}) in " + (
                f"namespace {namespace}" if namespace else "all namespaces"
            )
            try:
                items = self.kube.list(path, what=what, query=[("labelSelector", self.label_selector)])
                found.update(service_ref(item, what=what) for item in items)
            except KubeError as e:
                raise DiscoveryError(str(e), retryable=e.retryable) from e  # the cause says its kind
        return sorted(found)
