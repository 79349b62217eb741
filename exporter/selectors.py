"""Kubernetes names and label selectors: the API server's grammar and error messages, parsed and matched.

`dns_label`, `dns_1035_label` and `dns_subdomain` are the one place the exporter checks object names
(namespaces, Services, VirtualServices, Deployments, the Lease, URL hosts' labels).

The exporter validates EXPORTER_LABEL_SELECTOR with it at start-up (so a typo fails fast with the
message the API server would give), and the sandbox Kubernetes API uses it to serve `labelSelector`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


class LabelSelectorError(ValueError):
    """A label selector that the API server would refuse with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    """One comma-separated term of a label selector."""

    key: str
    operator: str  # "=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "==" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                try:
                    number = int(value) if value is not None else None
                except ValueError:
                    return False
                if number is None:
                    return False
                bound = int(self.values[0])
                return number > bound if self.operator == "gt" else number < bound
        return False


_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SPECIAL = "!=,()<> \t\n"


def dns_label(name: str) -> bool:
    """An RFC 1123 label (a namespace's name): lower-case letters, digits and '-', at most 63."""
    return len(name) <= 63 and bool(_DNS_LABEL_RE.match(name))


def dns_1035_label(name: str) -> bool:
    """An RFC 1035 label (a Service's name): a DNS-1123 label that starts with a letter."""
    return len(name) <= 63 and bool(_DNS_1035_RE.match(name))


def dns_subdomain(name: str) -> bool:
    """An RFC 1123 subdomain (most objects' names: Deployments, VirtualServices, Leases), at most 253."""
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN_RE.match(name))


def _validate_label_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    problems = []
    if slash and not dns_subdomain(prefix):
        problems.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        problems.append(
            "name part must consist of at most 63 alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    if problems:
        raise LabelSelectorError(f'unable to parse requirement: key: Invalid value: "{key}": ' + "; ".join(problems))


def _validate_label_value(key: str, value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
        raise LabelSelectorError(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": a valid label must be '
            "an empty string or consist of at most 63 alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )


def _lex(text: str) -> list[str]:
    """Tokens of a selector: operators, parentheses, commas and identifiers (no whitespace)."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\n":
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif ch in "!=,()<>":
            tokens.append(ch)
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def _is_ident(token: str | None) -> bool:
    return token is not None and token not in ("==", "!=", "!", "=", ",", "(", ")", "<", ">")


class _SelectorParser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    @staticmethod
    def fail(found: str | None, expected: str) -> LabelSelectorError:
        return LabelSelectorError(f"unable to parse requirement: found '{found or ''}', expected: {expected}")

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        if self.peek() is None:
            return requirements
        while True:
            token = self.peek()
            if not (_is_ident(token) or token == "!"):
                raise self.fail(token, "!, identifier, or 'end of string'")
            requirements.append(self.requirement())
            token = self.take()
            if token is None:
                return requirements
            if token != ",":
                raise self.fail(token, "',' or 'end of string'")
            following = self.peek()
            if not (_is_ident(following) or following == "!"):
                raise self.fail(following, "identifier after ','")

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not _is_ident(key):
            raise self.fail(key, "identifier")
        assert key is not None
        _validate_label_key(key)
        if negated:
            return Requirement(key, "!")
        if self.peek() in (None, ","):
            return Requirement(key, "exists")
        op = self.take()
        if op in ("in", "notin"):
            assert op is not None
            values = self.value_list()
            if not values:
                raise LabelSelectorError(
                    "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty"
                )
        elif op in ("=", "==", "!=", "<", ">"):
            assert op is not None
            values = (self.exact_value(),)
            if op in ("<", ">"):
                try:
                    int(values[0])
                except ValueError:
                    raise LabelSelectorError(
                        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"
                    ) from None
                op = "gt" if op == ">" else "lt"
        else:
            raise self.fail(op, "=, ==, !=, in, notin, >, <")
        for value in values:
            _validate_label_value(key, value)
        return Requirement(key, op, tuple(sorted(set(values))))

    def exact_value(self) -> str:
        if self.peek() in (None, ","):
            return ""
        token = self.take()
        if not _is_ident(token):
            raise self.fail(token, "identifier")
        assert token is not None
        return token

    def value_list(self) -> tuple[str, ...]:
        token = self.take()
        if token != "(":
            raise self.fail(token, "'('")
        values: list[str] = []
        expect_value = True
        while True:
            token = self.take()
            if token == ")":
                if expect_value and values:
                    values.append("")
                return tuple(values)
            if token == ",":
                if expect_value:
                    values.append("")
                expect_value = True
            elif _is_ident(token) and expect_value:
                assert token is not None
                values.append(token)
                expect_value = False
            else:
                raise self.fail(token, "',', ')' or identifier")


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse a `labelSelector` query value; raises `LabelSelectorError` where the API server says 400."""
    return _SelectorParser(text).parse()
