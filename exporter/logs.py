"""Structured logging: structlog on stderr (JSON lines, or a human-readable console rendering on a
terminal), stdlib logs routed through the same processors, and a redaction processor that removes every
known secret value wherever it appears (tracebacks too)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog

REDACTED = "<redacted>"


class Redactor:
    """structlog processor replacing secret values in every string of an event (nested values too)."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def set(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is removed whole. Very short values would
        # redact ordinary words; keys and tokens are never that short.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, *secrets: str) -> None:
        """Also redact these (e.g. a bearer token read from a kubeconfig)."""
        self.set([*self.secrets, *secrets])

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event
        return {k: self.scrub(v) for k, v in event.items()}


redactor = Redactor()
console = False  # True when configure() chose the human-readable renderer


class _Stderr:
    """A structlog logger writing each line to the current sys.stderr (which tests may swap)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A logging handler bound to the current sys.stderr rather than the one at start-up."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class RedactingStream:
    """Wraps stdout/stderr so that nothing the process prints can carry a known secret."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redactor.scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def display_url(url: str) -> str:
    """`url` with any password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def configure(*, level: str = "info", secrets: Iterable[str] = (), fmt: str = "json", colours: bool = False) -> bool:
    """Configure structlog and the stdlib root logger once, at start-up; True when the console renderer is used.

    `fmt`: `json`, `console`, or `auto` (console when stderr is a terminal, JSON otherwise); `colours`
    only for the console renderer (the caller honours NO_COLOR).
    """
    global console
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    redactor.set(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = structlog.dev.ConsoleRenderer(colors=colours) if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *args: _Stderr(),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    return console
