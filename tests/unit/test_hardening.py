"""Bad input caught where it enters: settings, flags, spool entries, Kubernetes answers, Datadog
delivery surprises, non-finite samples. Each case of issue 11 that needs no upstream lives here."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from exporter.config import load
from exporter.errors import ConfigError, SubmitError
from exporter.export.delivery import Delivery
from exporter.query.figures import figures_from, non_finite_figures
from exporter.query.prometheus import timeout_param, vector_by
from exporter.retry import RetryPolicy
from exporter.sink.backlog import Backlog, Spool
from exporter.sink.datadog import DatadogSink, Point, SubmitStats

NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)


# ----------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXPORTER_PROMETHEUS_URL", "user:pw@prometheus:9090"),
        ("EXPORTER_PROMETHEUS_URL", "ftp://user:pw@prometheus:9090"),
        ("EXPORTER_PROMETHEUS_URL", "http//user:pw@prometheus:9090"),
        ("EXPORTER_DATADOG_URL", "user:pw@intake:443"),
        ("EXPORTER_PROMETHEUS_URL", "http://user:pw@prometheus:0"),
        ("EXPORTER_PROMETHEUS_URL", "http://user:pw@prometheus:70000"),
        ("EXPORTER_PROMETHEUS_URL", "http://user:pw@prometheus:abc"),
        ("EXPORTER_PROMETHEUS_URL", "http://user:pw@:9090"),
    ],
)
def test_a_bad_url_is_refused_without_echoing_its_password(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value).startswith(f"{name}: ")
    assert "pw" not in str(info.value) and "user" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXPORTER_INTERVAL_SECONDS", "inf"),
        ("EXPORTER_INTERVAL_SECONDS", "nan"),
        ("EXPORTER_INTERVAL_SECONDS", "1e308"),
        ("EXPORTER_DISCOVERY_INTERVAL_SECONDS", "inf"),
        ("EXPORTER_LEASE_DURATION_SECONDS", "1e308"),
        ("EXPORTER_PROMETHEUS_TIMEOUT_SECONDS", "1e-5"),
        ("EXPORTER_PROMETHEUS_TIMEOUT_SECONDS", "1000000"),
        ("EXPORTER_PROMETHEUS_TIMEOUT_SECONDS", "inf"),
        ("EXPORTER_RATE_WINDOW", "0s"),
        ("EXPORTER_REPORT_WINDOW", "99999999999999999999y"),
        ("EXPORTER_LEASE_NAME", "Not_A_Name"),
        ("EXPORTER_BACKLOG_MAX_POINTS", "1e400"),
        ("EXPORTER_PROMETHEUS_MAX_ANSWER_BYTES", "10"),
        ("EXPORTER_CANARY_API_STEP_SECONDS", "1e308"),  # was accepted, then every request answered 500
        ("EXPORTER_CANARY_API_DEADLINE_SECONDS", "1e308"),
        ("EXPORTER_INTERVAL_SECONDS", "0.001"),  # 567 list requests/s
        ("EXPORTER_INTERVAL_SECONDS", "0.5"),  # the same whole-second instant measured twice
        ("EXPORTER_INTERVAL_SECONDS", "1.5"),  # an irregular grid of whole-second instants
        ("EXPORTER_DISCOVERY_INTERVAL_SECONDS", "0.001"),
        ("EXPORTER_DISCOVERY_INTERVAL_SECONDS", "2.5"),
        ("EXPORTER_REPORT_WINDOW", "367d"),  # one bound for settings and flags: 366 days
        ("EXPORTER_PROMETHEUS_URL", "http://pro metheus:9090"),
        ("EXPORTER_PROMETHEUS_URL", "http://-bad-:9090"),
        ("EXPORTER_PROMETHEUS_URL", "http://a..b:9090"),
        ("EXPORTER_PROMETHEUS_URL", f"http://{'a' * 70}.svc:9090"),
        ("EXPORTER_PROMETHEUS_URL", "http://999.1.1.1:9090"),
        ("EXPORTER_PROMETHEUS_URL", "http://prom_etheus:9090"),
        ("EXPORTER_DATADOG_URL", "https://api..datadoghq.com"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value).startswith(f"{name}: ")


def test_a_fractional_timeout_is_sent_as_whole_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_PROMETHEUS_TIMEOUT_SECONDS", "2.5")
    assert timeout_param(load().prometheus_timeout_seconds) == "2500ms"
    assert timeout_param(0.001) == "1ms" and timeout_param(3600) == "3600000ms"


def test_secrets_are_stripped_and_control_characters_refused_without_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DD_API_KEY", "  key-with-newline-0123\n")
    settings = load()
    assert settings.dd_api_key is not None and settings.dd_api_key.get_secret_value() == "key-with-newline-0123"
    monkeypatch.setenv("DD_API_KEY", "key-with\r\ninjected-0123")
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value).startswith("DD_API_KEY: ") and "injected" not in str(info.value)
    monkeypatch.delenv("DD_API_KEY")
    monkeypatch.setenv("EXPORTER_PROMETHEUS_HEADERS", "Authorization=Bearer tok\rX-Evil: 1")
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value).startswith("EXPORTER_PROMETHEUS_HEADERS: ") and "tok" not in str(info.value)


def test_a_spool_dir_that_is_a_file_and_a_non_utf8_config_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "f"
    afile.write_text("x")
    monkeypatch.setenv("EXPORTER_SPOOL_DIR", str(afile))
    with pytest.raises(ConfigError, match=r"^EXPORTER_SPOOL_DIR: "):
        load()
    monkeypatch.delenv("EXPORTER_SPOOL_DIR")
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"interval_seconds: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^EXPORTER_CONFIG: .* not UTF-8"):
        load(str(cfg))


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus.istio-system:9090",
        "http://prometheus.istio-system.svc.cluster.local.:9090",
        "http://10.0.0.1:9090",
        "http://[::1]:9090",
        "https://u:p%40ss@thanos-query.example.com",
        "http://localhost",
    ],
)
def test_valid_hosts_are_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_PROMETHEUS_URL", url)
    assert load().prometheus_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DD_API_KEY", "ключ-0123456789"),
        ("EXPORTER_CANARY_API_TOKEN", "jeton-€-0123"),
        ("EXPORTER_PROMETHEUS_HEADERS", "X-Scope-OrgID=équipe-€"),
        ("EXPORTER_PROMETHEUS_URL", "http://user:%E2%82%AC-0123@prometheus:9090"),
    ],
)
def test_values_an_http_header_cannot_carry_are_refused_naming_the_variable_never_the_value(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load()
    assert str(info.value).startswith(f"{name}: ") and "0123" not in str(info.value) and "€" not in str(info.value)


def test_the_canary_token_is_normalised_like_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTER_CANARY_API_TOKEN", "canary-token-0123\n")  # `echo token | base64` in a Secret
    token = load().canary_api_token
    assert token is not None and token.get_secret_value() == "canary-token-0123"
    for bad in ("canary\x07token-0123", "  \n"):  # a control character; whitespace only (never "no token")
        monkeypatch.setenv("EXPORTER_CANARY_API_TOKEN", bad)
        with pytest.raises(ConfigError) as info:
            load()
        assert str(info.value).startswith("EXPORTER_CANARY_API_TOKEN: ") and "canary" not in str(info.value)


def test_an_unwritable_spool_dir_is_refused_at_start_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["EXPORTER_SPOOL_DIR"] = "/sys/mesh-exporter-spool"  # not even root can write there
    try:
        assert main(["run"]) == 2
    finally:
        del os.environ["EXPORTER_SPOOL_DIR"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("exporter: config error: EXPORTER_SPOOL_DIR: cannot write there")


def test_one_duration_bound_for_settings_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import durations
    from exporter.cli.common import duration_flag

    assert duration_flag("--window", "366d") == durations.MAX_SECONDS == 366 * 86400
    with pytest.raises(ConfigError, match=r"^--window: must be at most 366d"):
        duration_flag("--window", "367d")
    monkeypatch.setenv("EXPORTER_REPORT_WINDOW", "366d")
    assert load().report_window == "366d"
    monkeypatch.setenv("EXPORTER_REPORT_WINDOW", "367d")
    with pytest.raises(ConfigError, match=r"^EXPORTER_REPORT_WINDOW: must be at most 366d"):
        load()


def test_settings_do_not_load_the_query_layer() -> None:
    import subprocess
    import sys

    code = "import sys, exporter.config; print(sorted(m for m in sys.modules if m.startswith('exporter.query')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["once", "--at", "inf"], "--at"),
        (["once", "--at", "nan"], "--at"),
        (["once", "--at", "1e300"], "--at"),
        (["once", "--output", "yaml"], "--output"),
        (["report", "mtls", "--bogus"], "--bogus"),
        (["no-such-command"], "COMMAND"),
        (["rules", "--format", "yaml"], "--format"),
        (["datadog", "setup", "--bogus"], "--bogus"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "Traceback" not in err[0]


def test_a_huge_window_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "mtls", "--window", "99999999999999999999y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--window" in err[0]


# ---------------------------------------------------------------------------------------- the spool
def test_spool_entries_are_validated_on_load_and_bad_ones_set_aside(tmp_path: Path) -> None:
    good = ["istio.service.request_rate", 1.5, int(NOW) - 60, ["service:a"]]
    bad = [
        ["istio.service.request_rate", "NaN", int(NOW) - 60, ["service:a"]],
        ["istio.service.request_rate", 1.0, int(NOW) + 31 * 365 * 86400, ["service:a"]],
        ["istio.service.request_rate", 1.0, int(NOW) - 60, "service:a"],
        ["bad metric!", 1.0, int(NOW) - 60, []],
        ["istio.service.request_rate", True, int(NOW) - 60, []],
        "not a point",
    ]
    text = json.dumps({"format": 1, "points": [good, *bad]}).replace('"NaN"', "NaN")
    text = text.replace('"not a point"', '"not a point", ["istio.service.request_rate", Infinity, 1, []]')
    (tmp_path / "backlog.json").write_text(text)
    backlog = Backlog(clock=lambda: NOW, spool=Spool(tmp_path))
    assert backlog.take() == [Point("istio.service.request_rate", 1.5, int(NOW) - 60, ("service:a",))]
    assert backlog.set_aside == len(bad) + 1
    aside = list(tmp_path.glob("backlog.json.invalid-*"))
    assert len(aside) == 1 and len(json.loads(aside[0].read_text())) == len(bad) + 1


# ---------------------------------------------------------------------------------------- delivery
class Exploding:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    def send_series(self, payload: bytes) -> None:
        self.calls += 1
        raise self.exc

    def send_event(self, event: dict[str, Any]) -> None:
        raise self.exc


def pts(n: int, ts: int = int(NOW) - 60) -> list[Point]:
    return [Point("istio.service.request_rate", float(i), ts, (f"service:s{i}",)) for i in range(n)]


def delivered(delivery: Delivery, points: list[Point]) -> SubmitStats:
    """Queue `points` behind the backlog and wait for the worker's rounds, as a cycle does."""
    delivery.add(points)
    stats = delivery.flush(timeout=10)
    delivery.stop()
    assert stats is not None
    return stats


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("Invalid header value"), KeyError("x")])
def test_any_exception_in_delivery_keeps_the_whole_queue(exc: Exception) -> None:
    backlog = Backlog(clock=lambda: NOW)
    backlog.add(pts(5))
    sink = DatadogSink(Exploding(exc), retry=RetryPolicy(attempts=2, base_wait=0, sleep=lambda s: None))
    stats = delivered(Delivery(sink, backlog), pts(3, ts=int(NOW)))
    assert stats.errors and len(backlog) == 8


