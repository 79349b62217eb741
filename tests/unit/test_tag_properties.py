"""Property tests for tags: what the exporter accepts or builds is exactly what Datadog keeps.

`datadog_normalise` restates Datadog's documented tag rules (lower case; characters other than
letters, digits, _ - : . / become _; must start with a letter; at most 200 characters) independently
of the exporter's validator."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from exporter.config import Settings
from exporter.sink.datadog import tags_for

ALLOWED = set(string.ascii_lowercase + string.digits + "_-:./")


def datadog_normalise(tag: str) -> str:
    out = "".join(c if c in ALLOWED else "_" for c in tag.lower())[:200]
    return out.lstrip("".join(ALLOWED - set(string.ascii_lowercase)))


TAGS = st.one_of(
    st.text(max_size=210),
    st.text(alphabet=string.ascii_letters + string.digits + "_-:./ ,é", min_size=1, max_size=205),
)
DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


@given(tag=TAGS)
def test_a_tag_is_accepted_exactly_when_datadog_would_keep_it_unchanged(tag: str) -> None:
    if "," in tag or not tag.strip() or tag != tag.strip():
        return  # commas separate tags and blanks are trimmed in EXPORTER_TAGS: not single tags
    try:
        Settings(tags=[tag])
    except ValidationError:
        assert datadog_normalise(tag) != tag
    else:
        assert datadog_normalise(tag) == tag


@given(namespace=DNS_LABEL, name=DNS_LABEL)
def test_tags_built_from_kubernetes_names_are_kept_as_they_are(namespace: str, name: str) -> None:
    for tag in tags_for(namespace=namespace, service=name, extra=["env:prod"]):
        assert datadog_normalise(tag) == tag


@pytest.mark.parametrize("tag", ["env:prod", "kube_cluster_name:eks-1", "team/a.b-c_d"])
def test_ordinary_tags_are_accepted(tag: str) -> None:
    assert Settings(tags=[tag]).tags == [tag]
