"""`exporter datadog setup`: Datadog metric metadata, the dashboard and the monitors, created or updated.

The dashboard and monitors are JSON in deploy/datadog/, read through datadog-api-client's models so the
library validates every field (a field it cannot parse is an error, not a silent pass-through); the
metadata comes from the metric catalogue (exporter.model). Everything is keyed so that a re-run updates
instead of duplicating: monitors by the `managed-by:mesh-exporter` tag and their fixed name, the
dashboard by its fixed title and the same marker in its description (Datadog allows only `team:` tags
on dashboards); metadata is a PUT by metric name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.model_utils import OpenApiModel, validate_and_convert_types
from datadog_api_client.v1.api.dashboards_api import DashboardsApi
from datadog_api_client.v1.api.metrics_api import MetricsApi
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.metric_metadata import MetricMetadata
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from exporter.errors import ConfigError, SubmitError, retryable_status
from exporter.model import CATALOGUE, DEFAULT_METRIC_PREFIX, REPORT_CATALOGUE

MANAGED_BY = "managed-by:mesh-exporter"
DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "datadog"
"""deploy/datadog/ of the source tree (the command's default `--from`)."""


def _model(data: Any, cls: type[OpenApiModel], where: str) -> Any:
    """`data` as a datadog-api-client model; ConfigError naming `where` when the library cannot parse it."""
    try:
        model = validate_and_convert_types(data, (cls,), [where], True, True, Configuration())  # type: ignore[no-untyped-call]
    except Exception as e:  # the library raises its own ApiTypeError/ApiValueError/...
        raise ConfigError(where, f"not a valid {cls.__name__}: {str(e).splitlines()[0]}") from None
    bad = _unparsed(model, where)
    if bad:
        raise ConfigError(bad, f"not a valid field of a Datadog {cls.__name__} (datadog-api-client cannot parse it)")
    return model


def _unparsed(value: Any, path: str) -> str | None:
    """The path of the deepest part of a model the library could not parse, or None."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _unparsed(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if not isinstance(value, OpenApiModel) or not getattr(value, "_unparsed", False):
        return None
    inner = getattr(value, "get_oneof_instance", lambda: None)() if hasattr(value, "_composed_schemas") else None
    children = [(path, inner)] if inner is not None else []
    children += [(f"{path}.{k}", v) for k, v in getattr(value, "_data_store", {}).items()]
    for child_path, child in children:
        found = _unparsed(child, child_path)
        if found:
            return found
    return path


@dataclass(frozen=True)
class Definitions:
    """Everything `setup` declares, as validated models."""

    metadata: dict[str, MetricMetadata]
    dashboard: Dashboard
    monitors: list[tuple[Monitor, MonitorUpdateRequest]]

    def as_json(self) -> dict[str, Any]:
        return {
            "metadata": {name: _plain(m) for name, m in self.metadata.items()},
            "dashboard": _plain(self.dashboard),
            "monitors": [_plain(m) for m, _ in self.monitors],
        }


def _plain(model: OpenApiModel) -> dict[str, Any]:
    return dict(model.to_dict())


def load_definitions(directory: Path = DEFINITIONS, *, prefix: str = DEFAULT_METRIC_PREFIX) -> Definitions:
    """The metadata of every metric under `prefix`, and deploy/datadog's dashboard and monitors with their
    metric names moved under `prefix`; ConfigError (naming the file and field) when one is invalid."""

    def read(name: str) -> Any:
        path = directory / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(str(path), f"cannot read: {e.strerror}") from None
        text = text.replace(f"{DEFAULT_METRIC_PREFIX}.", f"{prefix}.")  # metric names only use the prefix
        try:
            return json.loads(text)
        except ValueError as e:
            raise ConfigError(str(path), f"not valid JSON: {e}") from None

    metadata = {}
    for info in [*CATALOGUE.values(), *REPORT_CATALOGUE.values()]:
        body = {"type": info.type, "unit": info.unit, "description": info.description}
        body |= {"per_unit": info.per_unit} if info.per_unit else {}
        metadata[info.name(prefix)] = _model(body, MetricMetadata, f"metadata {info.name(prefix)}")
    dashboard = _model(read("dashboard.json"), Dashboard, "dashboard.json")
    if MANAGED_BY not in (dashboard.get("description") or ""):
        raise ConfigError("dashboard.json: description", f"must contain {MANAGED_BY} (the key of re-runs)")
    monitors = []
    documents = read("monitors.json")
    if not isinstance(documents, list):
        raise ConfigError("monitors.json", "must hold a list of monitors")
    for i, doc in enumerate(documents):
        where = f"monitors.json[{i}]"
        monitor = _model(doc, Monitor, where)
        if MANAGED_BY not in (monitor.get("tags") or []):
            raise ConfigError(f"{where}.tags", f"must contain {MANAGED_BY} (the key of re-runs)")
        monitors.append((monitor, _model(doc, MonitorUpdateRequest, where)))
    names = [m.name for m, _ in monitors]
    if len(set(names)) != len(names):
        raise ConfigError("monitors.json", "monitor names must be unique (a name is the key of re-runs)")
    return Definitions(metadata, dashboard, monitors)


def api_client(base_url: str, *, api_key: str, app_key: str, timeout: float = 30.0) -> ApiClient:
    config = Configuration(host=base_url, request_timeout=timeout)  # type: ignore[no-untyped-call]
    config.api_key["apiKeyAuth"] = api_key
    config.api_key["appKeyAuth"] = app_key
    config.retry_policy = urllib3.util.Retry(total=2, backoff_factor=1, status_forcelist=(429, 500, 502, 503, 504))
    return ApiClient(config)


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as e:
        status = int(e.status or 0)
        body = e.body if isinstance(e.body, str) else ""
        raise SubmitError(
            f"{what} -> {status}: {body[:300]}", status=status, retryable=retryable_status(status)
        ) from None
    except urllib3.exceptions.HTTPError as e:
        raise SubmitError(f"{what} -> no answer: {type(e).__name__}", retryable=True) from None


def apply(definitions: Definitions, client: ApiClient) -> list[tuple[str, str, str]]:
    """Declare the metadata, then create or update the dashboard and each monitor; (kind, name, action) rows."""
    done: list[tuple[str, str, str]] = []
    metrics = MetricsApi(client)  # type: ignore[no-untyped-call]
    for name, metadata in definitions.metadata.items():
        _call(f"PUT /api/v1/metrics/{name}", metrics.update_metric_metadata, name, metadata)
        done.append(("metadata", name, "declared"))

    dashboards = DashboardsApi(client)  # type: ignore[no-untyped-call]
    wanted = definitions.dashboard
    listed = _call("GET /api/v1/dashboard", dashboards.list_dashboards, filter_shared=False)
    ours = [
        d
        for d in listed.get("dashboards") or []
        if d.title == wanted.title and MANAGED_BY in (d.get("description") or "")
    ]
    if ours:
        _call(f"PUT /api/v1/dashboard/{ours[0].id}", dashboards.update_dashboard, ours[0].id, wanted)
        done.append(("dashboard", wanted.title, f"updated {ours[0].id}"))
    else:
        created = _call("POST /api/v1/dashboard", dashboards.create_dashboard, wanted)
        done.append(("dashboard", wanted.title, f"created {created.id}"))

    monitors = MonitorsApi(client)  # type: ignore[no-untyped-call]
    existing = _call("GET /api/v1/monitor", monitors.list_monitors, monitor_tags=MANAGED_BY)
    by_name: dict[str, int] = {}
    for m in existing:
        by_name.setdefault(m.name, m.id)
    for monitor, update in definitions.monitors:
        if monitor.name in by_name:
            monitor_id = by_name[monitor.name]
            _call(f"PUT /api/v1/monitor/{monitor_id}", monitors.update_monitor, monitor_id, update)
            done.append(("monitor", monitor.name, f"updated {monitor_id}"))
        else:
            created = _call("POST /api/v1/monitor", monitors.create_monitor, monitor)
            done.append(("monitor", monitor.name, f"created {created.id}"))
    return done