def test_delivery_keeps_the_queue_even_when_submit_itself_raises() -> None:
    class Broken(DatadogSink):
        def submit(self, points: Any) -> Any:
            raise AttributeError("a bug")

    backlog = Backlog(clock=lambda: NOW)
    backlog.add(pts(4))
    stats = delivered(Delivery(Broken(Exploding(RuntimeError())), backlog), pts(2, ts=int(NOW)))
    assert len(backlog) == 6 and isinstance(stats.errors[0], SubmitError)


class TooLarge:
    """A Datadog that answers 413 to everything: the worst case for splitting."""

    def __init__(self) -> None:
        self.calls = 0

    def send_series(self, payload: bytes) -> None:
        self.calls += 1
        raise SubmitError("413", status=413)

    def send_event(self, event: dict[str, Any]) -> None: ...


def test_a_413_that_never_clears_costs_a_bounded_number_of_requests() -> None:
    transport = TooLarge()
    sink = DatadogSink(transport, retry=RetryPolicy(attempts=4, base_wait=0, sleep=lambda s: None))
    stats = sink.submit(pts(2000))
    assert transport.calls == stats.requests <= 1 * 4 + sink.split_budget
    # a point refused alone is irreducible and set aside (counted by the daemon); the rest waits for the next cycle
    assert len(stats.failed) + len(stats.rejected) == 2000 and len(stats.rejected) < sink.split_budget


