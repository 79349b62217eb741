"""The shipped example configuration loads, and documents every setting with its variable."""

from pathlib import Path

import pytest

from exporter.config import Settings, env_name, load

EXAMPLE = Path(__file__).parents[2] / "config" / "exporter.yaml"


def test_example_config_is_valid_and_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("EXPORTER_", "DD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    assert load(str(EXAMPLE)) == load()


def test_example_config_names_every_setting_and_its_variable() -> None:
    text = EXAMPLE.read_text()
    for field in Settings.model_fields:
        if field in ("dd_api_key", "dd_app_key", "kubeconfig"):
            continue  # secrets and cluster access come from the environment only
        assert f"{field}:" in text or field == "spool_dir", field
        assert env_name(field) in text, field
