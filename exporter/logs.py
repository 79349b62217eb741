"""Structured logging: structlog on stderr (JSON lines, or a human-readable console rendering on a
terminal), stdlib logs routed through the same processors, and the one redactor every printed line passes
(logs, tracebacks, CLI output): it masks structurally (the userinfo of anything shaped like a URL, the
value of credential headers) so even a one-character password is safe, and also every known secret value
with its escaped, `repr` and base64 forms."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"


# `scheme://user:password@host` or `user:password@host` (no scheme): the userinfo goes whole.
# A password may hold a raw '@': the userinfo runs to the last '@' before the host.
_USERINFO = re.compile(r"(?P<pre>(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//|\b)(?P<info>[^\s/@'\"<>]+:[^\s/'\"<>]*)@(?=[^\s@])")
# A credential header as it appears in a message: `Authorization: Bearer x`, `'DD-API-KEY': 'x'`; the
# configured headers (EXPORTER_PROMETHEUS_HEADERS) join these names (Redactor.set).
_HEADER_NAMES = ("authorization", "proxy-authorization", "dd-api-key", "dd-application-key", "x-api-key", "cookie")


def _header_pattern(names: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(
        sorted((re.escape(n) for n in {*_HEADER_NAMES, *(n.lower() for n in names)}), key=len)[::-1]
    )
    return re.compile(rf"(?P<name>\b(?:{alternatives})['\"]?\s*[:=]\s*['\"]?)(?P<value>[^'\",}}\n]+)", re.IGNORECASE)


# A credential scheme's token (`Bearer x`, `Basic x`), or what follows the word `token` when it looks
# like one (a digit in it, or 20 characters and more): "the continue token repeats" stays readable.
_TOKEN = re.compile(
    r"(?P<name>\b(?:bearer|basic)\s+)(?P<value>[^\s'\",}]+)"
    r"|(?P<name2>\btoken\s+)(?P<value2>(?=[^\s'\",}]*[0-9])[^\s'\",}]+|[^\s'\",}]{20,})",
    re.IGNORECASE,
)
_HEADER_VALUE = re.compile(r"(?P<name>header value[^:]*:\s*|Invalid header value\s*)(?P<value>.+)", re.IGNORECASE)


def mask_userinfo(text: str) -> str:
    """`text` with the userinfo of every URL-shaped part replaced: never shows a password, however short."""
    return _USERINFO.sub(lambda m: f"{m['pre']}{REDACTED}@", text)


def _forms(secret: str) -> set[str]:
    """The ways a secret can reach text: itself, escaped (JSON, repr), base64 (Basic auth)."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], secret.encode("unicode_escape").decode()}
    forms.add(base64.b64encode(secret.encode()).decode())
    return forms


class Redactor:
    """structlog processor replacing secret values in every string of an event (nested values too)."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._header = _header_pattern(())
        self.secrets: list[str] = []
        """Every form of every known secret, longest first."""

    def set(self, secrets: Iterable[str], *, headers: Iterable[str] = ()) -> None:
        """Redact these secrets, and the value of these headers wherever one shows, however short."""
        self._known = set(secrets)
        self._header = _header_pattern(headers)
        self._forms()

    def add(self, *secrets: str) -> None:
        """Also redact these (e.g. a bearer token read from a kubeconfig)."""
        self._known.update(secrets)
        self._forms()

    def _forms(self) -> None:
        # Longest first, so a secret that contains another is removed whole. Values under 4 characters
        # would redact ordinary words: those are protected by the structural masks alone. Forms are built
        # from the secrets themselves, never from earlier forms (which would grow without bound).
        forms = {f for s in self._known for f in _forms(s)}
        self.secrets = sorted({s for s in forms if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            if "@" in value:
                value = mask_userinfo(value)
            for pattern in (_HEADER_VALUE, self._header, _TOKEN):
                value = pattern.sub(lambda m: f"{m['name'] or m.groupdict().get('name2')}{REDACTED}", value)
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
        return {k: self.scrub(v) for k, v in event.items()}


redactor = Redactor()
console = False  # True when configure() chose the human-readable renderer


class _Stderr:
    """A structlog logger writing each line to the current sys.stderr (which tests may swap)."""

    def msg(self, message: str) -> None:
        # One write per line: print() writes the newline apart, and lines of two threads would interleave.
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

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
    """`url` without its userinfo, for messages."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        return urlunsplit(parts._replace(netloc=f"{REDACTED}@{parts.netloc.rsplit('@', 1)[1]}"))
    except ValueError:
        return mask_userinfo(url)


def configure(
    *,
    level: str = "info",
    secrets: Iterable[str] = (),
    headers: Iterable[str] = (),
    fmt: str = "json",
    colours: bool = False,
) -> bool:
    """Configure structlog and the stdlib root logger once, at start-up; True when the console renderer is used.

    `fmt`: `json`, `console`, or `auto` (console when stderr is a terminal, JSON otherwise); `colours`
    only for the console renderer (the caller honours NO_COLOR).
    """
    import structlog  # here, not at import: the CLI wraps its streams before it knows its command

    global console
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    redactor.set(secrets, headers=headers)
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