def test_a_single_point_refused_as_too_large_is_set_aside() -> None:
    transport = TooLarge()
    sink = DatadogSink(transport, retry=RetryPolicy(attempts=1, base_wait=0, sleep=lambda s: None))
    stats = sink.submit(pts(1))
    assert stats.rejected == pts(1) and not stats.failed and transport.calls == 1


def _daemon(sink: DatadogSink | None, backlog: Backlog) -> Any:
    from exporter.config import Settings
    from exporter.export.daemon import Daemon
    from exporter.query.prometheus import PrometheusClient

    return Daemon(
        Settings(),
        discovery=None,  # type: ignore[arg-type]
        prom=PrometheusClient("http://127.0.0.1:9"),
        sink=sink,
        backlog=backlog,
        clock=lambda: NOW,
    )


def _sample(daemon: Any, name: str, **labels: str) -> float | None:
    value: float | None = daemon.metrics.registry.get_sample_value(name, labels)
    return value


def test_the_daemon_counts_points_set_aside_as_too_large() -> None:
    daemon = _daemon(DatadogSink(TooLarge(), retry=RetryPolicy(attempts=1, base_wait=0)), Backlog(clock=lambda: NOW))
    assert daemon.delivery is not None
    daemon.delivery.add(pts(1))
    daemon.delivery.flush(timeout=10)
    daemon.delivery.stop()
    assert _sample(daemon, "mesh_exporter_points_dropped_total", reason="too_large") == 1
    assert len(daemon.backlog) == 0  # set aside, not retried forever


