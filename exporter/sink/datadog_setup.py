"""`exporter datadog setup`: Datadog metric metadata, the dashboard and the monitors, created or updated.

The dashboard and monitors are JSON shipped with the package (datadog_definitions/, which the repository
also shows as deploy/datadog/). They are parsed by datadog-api-client's models and then checked
strictly: a key no model knows (a misspelt field), a value of the wrong type or outside an enum, and a
widget or monitor whose type matches none Datadog has are a ConfigError naming the JSON path. The
metadata comes from the metric catalogue (exporter.model). Everything is keyed so that a re-run updates
instead of duplicating: monitors by the `managed-by:mesh-exporter` tag and their fixed name, the
dashboard by its fixed title and the same marker in its description (Datadog allows only `team:` tags
on dashboards); metadata is a PUT by metric name, which Datadog refuses (404) for a metric it has not
received yet: that metric is reported pending and the rest goes on. Calls retry through exporter.retry;
a create is tried once (it may have landed: the re-run finds it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    ModelSimple,
    OpenApiModel,
    validate_and_convert_types,
)
from datadog_api_client.v1.api.dashboards_api import DashboardsApi
from datadog_api_client.v1.api.metrics_api import MetricsApi
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.metric_metadata import MetricMetadata
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from exporter.errors import ConfigError, SubmitError
from exporter.model import CATALOGUE, DEFAULT_METRIC_PREFIX, REPORT_CATALOGUE
from exporter.retry import RetryPolicy, call
from exporter.sink.datadog import api_call

MANAGED_BY = "managed-by:mesh-exporter"
DEFINITIONS = Path(__file__).resolve().parent / "datadog_definitions"
"""The shipped dashboard.json and monitors.json (the command's default `--from`; deploy/datadog links here)."""
PENDING = "pending: Datadog has not received it yet"
RETRY = RetryPolicy(attempts=3, base_wait=1.0, max_wait=30.0)
DASHBOARD_PAGE = 100
DASHBOARD_PAGES = 100
"""The dashboard list is read in pages of DASHBOARD_PAGE, at most this many (10,000 dashboards)."""


def _model(data: Any, cls: type[OpenApiModel], where: str) -> Any:
    """`data` as a datadog-api-client model; ConfigError naming the JSON path of the first part that is not
    what Datadog accepts (the library itself keeps unknown keys and unmatched types without a word)."""
    try:
        model = validate_and_convert_types(data, (cls,), [where], True, True, Configuration())  # type: ignore[no-untyped-call]
    except Exception as e:  # the library raises its own ApiTypeError/ApiValueError/...
        raise ConfigError(where, f"not a valid {cls.__name__}: {str(e).splitlines()[0]}") from None
    bad = _strict(model, data, where)
    if bad:
        raise ConfigError(*bad)
    return model


def _strict(model: Any, raw: Any, path: str) -> tuple[str, str] | None:
    """(JSON path, problem) of the first part of `raw` that its parsed `model` does not account for."""
    if isinstance(model, list) and isinstance(raw, list):
        for i, (item, raw_item) in enumerate(zip(model, raw, strict=True)):
            found = _strict(item, raw_item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(model, ModelSimple) and model._unparsed:
        return path, f"{raw!r} is not one of {sorted(model.allowed_values)}"
    if isinstance(model, ModelComposed):
        chosen = model._composed_instances[0] if model._composed_instances else None
        if model._unparsed or not isinstance(chosen, OpenApiModel):
            return _no_match(type(model), raw, path)
        return _strict(chosen, raw, path)
    if isinstance(model, ModelNormal) and isinstance(raw, dict):
        names = {json_name: attr for attr, json_name in model.attribute_map.items()}
        for key, value in raw.items():
            if key not in names:
                return f"{path}.{key}", f"not a field of a Datadog {type(model).__name__}"
            found = _strict(model._data_store.get(names[key]), value, f"{path}.{key}")
            if found:
                return found
    return None


def _types(cls: type[OpenApiModel]) -> set[str]:
    """The values a model's `type` field allows (none for a model without one)."""
    kinds = cls.openapi_types.get("type", ())
    return {str(v) for k in kinds if isinstance(k, type) and issubclass(k, ModelSimple) for v in k.allowed_values}


def _no_match(cls: type[ModelComposed], raw: Any, path: str) -> tuple[str, str]:
    """Why `raw` matched none of the oneOf types of `cls`: a `type` none of them has, or the problem of the
    one type its `type` names."""
    options = list(cls._composed_schemas.get("oneOf", ()))
    kind = raw.get("type") if isinstance(raw, dict) else None
    named = [c for c in options if kind in _types(c)]
    if kind is not None and not named and any(_types(c) for c in options):
        known = sorted({t for c in options for t in _types(c)})
        return f"{path}.type", f"{kind!r} is not a Datadog {cls.__name__} type (one of {', '.join(known)})"
    for option in named:
        try:
            _model(raw, option, path)
        except ConfigError as e:
            return e.field, str(e).removeprefix(f"{e.field}: ")
    return path, f"matches none of the types of a Datadog {cls.__name__}"


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


def load_definitions(
    directory: Path = DEFINITIONS, *, prefix: str = DEFAULT_METRIC_PREFIX, notify: Sequence[str] = ()
) -> Definitions:
    """The metadata of every metric under `prefix`, and the dashboard and monitors of `directory` with their
    metric names moved under `prefix` and the `notify` handles (e.g. `@slack-mesh`) closing each monitor's
    message; ConfigError (naming the file and JSON path) when one is invalid."""

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
        if notify and isinstance(doc, dict) and isinstance(doc.get("message"), str):
            doc["message"] += "\n\n" + " ".join(notify)
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
    config.retry_policy = urllib3.util.Retry(total=0, raise_on_status=False)  # retries are exporter.retry's
    return ApiClient(config)


def _call(what: str, fn: Any, *args: Any, policy: RetryPolicy, **kwargs: Any) -> Any:
    return call(lambda: api_call(what, fn, *args, **kwargs), what=what, policy=policy)


def apply(
    definitions: Definitions, client: ApiClient, *, retry: RetryPolicy = RETRY, page: int = DASHBOARD_PAGE
) -> list[tuple[str, str, str]]:
    """Declare the metadata, then create or update the dashboard and each monitor; (kind, name, action)
    rows. A metric Datadog has not received yet gets the action PENDING (its metadata waits for a re-run)."""
    once = RetryPolicy(attempts=1, sleep=retry.sleep)
    done: list[tuple[str, str, str]] = []
    metrics = MetricsApi(client)  # type: ignore[no-untyped-call]
    for name, metadata in definitions.metadata.items():
        try:
            _call(f"PUT /api/v1/metrics/{name}", metrics.update_metric_metadata, name, metadata, policy=retry)
        except SubmitError as e:
            if e.status != 404:
                raise
            done.append(("metadata", name, PENDING))
        else:
            done.append(("metadata", name, "declared"))

    dashboards = DashboardsApi(client)  # type: ignore[no-untyped-call]
    wanted = definitions.dashboard
    existing = _our_dashboard(dashboards, wanted.title, retry=retry, page=page)
    if existing is not None:
        _call(f"PUT /api/v1/dashboard/{existing}", dashboards.update_dashboard, existing, wanted, policy=retry)
        done.append(("dashboard", wanted.title, f"updated {existing}"))
    else:
        created = _call("POST /api/v1/dashboard", dashboards.create_dashboard, wanted, policy=once)
        done.append(("dashboard", wanted.title, f"created {created.id}"))

    monitors = MonitorsApi(client)  # type: ignore[no-untyped-call]
    listed = _call("GET /api/v1/monitor", monitors.list_monitors, monitor_tags=MANAGED_BY, policy=retry)
    by_name: dict[str, int] = {}
    for m in listed:
        by_name.setdefault(m.name, m.id)
    for monitor, update in definitions.monitors:
        if monitor.name in by_name:
            monitor_id = by_name[monitor.name]
            _call(f"PUT /api/v1/monitor/{monitor_id}", monitors.update_monitor, monitor_id, update, policy=retry)
            done.append(("monitor", monitor.name, f"updated {monitor_id}"))
        else:
            created = _call("POST /api/v1/monitor", monitors.create_monitor, monitor, policy=once)
            done.append(("monitor", monitor.name, f"created {created.id}"))
    return done


def _our_dashboard(dashboards: DashboardsApi, title: str, *, retry: RetryPolicy, page: int) -> str | None:
    """The id of the dashboard an earlier run created (its title and the marker), reading the list page by
    page; SubmitError past DASHBOARD_PAGES pages rather than risk creating a duplicate."""
    for number in range(DASHBOARD_PAGES):
        listed = _call(
            "GET /api/v1/dashboard",
            dashboards.list_dashboards,
            filter_shared=False,
            count=page,
            start=number * page,
            policy=retry,
        )
        found = listed.get("dashboards") or []
        for d in found:
            if d.title == title and MANAGED_BY in (d.get("description") or ""):
                return str(d.id)
        if len(found) < page:
            return None
    raise SubmitError(
        f"GET /api/v1/dashboard: more than {DASHBOARD_PAGES * page} dashboards; not creating one that may exist"
    )
