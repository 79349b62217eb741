"""docs/reliability.md and docs/exit-codes.md stay in step with the suite: every test they cite exists,
with every parameter cited (`test_x[case]`, and the `…[case]` shorthand for the test cited last)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# `unit/test_x.py`, `tests/unit/test_x.py::test_y`, `…::test_y[case]`, `…::test_413_*`; or the shorthand `…[case]`
CITATION = re.compile(
    r"`(?:tests/)?(?P<path>(?:unit|integration)/test_\w+\.py)(?:::(?P<name>\w+\*?)(?:\[(?P<param>[^\]`]+)\])?)?`"
    r"|`…\[(?P<short>[^\]`]+)\]`"
)


def citations(doc: str) -> list[tuple[str, str, str]]:
    """(path, test name, parameter) of every citation, shorthands resolved to the test cited before them."""
    out: list[tuple[str, str, str]] = []
    last: tuple[str, str] | None = None
    for m in CITATION.finditer(doc):
        if m["short"] is not None:
            assert last is not None, f"…[{m['short']}] cites no earlier test"
            out.append((*last, m["short"]))
            continue
        out.append((m["path"], m["name"] or "", m["param"] or ""))
        if m["name"] and m["param"]:
            last = (m["path"], m["name"])
    return out


@pytest.mark.parametrize(("page", "least"), [("reliability.md", 40), ("exit-codes.md", 5)])
def test_every_test_a_doc_cites_exists(page: str, least: int) -> None:
    cited = citations((ROOT / "docs" / page).read_text())
    assert len(cited) >= least
    for path, name, param in cited:
        source = (ROOT / "tests" / path).read_text()
        if name:
            prefix = name.rstrip("_").removesuffix("*")
            assert re.search(rf"def {re.escape(prefix)}", source), f"{path}::{name} is cited but does not exist"
        if param:  # a parameter id: a case's name, written as a string in the test module
            assert f'"{param}"' in source, f"{path}::{name}[{param}] is cited but no such case exists"


def test_the_shorthand_resolves_to_the_test_cited_before_it() -> None:
    doc = "`integration/test_a.py::test_b[one]` then `…[two]`; `unit/test_c.py` alone does not reset it: `…[3]`"
    assert citations(doc) == [
        ("integration/test_a.py", "test_b", "one"),
        ("integration/test_a.py", "test_b", "two"),
        ("unit/test_c.py", "", ""),
        ("integration/test_a.py", "test_b", "3"),
    ]
