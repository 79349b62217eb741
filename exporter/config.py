"""Settings from the environment and an optional YAML file, validated once (pydantic-settings).

Environment names are the contract (EXPORTER_*, DD_*, KUBECONFIG); a YAML file (`--config` or
EXPORTER_CONFIG) may set the same fields by their lower-case names without the EXPORTER_ prefix
(`prometheus_url`, `dd_site`, ...). The environment wins over the file. Invalid input raises
`ConfigError` naming the setting as the user wrote it; secrets are never echoed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from exporter import durations
from exporter.errors import ConfigError
from exporter.logs import mask_userinfo
from exporter.selectors import LabelSelectorError, dns_label, dns_subdomain, parse_label_selector

ENV_PREFIX = "EXPORTER_"
CONFIG_ENV = "EXPORTER_CONFIG"

# Datadog tag grammar: starts with a letter, then letters, digits and _ - : . /; at most 200 characters.
_TAG = re.compile(r"^[a-z][a-z0-9_\-:./]{0,199}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_TAG_ILLEGAL = re.compile(r"[^a-z0-9_\-:./]")
# Datadog metric names: ASCII letters, digits, underscores and periods, starting with a letter.
_METRIC_PREFIX = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*(\.[a-zA-Z][a-zA-Z0-9_]*)*$")


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret|password|cookie|session", re.IGNORECASE)


def _clean(value: str) -> str:
    """A value that may be secret, normalised: surrounding whitespace (a newline from `echo key | base64`)
    stripped; any other control character refused, and any character an HTTP header cannot carry (not
    Latin-1), since every such value travels in one. The message never shows the value."""
    value = value.strip()
    if _CONTROL.search(value):
        raise ValueError("contains a control character (value not shown: it may be secret)")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("contains a character HTTP headers cannot carry (value not shown: it may be secret)") from None
    return value


def _host(host: str) -> bool:
    """A host name Kubernetes and DNS accept (labels of 1 to 63 letters, digits and inner hyphens; at
    most 253 characters), or an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or labels[-1].isdigit():  # all digits: an IP address, and not a valid one
        return False
    return all(dns_label(label) for label in labels)


def _url(value: str, example: str) -> str:
    """An http(s) URL with a valid host and port. Errors never echo the value: it may hold a password."""
    value = _clean(value)
    hint = "(value not shown: it may hold a password)"
    try:
        parsed = urlsplit(value)
        port = parsed.port
    except ValueError:
        raise ValueError(f"the port must be a number from 1 to 65535 {hint}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an http(s) URL with a host, e.g. {example} {hint}")
    if port == 0 or (parsed.netloc.rsplit("@", 1)[-1].endswith(":") and port is None):
        raise ValueError(f"the port must be a number from 1 to 65535 {hint}")
    if parsed.username is not None and "@" in parsed.netloc.rsplit("@", 1)[0]:
        raise ValueError(f"an '@' in the user or password must be written %40 {hint}")
    if not _host(parsed.hostname):
        raise ValueError(f"not a valid host name or IP address, e.g. {example} {hint}")
    for part in (parsed.username, parsed.password):
        if part is not None:
            _clean(unquote(part))
    return value.rstrip("/")


def normalise_tag(tag: str) -> str:
    """`tag` as Datadog stores it: lower case, characters it does not allow turned to `_` (one for a run,
    none at the end), from its first letter on, at most 200 characters; empty when nothing is left."""
    tag = re.sub("_+", "_", _TAG_ILLEGAL.sub("_", tag.lower()))
    return re.sub(r"^[^a-z]+", "", tag)[:200].rstrip("_")


