"""What Argo Rollouts and Flagger do with an HTTP answer, for the subset the examples in deploy/examples use.

Argo Rollouts' web provider: `{{args.NAME}}` templating, `jsonPath` of the form `{$.a.b}`, and conditions
made of `result` (or `result.a.b`) compared with `==` / `!=` to a string or number literal, joined by
`&&` / `||` (evaluated left to right with && binding tighter, as in expr). Anything else raises, so an
example cannot silently use syntax this evaluator does not understand. A measurement is judged as Argo's
utils/evaluate.EvaluateResult does: both conditions are evaluated and failure wins; with only a
successCondition, not meeting it is Failed; with only a failureCondition, not meeting it is Successful;
with both and neither met, Inconclusive; with neither, Successful. A non-2xx answer is an Error.

Flagger: a `rollout` hook succeeds on any 2xx; a `confirm-*` gate opens only on 200.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}")
_JSONPATH = re.compile(r"^\{\$((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}$")
_COMPARISON = re.compile(r'^(result(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*(==|!=)\s*("(?:[^"\\]|\\.)*"|-?[0-9.]+)$')


def substitute(text: str, args: Mapping[str, str]) -> str:
    """Argo's `{{args.NAME}}` templating; a missing argument raises."""
    return _ARG.sub(lambda m: args[m.group(1)], text)


def json_path(path: str, document: Any) -> Any:
    match = _JSONPATH.match(path.strip())
    if match is None:
        raise ValueError(f"jsonPath outside the supported subset: {path!r}")
    for key in filter(None, match.group(1).split(".")):
        document = document[key]
    return document


def _comparison(text: str, result: Any) -> bool:
    match = _COMPARISON.match(text.strip())
    if match is None:
        raise ValueError(f"condition outside the supported subset: {text!r}")
    value = result
    for key in match.group(1).split(".")[1:]:
        value = value[key]
    literal = json.loads(match.group(3))
    return (value == literal) if match.group(2) == "==" else (value != literal)


def condition(expression: str, result: Any) -> bool:
    """Evaluate `a == "x" && b != "y" || …` on `result`."""
    return any(
        all(_comparison(term, result) for term in alternative.split("&&")) for alternative in expression.split("||")
    )


def argo_measurement(metric: Mapping[str, Any], status: int, body: bytes) -> str:
    """`Successful`, `Failed`, `Inconclusive` or `Error` (a non-2xx answer) for one web measurement."""
    if not 200 <= status < 300:
        return "Error"
    web = metric["provider"]["web"]
    result = json.loads(body)
    if "jsonPath" in web:
        result = json_path(web["jsonPath"], result)
    success = condition(metric["successCondition"], result) if metric.get("successCondition") else None
    failure = condition(metric["failureCondition"], result) if metric.get("failureCondition") else None
    if success is None and failure is None:
        return "Successful"
    if failure is None:
        failure = not success
    if success is None:
        success = not failure
    return "Failed" if failure else "Successful" if success else "Inconclusive"


def flagger_hook(kind: str, status: int) -> str:
    """`ok` or `failed` for a `rollout` hook; `open` or `waiting` for a `confirm-*` gate."""
    if kind == "rollout":
        return "ok" if 200 <= status < 300 else "failed"
    if kind.startswith("confirm-"):
        return "open" if status == 200 else "waiting"
    raise ValueError(f"webhook type the examples should not use: {kind!r}")
