"""Log redaction: secret values never leave the process through structlog or stdlib logging."""

import base64
import json
import logging

import pytest
import structlog

from exporter import logs

SECRET = "0123456789abcdef-secret"


def test_secrets_are_redacted_in_events_nested_values_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(secrets=[SECRET, "ab"])  # too-short values are not treated as secrets
    log = structlog.get_logger("t")
    log.info("a table", header=f"DD-API-KEY: {SECRET}", nested={"k": [SECRET]})
    try:
        raise RuntimeError(f"request failed with key={SECRET}")
    except RuntimeError:
        log.exception("boom")
    logging.getLogger("urllib3").warning("sending %s", SECRET)
    err = capsys.readouterr().err
    assert SECRET not in err
    events = [json.loads(line) for line in err.splitlines()]
    assert events[0]["header"] == "DD-API-KEY: <redacted>" and events[0]["nested"] == {"k": ["<redacted>"]}
    assert "RuntimeError: request failed with key=<redacted>" in events[1]["exception"]
    assert events[2]["event"] == "sending <redacted>" and events[2]["logger"] == "urllib3"
    assert events[0]["event"] == "a table"  # short values untouched


@pytest.mark.parametrize(
    "text",
    [
        "not an http(s) URL: 'u:Zq~@prometheus:9090'",
        "ftp://u:Zq~@prometheus:9090/x",
        "http//u:Zq~@prometheus:9090",
        "GET https://user:Zq~@thanos.example:443/api/v1/query failed",
        "{'url': 'http://u:Zq~@h'}",
    ],
)
def test_url_userinfo_is_masked_structurally_however_short(text: str) -> None:
    logs.redactor.set([])  # nothing known: the structure alone must hide it
    masked = logs.redactor.scrub(text)
    assert "Zq~" not in masked and logs.REDACTED in masked


@pytest.mark.parametrize(
    "text",
    [
        "Invalid header value b'Bearer ab\\r\\nX'",
        "headers={'Authorization': 'Bearer ab', 'Accept': 'json'}",
        "DD-API-KEY: ab",
        '"dd-api-key": "ab"',
    ],
)
def test_credential_header_values_are_masked_structurally(text: str) -> None:
    logs.redactor.set([])
    masked = logs.redactor.scrub(text)
    assert "ab" not in masked.replace("Invalid header value", "").replace("Accept", "").replace("json", "")


def test_known_secrets_are_masked_in_their_escaped_repr_and_base64_forms() -> None:
    secret = 'key"with\\odd\tchars-0123'
    userinfo = "exporter:Zq~pw"
    logs.redactor.set([secret, userinfo])
    texts = [
        json.dumps({"error": secret}),
        repr(secret),
        "Authorization: Basic " + base64.b64encode(userinfo.encode()).decode(),
        "upstream said: " + base64.b64encode(userinfo.encode()).decode(),
    ]
    for text in texts:
        masked = logs.redactor.scrub(text)
        assert "0123" not in masked and base64.b64encode(userinfo.encode()).decode() not in masked, masked
    logs.redactor.set([])


def test_adding_secrets_again_and_again_keeps_the_forms_bounded() -> None:
    redactor = logs.Redactor()
    redactor.set(["first-secret-value"])
    for _ in range(50):  # every Kubernetes client built in a process adds its token again
        redactor.add("kube-token-abcdef")
    assert len(redactor.secrets) <= 2 * 5  # five forms of each secret at most
    assert redactor.scrub("x first-secret-value y kube-token-abcdef") == "x <redacted> y <redacted>"


def _settings_redactor(**env: str) -> logs.Redactor:
    """A redactor set up from settings exactly as the CLI does (exporter.cli.main)."""
    from exporter.config import Settings

    settings = Settings(**env)  # type: ignore[arg-type]
    redactor = logs.Redactor()
    redactor.set(settings.secrets(), headers=settings.prometheus_headers)
    return redactor


def test_a_percent_encoded_url_password_is_masked_as_sent_and_in_basic_auth() -> None:
    redactor = _settings_redactor(prometheus_url="http://user:p%40ss%2Fw0rd@thanos:9090")
    basic = base64.b64encode(b"user:p@ss/w0rd").decode()  # what Basic auth puts on the wire
    assert basic == "dXNlcjpwQHNzL3cwcmQ="
    for leak in ("p@ss/w0rd", basic, "p%40ss%2Fw0rd", base64.b64encode(b"user:p%40ss%2Fw0rd").decode()):
        shown = redactor.scrub(f"upstream said: {leak} (Authorization rejected)")
        assert leak not in shown and "<redacted>" in shown, leak


def test_a_raw_at_sign_in_a_password_never_partly_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = logs.mask_userinfo("GET http://user:p@ss@thanos:9090/api failed")
    assert shown == "GET http://<redacted>@thanos:9090/api failed"
    # and such a URL is refused at load, asking for %40, without echoing it
    from exporter.config import load
    from exporter.errors import ConfigError

    monkeypatch.setenv("EXPORTER_PROMETHEUS_URL", "http://user:p@ss@thanos:9090")
    with pytest.raises(ConfigError) as info:
        load()
    assert "%40" in str(info.value) and "ss" not in str(info.value).replace("password", "")


def test_every_configured_header_value_is_masked_however_short() -> None:
    redactor = _settings_redactor(prometheus_headers="X-Auth-Token=abc,X-Scope-OrgID=t1")
    for text in ("'X-Auth-Token': 'abc'", "X-Auth-Token: abc", "x-scope-orgid=t1"):
        shown = redactor.scrub(f"request headers {{{text}}}")
        assert "abc" not in shown and "t1" not in shown and "<redacted>" in shown, text


@pytest.mark.parametrize(
    "text",
    [
        "list Services: malformed answer: the continue token repeats",
        "the token for tenant shop is missing",
        "no token given",
    ],
)
def test_the_word_token_in_a_message_is_not_a_secret(text: str) -> None:
    assert logs.Redactor().scrub(text) == text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("refused token eyJhbGciOiJIUzI1NiJ9abc", "eyJhbGciOiJIUzI1NiJ9abc"),
        ("token a1b2c3", "a1b2c3"),
        ("Authorization: Bearer xyz", "xyz"),
        ("Basic dTpw", "dTpw"),
    ],
)
def test_real_tokens_are_masked(text: str, secret: str) -> None:
    assert secret not in logs.Redactor().scrub(text)
