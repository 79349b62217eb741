"""Log redaction: secret values never leave the process through structlog or stdlib logging."""

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
