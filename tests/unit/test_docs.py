"""The docs stay true to the code: README is an entry point that links every page, every setting and
every metric is documented, and every relative link between the pages resolves."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.config import Settings, env_name
from exporter.export.selfmetrics import SelfMetrics, register_leadership
from exporter.model import METRICS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_readme_is_an_entry_point_with_the_two_commands_first() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(readme) <= 200
    first_screen = "\n".join(readme[:30])
    assert "make demo" in first_screen and "make test" in first_screen


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {Path(m).name for m in LINK.findall(readme) if m.startswith("docs/")}
    assert {p.name for p in DOCS.glob("*.md")} <= linked


def test_every_relative_link_resolves() -> None:
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_every_setting_is_documented() -> None:
    settings = text("settings.md")
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in settings]
    assert not missing


def test_every_datadog_metric_is_documented() -> None:
    metrics = text("metrics.md")
    assert [m for m in METRICS.values() if f"`{m}`" not in metrics] == []


def test_every_self_metric_is_documented() -> None:
    metrics = SelfMetrics()
    register_leadership(metrics.registry, lambda: "leader")
    names = {family.name for family in metrics.registry.collect()}  # counters without their _total
    documented = text("metrics.md") + text("commands.md")
    # the standard collectors are documented as `process_*` and `python_info`
    ours = {n for n in names if not n.startswith(("process_", "python_"))}
    assert "`process_*`" in documented and "`python_info`" in documented
    assert ours and [n for n in sorted(ours) if n not in documented] == []