def test_the_daemon_counts_points_dropped_when_the_backlog_is_full() -> None:
    daemon = _daemon(None, Backlog(max_points=3, clock=lambda: NOW))
    daemon.backlog.add(pts(5))
    assert _sample(daemon, "mesh_exporter_points_dropped_total", reason="backlog_full") == 2


def test_the_daemon_counts_spool_entries_set_aside(tmp_path: Path) -> None:
    good = ["istio.service.request_rate", 1.0, int(NOW) - 60, ["service:a"]]
    doc = {"format": 1, "points": [good, ["bad name!", 1.0, int(NOW) - 60, []], [good[0], "NaN", 1, []]]}
    (tmp_path / "backlog.json").write_text(json.dumps(doc))
    daemon = _daemon(None, Backlog(clock=lambda: NOW, spool=Spool(tmp_path)))
    assert _sample(daemon, "mesh_exporter_spool_entries_set_aside_total") == 2 and len(daemon.backlog) == 1


def test_unsent_points_stay_until_they_are_an_hour_old_then_are_counted() -> None:
    now = [NOW]
    daemon = _daemon(None, Backlog(clock=lambda: now[0]))
    daemon.backlog.add(pts(2, ts=int(NOW) - 60))
    now[0] = NOW + 3600 - 61  # 59 min 59 s old: still kept
    assert len(daemon.backlog.take()) == 2
    assert not _sample(daemon, "mesh_exporter_points_dropped_total", reason="older_than_datadog_accepts")
    daemon.backlog.add(pts(2, ts=int(NOW) - 60))
    now[0] = NOW + 3600  # over an hour old
    assert daemon.backlog.take() == []
    assert _sample(daemon, "mesh_exporter_points_dropped_total", reason="older_than_datadog_accepts") == 2


