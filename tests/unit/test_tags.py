"""The one tag builder: Datadog's Kubernetes and Unified Service Tagging tags, by the precedence table of
docs/metrics.md (lowest first: DD_TAGS, EXPORTER_TAGS, DD_ENV/DD_CLUSTER_NAME, the Service's labels, the
identity tags), and the Agent-like DD_* settings it reads."""

from __future__ import annotations

import pytest

from exporter.config import Settings, load
from exporter.model import ServiceRef
from exporter.sink.datadog import global_tags, tags_for


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")):
            monkeypatch.delenv(name)


def test_agent_variables_are_read_like_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_TAGS", "team:mesh  Owner:SRE,region:eu-west-1")  # spaces or commas, any case
    monkeypatch.setenv("DD_ENV", "Prod")
    monkeypatch.setenv("DD_CLUSTER_NAME", "eks-prod-1")
    settings = load()
    assert settings.dd_tags == ["team:mesh", "owner:sre", "region:eu-west-1"]
    assert global_tags(settings) == (
        "team:mesh",
        "owner:sre",
        "region:eu-west-1",
        "env:prod",
        "kube_cluster_name:eks-prod-1",
    )


@pytest.mark.parametrize(
    ("name", "value", "field", "normalised"),
    [
        ("DD_TAGS", "team:mesh 9lives", "dd_tags", ["team:mesh", "lives"]),
        ("DD_TAGS", "team:a+b,team:x@y Owner:SRE", "dd_tags", ["team:a_b", "team:x_y", "owner:sre"]),
        ("DD_TAGS", "team:a++b__", "dd_tags", ["team:a_b"]),
        ("DD_ENV", "Prod Env", "dd_env", "prod_env"),
        ("DD_CLUSTER_NAME", "eks#1", "dd_cluster_name", "eks_1"),
    ],
)
def test_agent_variables_are_normalised_as_datadog_does_with_one_warning(
    name: str, value: str, field: str, normalised: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the Agent does with these: lower case, characters Datadog refuses turned to `_`, leading
    # non-letters dropped. A crash loop over a tag would be worse than a renamed tag.
    monkeypatch.setenv(name, value)
    settings = load()
    assert getattr(settings, field) == normalised
    assert len(settings.notes()) == 1 and settings.notes()[0].startswith("Datadog tags normalised")


def test_agent_variables_that_need_no_change_but_case_give_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_TAGS", "Team:Mesh")
    monkeypatch.setenv("DD_ENV", "Prod")
    settings = load()
    assert settings.dd_tags == ["team:mesh"] and settings.dd_env == "prod" and settings.notes() == []


def test_global_layers_replace_keys_of_lower_layers_only() -> None:
    settings = Settings(
        dd_tags=["env:dev", "team:mesh", "team:sre", "bare"],
        tags=["team:platform", "kube_cluster_name:typed"],
        dd_env="prod",
        dd_cluster_name="eks-1",
    )
    # DD_TAGS' two team values go (EXPORTER_TAGS sets team), env:dev goes (DD_ENV), kube_cluster_name:typed
    # goes (DD_CLUSTER_NAME); a tag without a key stays
    assert set(global_tags(settings)) == {"bare", "team:platform", "env:prod", "kube_cluster_name:eks-1"}
    # several values of one key in the same layer all stay
    assert set(global_tags(Settings(dd_tags=["team:a", "team:b"]))) == {"team:a", "team:b"}


def test_service_without_labels_keeps_service_and_gets_kube_tags() -> None:
    got = tags_for(namespace="shop", service="cart", extra=("env:prod", "kube_cluster_name:eks-1"))
    assert sorted(got) == sorted(
        ["env:prod", "kube_cluster_name:eks-1", "service:cart", "kube_service:cart", "kube_namespace:shop"]
    )


def test_service_labels_win_over_the_globals_and_identity_wins_over_everything() -> None:
    labels = (("env", "staging"), ("service", "Checkout-App"), ("version", "1.4.2"))
    extra = ("env:prod", "service:from-dd-tags", "version:0.9", "kube_service:typo", "kube_namespace:typo", "t:x")
    got = tags_for(namespace="shop", service="cart", labels=labels, extra=extra)
    assert sorted(got) == sorted(
        ["t:x", "env:staging", "service:checkout-app", "version:1.4.2", "kube_service:cart", "kube_namespace:shop"]
    )


def test_only_some_labels_fall_back_for_the_rest() -> None:
    got = tags_for(namespace="payments", service="api", labels=(("version", "2"),), extra=("env:prod",))
    assert sorted(got) == sorted(
        ["env:prod", "service:api", "version:2", "kube_service:api", "kube_namespace:payments"]
    )


def test_namespace_and_mesh_tags_carry_no_service() -> None:
    assert tags_for(namespace="shop", extra=("env:prod",)) == ("env:prod", "kube_namespace:shop")
    assert tags_for(extra=("env:prod", "team:a")) == ("env:prod", "team:a")


def test_labels_are_no_part_of_a_services_identity() -> None:
    plain, labelled = ServiceRef("shop", "cart"), ServiceRef("shop", "cart", labels=(("env", "prod"),))
    assert plain == labelled and hash(plain) == hash(labelled) and {plain: 1}[labelled] == 1


def test_the_normalisation_warning_is_logged_once_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    monkeypatch.setenv("DD_TAGS", "team:a+b")
    monkeypatch.setenv("EXPORTER_LOG_FORMAT", "json")
    assert main(["rules"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "Datadog tags normalised" in line]
    assert len(warnings) == 1 and '"level": "warning"' in warnings[0] and "team:a+b" in warnings[0]
