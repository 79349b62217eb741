"""The Argo Rollouts / Flagger evaluator the example tests rely on: it must not accept what it cannot evaluate."""

from __future__ import annotations

import pytest

from tests.support.controllers import argo_measurement, condition, flagger_hook, json_path, substitute


def test_conditions_and_json_paths() -> None:
    assert condition('result == "pass"', "pass") and not condition('result == "pass"', "fail")
    assert condition(
        'result.verdict != "fail" && result.canary.requests == 5', {"verdict": "pass", "canary": {"requests": 5}}
    )
    assert condition('result == "a" || result == "b"', "b")
    assert json_path("{$.canary.version}", {"canary": {"version": "v2"}}) == "v2"
    assert substitute("x={{args.a}}&y={{ args.b-c }}", {"a": "1", "b-c": "2"}) == "x=1&y=2"
    with pytest.raises(ValueError):
        condition("len(result) > 0", "pass")
    with pytest.raises(ValueError):
        json_path("$.verdict", {})
    with pytest.raises(KeyError):
        substitute("{{args.missing}}", {})


def test_measurements_and_hooks() -> None:
    metric = {"successCondition": 'result == "pass"', "failureCondition": 'result == "fail"',
              "provider": {"web": {"jsonPath": "{$.verdict}"}}}  # fmt: skip
    assert argo_measurement(metric, 200, b'{"verdict": "pass"}') == "Successful"
    assert argo_measurement(metric, 200, b'{"verdict": "fail"}') == "Failed"
    assert argo_measurement(metric, 200, b'{"verdict": "inconclusive"}') == "Inconclusive"
    assert argo_measurement(metric, 503, b"could not analyse") == "Error"
    assert [flagger_hook("rollout", s) for s in (200, 412, 503)] == ["ok", "failed", "failed"]
    assert [flagger_hook("confirm-promotion", s) for s in (200, 202, 412)] == ["open", "waiting", "waiting"]


@pytest.mark.parametrize(
    ("conditions", "verdict", "expected"),
    [
        ({"successCondition": 'result == "pass"', "failureCondition": 'result != "pass"'}, "pass", "Successful"),
        # both evaluated, failure wins even when success also holds
        ({"successCondition": 'result == "pass"', "failureCondition": 'result == "pass"'}, "pass", "Failed"),
        ({"successCondition": 'result == "pass"', "failureCondition": 'result == "fail"'}, "x", "Inconclusive"),
        ({"successCondition": 'result == "pass"'}, "inconclusive", "Failed"),  # not Inconclusive
        ({"successCondition": 'result == "pass"'}, "pass", "Successful"),
        ({"failureCondition": 'result == "fail"'}, "inconclusive", "Successful"),
        ({"failureCondition": 'result == "fail"'}, "fail", "Failed"),
        ({}, "fail", "Successful"),
    ],
)
def test_argo_conditions_as_argo_evaluates_them(conditions: dict[str, str], verdict: str, expected: str) -> None:
    metric = {**conditions, "provider": {"web": {"jsonPath": "{$.verdict}"}}}
    assert argo_measurement(metric, 200, f'{{"verdict": "{verdict}"}}'.encode()) == expected
    assert argo_measurement(metric, 404, b"not found") == "Error"