# ------------------------------------------------------------------------------- non-finite samples
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_numerator_is_no_figure_never_0_or_100_pct(bad: float) -> None:
    labels = ("destination_service_namespace", "destination_service_name")
    key = {"destination_service_namespace": "shop", "destination_service_name": "cart"}
    other = {"destination_service_namespace": "shop", "destination_service_name": "api"}
    vectors = {
        "requests": vector_by([(key, 10.0), (other, 4.0)], labels, query="q", set_aside_non_finite=True),
        "ok": vector_by([(key, bad), (other, 4.0)], labels, query="q", set_aside_non_finite=True),
        "mtls": vector_by([(key, 10.0), (other, bad)], labels, query="q", set_aside_non_finite=True),
        "p99": vector_by([(key, bad), (other, 12.0)], labels, query="q", set_aside_non_finite=True),
    }
    figures = figures_from(vectors)
    cart, api = figures[("shop", "cart")], figures[("shop", "api")]
    assert cart.request_rate == 10.0 and cart.success_rate_pct is None and cart.p99_latency_ms is None
    assert cart.mtls_coverage_pct == 100.0
    assert api.success_rate_pct == 100.0 and api.mtls_coverage_pct is None and api.p99_latency_ms == 12.0
    assert non_finite_figures(vectors) == {"ok": 1, "mtls": 1, "p99": 1}


def test_non_finite_samples_are_an_error_for_callers_that_cannot_set_them_aside() -> None:
    from exporter.errors import QueryError

    labels = ("destination_service_namespace",)
    with pytest.raises(QueryError) as info:
        vector_by([({"destination_service_namespace": "a"}, math.nan)], labels, query="q")
    assert info.value.kind == "non_finite"  # e.g. the mTLS report: a NaN plaintext rate is never "0, ready"


def test_the_start_up_settings_never_show_a_url_password_however_short() -> None:
    from exporter.config import Settings

    shown = json.dumps(
        Settings(prometheus_url="http://u:Zq~@prometheus:9090", datadog_url="https://a:b@intake").effective()
    )
    assert "Zq~" not in shown and "a:b@" not in shown and "prometheus:9090" in shown


def test_a_clock_that_jumps_years_ahead_costs_a_count_not_a_list_of_every_instant() -> None:
    from prometheus_client import generate_latest

    from exporter.config import Settings
    from exporter.export.daemon import Daemon
    from exporter.query.prometheus import PrometheusClient

    now = [NOW]
    daemon = Daemon(
        Settings(),
        discovery=None,
        prom=PrometheusClient("http://127.0.0.1:9"),
        sink=None,
        clock=lambda: now[0],  # type: ignore[arg-type]
    )
    daemon._cursor = int(NOW)
    now[0] = NOW + 10 * 366 * 86400  # ten years: about ten million 30 s instants
    due = daemon.due()
    assert len(due) <= 3600 // 30 and due == sorted(due) and due[-1] == daemon.instant()
    text = generate_latest(daemon.metrics.registry).decode()
    missed = next(
        line for line in text.splitlines() if line.startswith('mesh_exporter_instants_missed_total{reason="older_than')
    )
    assert float(missed.rsplit(" ", 1)[1]) + len(due) == (daemon.instant() - int(NOW)) // 30
