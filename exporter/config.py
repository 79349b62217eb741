"""Settings from the environment and an optional YAML file, validated once (pydantic-settings).

Environment names are the contract (EXPORTER_*, DD_*, KUBECONFIG); a YAML file (`--config` or
EXPORTER_CONFIG) may set the same fields by their lower-case names without the EXPORTER_ prefix
(`prometheus_url`, `dd_site`, ...). The environment wins over the file. Invalid input raises
`ConfigError` naming the setting as the user wrote it; secrets are never echoed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlparse

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.errors import ConfigError
from exporter.query import promql
from exporter.selectors import LabelSelectorError, parse_label_selector

ENV_PREFIX = "EXPORTER_"
CONFIG_ENV = "EXPORTER_CONFIG"

# Datadog tag grammar: starts with a letter, then letters, digits and _ - : . /; at most 200 characters.
_TAG = re.compile(r"^[a-z][a-z0-9_\-:./]{0,199}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _url(value: str, name: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


class Settings(BaseSettings):
    """Every setting of the exporter, with its default; see README for the table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="forbid", populate_by_name=True
    )

    # Prometheus
    prometheus_url: str = "http://prometheus.istio-system:9090"
    """Prometheus-compatible query API (Prometheus, Thanos, Mimir)."""
    prometheus_headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Extra request headers, `Name=value` pairs separated by commas (e.g. X-Scope-OrgID=team-a)."""
    prometheus_timeout_seconds: float = Field(10.0, gt=0)
    """Per-query timeout, sent to Prometheus too so it stops evaluating."""

    # Datadog
    dd_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DD_API_KEY", "dd_api_key"))
    dd_app_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DD_APP_KEY", "dd_app_key"))
    dd_site: str = Field("datadoghq.com", validation_alias=AliasChoices("DD_SITE", "dd_site"))
    datadog_url: str | None = None
    """Base URL replacing https://api.<DD_SITE> (proxies, compatible intakes, tests)."""

    # Kubernetes
    label_selector: str = "migrated=true"
    namespaces: Annotated[list[str] | None, NoDecode] = None
    """Namespaces to watch; unset or `all` means every namespace."""
    kubeconfig: str | None = Field(None, validation_alias=AliasChoices("KUBECONFIG", "kubeconfig"))
    discovery_interval_seconds: float = Field(60.0, gt=0)

    # Cycle
    interval_seconds: float = Field(30.0, gt=0)
    rate_window: str = "5m"
    figure_source: Literal["raw", "recorded", "auto"] = "raw"
    """raw Istio series, the recorded series of `exporter rules`, or auto (recorded when present)."""
    tags: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    # Istio and the mTLS report
    istio_root_namespace: str = "istio-system"
    """Istio's root namespace, where a mesh-wide PeerAuthentication lives."""
    report_window: str = "7d"

    # High availability (leader election on a coordination.k8s.io/v1 Lease)
    leader_election: bool = False
    lease_name: str = "mesh-exporter"
    lease_namespace: str = "istio-system"
    lease_duration_seconds: float = Field(15.0, gt=0)
    renew_deadline_seconds: float = Field(10.0, gt=0)
    retry_period_seconds: float = Field(2.0, gt=0)

    # Reliability
    spool_dir: str | None = None
    """Directory where unsent points survive a restart; unset keeps them in memory only."""
    backlog_max_points: int = Field(200_000, ge=0)
    """Most unsent points kept for re-sending (besides Datadog's one-hour limit); oldest dropped first."""

    secret_fields: ClassVar[tuple[str, ...]] = ("dd_api_key", "dd_app_key")

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, v: str) -> str:
        return _url(v, "prometheus_url")

    @field_validator("datadog_url")
    @classmethod
    def _datadog_url(cls, v: str | None) -> str | None:
        return None if not v else _url(v, "datadog_url")

    @field_validator("prometheus_headers", mode="before")
    @classmethod
    def _headers(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        headers: dict[str, str] = {}
        for pair in _split(v):
            name, sep, value = pair.partition("=")
            if not sep or not _HEADER_NAME.match(name.strip()):
                raise ValueError("expected Name=value pairs separated by commas")
            headers[name.strip()] = value.strip()
        return headers

    @field_validator("dd_site")
    @classmethod
    def _site(cls, v: str) -> str:
        if not _HOST.match(v):
            raise ValueError(f"not a Datadog site host name: {v!r} (e.g. datadoghq.eu)")
        return v

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespaces_before(cls, v: Any) -> Any:
        v = _split(v)
        return None if v in ([], ["all"], None) else v

    @field_validator("namespaces", "istio_root_namespace", "lease_namespace")
    @classmethod
    def _namespace_names(cls, v: list[str] | str | None) -> list[str] | str | None:
        for ns in [v] if isinstance(v, str) else v or []:
            if not _DNS_LABEL.match(ns):
                raise ValueError(f"not a Kubernetes namespace name: {ns!r}")
        return v

    @field_validator("label_selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty (the default is migrated=true)")
        try:
            parse_label_selector(v)
        except LabelSelectorError as e:
            raise ValueError(f"Kubernetes would reject {v!r}: {e}") from None
        return v.strip()

    @field_validator("rate_window", "report_window")
    @classmethod
    def _window(cls, v: str) -> str:
        promql.duration_seconds(v)
        return v

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_before(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for tag in v:
            if not _TAG.match(tag):
                raise ValueError(
                    f"not a valid Datadog tag: {tag!r} (lower case, starts with a letter, "
                    "letters digits _ - : . / only, at most 200 characters)"
                )
        return v

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        if not self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                "must be longer than EXPORTER_RETRY_PERIOD_SECONDS and shorter than EXPORTER_LEASE_DURATION_SECONDS"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("expected debug, info, warning or error")
        return v.lower()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init holds the YAML file's mapping (see load()); the environment wins over it.
        return (env_settings, init_settings)

    # Views used by the rest of the program ---------------------------------------------------------
    @property
    def datadog_base_url(self) -> str:
        return self.datadog_url or f"https://api.{self.dd_site}"

    def secrets(self) -> list[str]:
        """Every secret value the settings hold (for log redaction)."""
        values = [s.get_secret_value() for s in (self.dd_api_key, self.dd_app_key) if s is not None]
        values += [v for k, v in self.prometheus_headers.items() if k.lower() in ("authorization", "x-api-key")]
        values += [v.split(" ", 1)[1] for v in values if v.lower().startswith(("bearer ", "basic "))]
        for url in (self.prometheus_url, self.datadog_url):
            password = urlparse(url).password if url else None
            if password:
                values.append(password)
        return [v for v in values if v]

    def effective(self) -> dict[str, Any]:
        """The configuration as logged at start: secrets shown as set/unset only."""
        out = self.model_dump(exclude=set(self.secret_fields))
        out["prometheus_headers"] = sorted(self.prometheus_headers)
        for name in self.secret_fields:
            out[name] = "<set>" if getattr(self, name) is not None else "<unset>"
        return out


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return ENV_PREFIX + field.upper()


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(CONFIG_ENV, f"cannot read {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(CONFIG_ENV, f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(CONFIG_ENV, f"{path} must hold a mapping of settings, not a {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def _unknown_env() -> str | None:
    known = {env_name(f) for f in Settings.model_fields} | {CONFIG_ENV}
    for name in sorted(os.environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            return name
    return None


def load(config_file: str | None = None) -> Settings:
    """Settings from the environment over the YAML file; ConfigError (one line, naming the field) if invalid."""
    unknown = _unknown_env()
    if unknown:
        raise ConfigError(unknown, "unknown setting (see README for the list)")
    path = config_file or os.environ.get(CONFIG_ENV)
    file_values = _read_yaml(path) if path else {}
    for key in file_values:
        if key not in Settings.model_fields:
            raise ConfigError(f"{path}: {key}", "unknown setting (see README for the list)")
    try:
        return Settings(**file_values)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "EXPORTER_RENEW_DEADLINE_SECONDS"
        name = field if field.isupper() else env_name(field)
        if field in file_values and name.upper() not in {k.upper() for k in os.environ}:
            name = f"{path}: {field}"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(name, message) from None
