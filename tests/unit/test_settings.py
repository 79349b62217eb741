"""Settings: defaults, YAML under environment, one-line errors naming the field, secrets never shown."""

from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import Settings, env_name, load
from exporter.errors import ConfigError

SECRET = "dd-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)


def test_defaults_are_the_documented_contract() -> None:
    s = load()
    assert s.prometheus_url == "http://prometheus.istio-system:9090"
    assert s.dd_site == "datadoghq.com" and s.datadog_base_url == "https://api.datadoghq.com"
    assert s.label_selector == "migrated=true" and s.namespaces is None
    assert (s.interval_seconds, s.rate_window, s.tags, s.http_port) == (30.0, "5m", [], 8000)


def test_environment_wins_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "prometheus_url: http://thanos:9090\ninterval_seconds: 10\ntags: [env:prod]\ndd_site: datadoghq.eu\n"
    )
    monkeypatch.setenv("EXPORTER_CONFIG", str(cfg))
    monkeypatch.setenv("EXPORTER_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("EXPORTER_NAMESPACES", "shop, payments")
    monkeypatch.setenv("EXPORTER_PROMETHEUS_HEADERS", "X-Scope-OrgID=team-a,Authorization=Bearer tok")
    s = load()
    assert s.prometheus_url == "http://thanos:9090" and s.interval_seconds == 5.0
    assert s.tags == ["env:prod"] and s.dd_site == "datadoghq.eu"
    assert s.namespaces == ["shop", "payments"]
    assert s.prometheus_headers == {"X-Scope-OrgID": "team-a", "Authorization": "Bearer tok"}
    assert "Bearer tok" in s.secrets()


def test_namespaces_all_means_every_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_NAMESPACES", "all")
    assert load().namespaces is None


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"EXPORTER_INTERVAL_SECONDS": "0"}, "EXPORTER_INTERVAL_SECONDS"),
        ({"EXPORTER_INTERVAL_SECONDS": "-3"}, "EXPORTER_INTERVAL_SECONDS"),
        ({"EXPORTER_PROMETHEUS_URL": "prometheus:9090"}, "EXPORTER_PROMETHEUS_URL"),
        ({"EXPORTER_DATADOG_URL": "ftp://x"}, "EXPORTER_DATADOG_URL"),
        ({"EXPORTER_TAGS": "env:prod,Not A Tag"}, "EXPORTER_TAGS"),
        ({"EXPORTER_TAGS": "a" * 201}, "EXPORTER_TAGS"),
        ({"EXPORTER_PROMETHEUS_HEADERS": "X-Scope-OrgID"}, "EXPORTER_PROMETHEUS_HEADERS"),
        ({"EXPORTER_RATE_WINDOW": "5 minutes"}, "EXPORTER_RATE_WINDOW"),
        ({"EXPORTER_HTTP_PORT": "70000"}, "EXPORTER_HTTP_PORT"),
        ({"EXPORTER_NAMESPACES": "Shop"}, "EXPORTER_NAMESPACES"),
        ({"EXPORTER_LABEL_SELECTOR": " "}, "EXPORTER_LABEL_SELECTOR"),
        ({"EXPORTER_LABEL_SELECTOR": "migrated in (true"}, "EXPORTER_LABEL_SELECTOR"),
        ({"EXPORTER_LABEL_SELECTOR": "migrated=tr ue"}, "EXPORTER_LABEL_SELECTOR"),
        ({"DD_SITE": "https://datadoghq.eu"}, "DD_SITE"),
        ({"EXPORTER_INTERVALL_SECONDS": "5"}, "EXPORTER_INTERVALL_SECONDS"),
        ({"EXPORTER_CONFIG": "/nonexistent/exporter.yaml"}, "EXPORTER_CONFIG"),
    ],
)
def test_invalid_settings_name_their_field(env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must hold a mapping"), ("a: [\n", "not valid YAML"), ("promethus_url: x\n", "unknown setting")],
)
def test_bad_yaml_files(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(str(cfg))


def test_a_bad_value_from_the_file_names_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interval_seconds: 0\n")
    with pytest.raises(ConfigError) as info:
        load(str(cfg))
    assert info.value.field == f"{cfg}: interval_seconds"


def test_env_names_follow_the_contract() -> None:
    assert env_name("dd_api_key") == "DD_API_KEY" and env_name("kubeconfig") == "KUBECONFIG"
    assert env_name("rate_window") == "EXPORTER_RATE_WINDOW"
    assert {env_name(f) for f in Settings.model_fields} >= {
        "EXPORTER_PROMETHEUS_URL", "EXPORTER_PROMETHEUS_HEADERS", "DD_API_KEY", "DD_APP_KEY", "DD_SITE",
        "EXPORTER_DATADOG_URL", "EXPORTER_LABEL_SELECTOR", "EXPORTER_NAMESPACES", "EXPORTER_INTERVAL_SECONDS",
        "EXPORTER_RATE_WINDOW", "EXPORTER_TAGS", "EXPORTER_HTTP_PORT", "KUBECONFIG",
    }  # fmt: skip


def test_secrets_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_API_KEY", SECRET)
    monkeypatch.setenv("DD_APP_KEY", SECRET + "app")
    s = load()
    assert SECRET not in repr(s) and SECRET not in str(s.effective())
    assert s.effective()["dd_api_key"] == "<set>"


def test_cli_config_error_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DD_API_KEY", SECRET)
    monkeypatch.setenv("EXPORTER_TAGS", "Bad Tag")
    assert main(["once"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("exporter: config error: EXPORTER_TAGS:")
    assert SECRET not in err


def test_submit_without_api_key_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["once", "--submit"]) == 2
    assert "DD_API_KEY: required" in capsys.readouterr().err


def test_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["once", "--at", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "argument --at: not RFC 3339 or unix seconds" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("prefix", ["istio", "istio.mesh", "istio.mesh.exporter"])
def test_a_prefix_inside_the_istio_integrations_namespace_is_refused(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """istio.mesh.* is what the Datadog Istio integration emits: our names there would mix with its metrics."""
    monkeypatch.setenv("EXPORTER_METRIC_PREFIX", prefix)
    with pytest.raises(ConfigError, match=r"EXPORTER_METRIC_PREFIX.*Istio integration"):
        load()
    monkeypatch.setenv("EXPORTER_METRIC_PREFIX", "istio.meshexporter")  # a sibling name is fine
    assert load().metric_prefix == "istio.meshexporter"