class Settings(BaseSettings):
    """Every setting of the exporter, with its default; docs/settings.md has the table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="forbid", populate_by_name=True, allow_inf_nan=False
    )

    # Prometheus
    prometheus_url: str = "http://prometheus.istio-system:9090"
    """Prometheus-compatible query API (Prometheus, Thanos, Mimir)."""
    prometheus_headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Extra request headers, `Name=value` pairs separated by commas (e.g. X-Scope-OrgID=team-a)."""
    prometheus_timeout_seconds: float = Field(10.0, ge=0.001, le=3600)
    """Per-query timeout, sent to Prometheus too so it stops evaluating (1 ms to 1 h, in whole milliseconds)."""
    prometheus_max_answer_bytes: int = Field(6 * 1024 * 1024, ge=1024, le=1024**3)
    """Largest Prometheus answer read (bytes); above it the query fails clearly instead of exhausting memory."""

    # Datadog
    dd_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DD_API_KEY", "dd_api_key"))
    dd_app_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DD_APP_KEY", "dd_app_key"))
    dd_site: str = Field("datadoghq.com", validation_alias=AliasChoices("DD_SITE", "dd_site"))
    datadog_url: str | None = None
    """Base URL replacing https://api.<DD_SITE> (proxies, compatible intakes, tests)."""
    dd_env: str | None = Field(None, validation_alias=AliasChoices("DD_ENV", "dd_env"))
    """Default `env` tag (Unified Service Tagging), as the Datadog Agent reads it; a Service's label wins."""
    dd_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("DD_TAGS", "dd_tags")
    )
    """Tags for every point, space- or comma-separated `key:value` like the Agent's DD_TAGS (lowest precedence)."""
    dd_cluster_name: str | None = Field(None, validation_alias=AliasChoices("DD_CLUSTER_NAME", "dd_cluster_name"))
    """Cluster name sent as `kube_cluster_name`, as the Datadog Agent reads it."""
    metric_prefix: str = "istio.service"
    """Prefix of every Datadog metric the exporter sends (`<prefix>.p99_latency_ms`, `<prefix>.report.*`)."""

    # Kubernetes
    label_selector: str = "migrated=true"
    namespaces: Annotated[list[str] | None, NoDecode] = None
    """Namespaces to watch; unset or `all` means every namespace."""
    kubeconfig: str | None = Field(None, validation_alias=AliasChoices("KUBECONFIG", "kubeconfig"))
    discovery_interval_seconds: float = Field(60.0, ge=1, le=86400)
    """Whole seconds between two listings of the Services (1 to 86400)."""

    # Cycle
    interval_seconds: float = Field(30.0, ge=1, le=86400)
    """Whole seconds between two evaluation instants (1 to 86400): instants are whole unix seconds."""
    rate_window: str = "5m"
    figure_source: Literal["raw", "recorded", "auto"] = "raw"
    """raw Istio series, the recorded series of `exporter rules`, or auto (recorded when present)."""
    tags: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"
    log_format: str = "auto"
    """`auto` (human-readable on a terminal, JSON otherwise), `json` or `console`."""

    # Istio and the mTLS report
    istio_root_namespace: str = "istio-system"
    """Istio's root namespace, where a mesh-wide PeerAuthentication lives."""
    report_window: str = "7d"

    # High availability (leader election on a coordination.k8s.io/v1 Lease)
    leader_election: bool = False
    lease_name: str = "mesh-exporter"
    lease_namespace: str = "istio-system"
    lease_duration_seconds: float = Field(15.0, gt=0, le=86400)
    renew_deadline_seconds: float = Field(10.0, gt=0, le=86400)
    retry_period_seconds: float = Field(2.0, gt=0, le=86400)

    # Reliability
    spool_dir: str | None = None
    """Directory where unsent points survive a restart; unset keeps them in memory only."""
    backlog_max_points: int = Field(200_000, ge=0, le=10_000_000)
    """Most unsent points kept for re-sending (besides Datadog's one-hour limit); oldest dropped first."""

    # Canary analysis endpoints (/v1/canary/analysis, /v1/flagger/check, /v1/flagger/gate)
    canary_api_enabled: bool = False
    """Serve the canary analysis and Flagger webhooks on the HTTP port (every replica, leader or not)."""
    canary_api_step_seconds: float = Field(30.0, ge=1, le=86400)
    """The endpoints evaluate at the current time floored to this step (answers are cached per step)."""
    canary_api_concurrency: int = Field(4, ge=1, le=32)
    """Analyses running at once; requests beyond are refused with 429. At most half the HTTP server's 64
    connections, so the probes, /metrics and the 429 replies always find one."""
    canary_api_deadline_seconds: float = Field(20.0, gt=0, le=3600)
    """An analysis not finished by then is answered 503."""
    canary_api_token: SecretStr | None = None
    """Bearer token the endpoints require when set (mount it from a Secret)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("dd_api_key", "dd_app_key", "canary_api_token")
    _notes: list[str] = PrivateAttr(default_factory=list)

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, v: str) -> str:
        return _url(v, "http://prometheus:9090")

    @field_validator("interval_seconds", "discovery_interval_seconds")
    @classmethod
    def _whole_seconds(cls, v: float) -> float:
        if v != int(v):
            raise ValueError(f"must be whole seconds, got {v:g}")
        return v

    @field_validator("prometheus_timeout_seconds")
    @classmethod
    def _timeout(cls, v: float) -> float:
        return round(v, 3)  # sent to Prometheus as whole milliseconds (see prometheus.timeout_param)

    @field_validator("dd_api_key", "dd_app_key", "canary_api_token", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if isinstance(v, str):
            cleaned = _clean(v)
            if v and not cleaned:  # whitespace only: a broken Secret, never "no token"
                raise ValueError("is blank (only whitespace); set a value or unset the variable")
            return cleaned or None
        return v

    @field_validator("lease_name")
    @classmethod
    def _lease_name(cls, v: str) -> str:
        if not dns_subdomain(v):
            raise ValueError(f"not a Kubernetes object name (lower-case DNS subdomain, at most 253): {v!r}")
        return v

    @field_validator("spool_dir")
    @classmethod
    def _spool_dir(cls, v: str | None) -> str | None:
        if not v:
            return None
        path = Path(v)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{v!r} exists and is not a directory")
        return v

    @field_validator("datadog_url")
    @classmethod
    def _datadog_url(cls, v: str | None) -> str | None:
        return None if not v else _url(v, "https://api.datadoghq.eu")

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
            try:
                headers[name.strip()] = _clean(value)
            except ValueError as e:
                raise ValueError(f"header {name.strip()}: {e}") from None
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
            if not dns_label(ns):
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
        durations.bounded(v)
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

    @field_validator("dd_tags", mode="before")
    @classmethod
    def _dd_tags_before(cls, v: Any) -> Any:
        if isinstance(v, str):  # the Agent's DD_TAGS: separated by spaces or commas
            v = [part for part in re.split(r"[\s,]+", v) if part]
        if isinstance(v, list):  # normalised as Datadog does, as the Agent accepts them (see _agent_tags)
            return [t for t in (normalise_tag(str(part)) for part in v) if t]
        return v

    @field_validator("dd_env", "dd_cluster_name")
    @classmethod
    def _tag_value(cls, v: str | None) -> str | None:
        return None if v is None else normalise_tag(f"t:{v}")[2:] or None

    @model_validator(mode="wrap")
    @classmethod
    def _agent_tags(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """The Agent's variables are normalised, not refused (a crash loop would be worse): note each
        value that changed beyond its case, for one warning at start-up."""
        settings = handler(data)
        if isinstance(data, dict) and isinstance(settings, Settings):
            raw = {k.lower(): v for k, v in data.items() if isinstance(v, str)}
            given = [t for t in re.split(r"[\s,]+", raw.get("dd_tags", "")) if t]
            changed = [t for t in given if normalise_tag(t) != t.lower()]
            for name in ("dd_env", "dd_cluster_name"):
                value = raw.get(name)
                if value is not None and (getattr(settings, name) or "") != value.lower():
                    changed.append(f"{env_name(name)}={value}")
            if changed:
                settings._notes.append(f"Datadog tags normalised as Datadog does: {', '.join(changed)}")
        return settings

    @field_validator("metric_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _METRIC_PREFIX.match(v):
            raise ValueError(f"not a Datadog metric name prefix: {v!r} (e.g. istio.service or mesh)")
        if v in ("istio", "istio.mesh") or v.startswith("istio.mesh."):
            # The Datadog Istio integration emits istio.mesh.*: names there would mix with its metrics.
            raise ValueError(
                f"{v!r} is the Datadog Istio integration's namespace (istio.mesh.*): use e.g. istio.service"
            )
        return v

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v.lower() not in ("auto", "json", "console"):
            raise ValueError("expected auto, json or console")
        return v.lower()

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
    def notes(self) -> list[str]:
        """Warnings about accepted but changed values, for the log once it is configured."""
        return list(self._notes)

    @property
    def datadog_base_url(self) -> str:
        return self.datadog_url or f"https://api.{self.dd_site}"

    def secrets(self) -> list[str]:
        """Every secret value the settings hold (for log redaction)."""
        tokens = (self.dd_api_key, self.dd_app_key, self.canary_api_token)
        values = [s.get_secret_value() for s in tokens if s is not None]
        values += [v for k, v in self.prometheus_headers.items() if _CREDENTIAL_HEADER.search(k)]
        values += [v.split(" ", 1)[1] for v in values if v.lower().startswith(("bearer ", "basic "))]
        for url in (self.prometheus_url, self.datadog_url):
            parts = urlsplit(url) if url else None
            if parts is not None and parts.password:
                user, password = parts.username or "", parts.password
                values += [password, unquote(password)]  # as written, and as sent (percent-decoded)
                # user:password as written and as Basic auth sends it: their base64 is masked too (logs.Redactor)
                values += [f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"]
        return [v for v in values if v]

    def effective(self) -> dict[str, Any]:
        """The configuration as logged at start: secrets shown as set/unset only."""
        out = self.model_dump(exclude=set(self.secret_fields))
        out["prometheus_headers"] = sorted(self.prometheus_headers)
        for name in ("prometheus_url", "datadog_url"):
            out[name] = mask_userinfo(out[name]) if out[name] else out[name]
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
    except UnicodeDecodeError:
        raise ConfigError(CONFIG_ENV, f"{path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(CONFIG_ENV, f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(CONFIG_ENV, f"{path} must hold a mapping of settings, not a {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


# Kubernetes service-link variables (kubelet, enableServiceLinks): for a Service `exporter-http` in the
# pod's namespace, EXPORTER_HTTP_SERVICE_HOST=10.0.0.1, EXPORTER_HTTP_PORT=tcp://10.0.0.1:80, ... Each
# shape is a name pattern and the exact value pattern Kubernetes writes, so a typo is never mistaken for one.
_LINK_SERVICE = r"(?P<service>EXPORTER(?:_[A-Z0-9_]+?)?)"
_IP = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)"
_PORT_NUMBER = r"\d{1,5}"
_LINK_URL = rf"(?:tcp|udp|sctp)://(?:{_IP}|\[{_IP}\]):{_PORT_NUMBER}"
_PORT_PROTO = r"_PORT_\d{1,5}_(?:TCP|UDP|SCTP)"
_SERVICE_LINKS = [
    (re.compile(rf"{_LINK_SERVICE}{name}"), re.compile(value))
    for name, value in (
        ("_SERVICE_HOST", _IP),
        ("_SERVICE_PORT(?:_[A-Z0-9_]+)?", _PORT_NUMBER),
        ("_PORT", _LINK_URL),
        (_PORT_PROTO, _LINK_URL),
        (_PORT_PROTO + "_PROTO", "(?:tcp|udp|sctp)"),
        (_PORT_PROTO + "_PORT", _PORT_NUMBER),
        (_PORT_PROTO + "_ADDR", _IP),
    )
]


def service_link(name: str, value: str) -> str | None:
    """The Service whose Kubernetes service-link variable this is (`exporter-http`), or None."""
    for name_shape, value_shape in _SERVICE_LINKS:
        match = name_shape.fullmatch(name)
        if match and value_shape.fullmatch(value):
            return match["service"].lower().replace("_", "-")
    return None


def _check_env() -> None:
    """Refuse unknown EXPORTER_* variables (typos), but not Kubernetes service links; name a collision's cause."""
    known = {env_name(f) for f in Settings.model_fields} | {CONFIG_ENV}
    for name in sorted(os.environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        service = service_link(name, os.environ[name])
        if name.upper() in known and service is not None:
            raise ConfigError(
                name,
                f"holds {os.environ[name]!r}, the service-link variable Kubernetes injects for the Service "
                f"{service!r} in this namespace; set enableServiceLinks: false in the pod spec (deploy/ does) "
                "or rename that Service",
            )
        if name.upper() not in known and service is None:
            raise ConfigError(name, "unknown setting (see docs/settings.md for the list)")


def load(config_file: str | None = None) -> Settings:
    """Settings from the environment over the YAML file; ConfigError (one line, naming the field) if invalid."""
    _check_env()
    path = config_file or os.environ.get(CONFIG_ENV)
    file_values = _read_yaml(path) if path else {}
    for key in file_values:
        if key not in Settings.model_fields:
            raise ConfigError(f"{path}: {key}", "unknown setting (see docs/settings.md for the list)")
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
