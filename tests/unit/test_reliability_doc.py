"""docs/reliability.md stays in step with the suite: every test it cites exists."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_test_named_in_the_reliability_table_exists() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text()
    cited = re.findall(r"`((?:unit|integration)/test_\w+\.py)(?:::(\w+))?", doc)
    assert len(cited) >= 20
    for path, name in cited:
        source = (ROOT / "tests" / path).read_text()
        if name:
            prefix = name.rstrip("_").removesuffix("*")
            assert re.search(rf"def {re.escape(prefix)}", source), f"{path}::{name} is cited but does not exist"
