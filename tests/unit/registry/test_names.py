"""Names users type are matched whole: a trailing newline makes no second 'digits' or 'prod'."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shipyard.config import ModelServing, Settings
from shipyard.errors import InvalidInput
from shipyard.registry import Registry
from tests.conftest import register_digits, registry_on_every_engine

registry = registry_on_every_engine()


@pytest.mark.parametrize("name", ["digits\n", "digits\r\n", "\ndigits", "digits\n\n", ""])
def test_model_names_with_line_breaks_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidInput, match="bad model name"):
        register_digits(registry, name=name)
    assert registry.models() == []


@pytest.mark.parametrize("alias", ["prod\n", "production\n", "latest"])
def test_aliases_with_line_breaks_are_refused(registry: Registry, alias: str) -> None:
    register_digits(registry)
    with pytest.raises(InvalidInput, match="bad alias"):
        registry.set_alias("digits", 1, alias)
    with pytest.raises(InvalidInput, match="bad alias"):
        registry.deploy("digits", 1, alias=alias)
    assert registry.model("digits").aliases == {}


def test_good_names_still_pass(registry: Registry) -> None:
    assert register_digits(registry, name="digits-v2.1_x").model == "digits-v2.1_x"
    assert registry.set_alias("digits-v2.1_x", 1, "prod-2") is None


@pytest.mark.parametrize("policy", ["all\n", "latest 2\n", "specific 1,3\n", "latest 2 "])
def test_version_policies_are_matched_whole(policy: str) -> None:
    with pytest.raises(ValidationError, match="no version policy"):
        ModelServing(versions=policy)
    assert ModelServing(versions=policy.strip()).versions == policy.strip()


def test_the_served_alias_setting_is_matched_whole() -> None:
    with pytest.raises(ValidationError):
        Settings(alias="prod\n")
    assert Settings(alias="prod").alias == "prod"


def test_an_exported_file_follows_the_users_umask(tmp_path: Path) -> None:
    import os

    registry = Registry.open(Settings(home=tmp_path / "home"))
    register_digits(registry)
    old = os.umask(0o022)
    try:
        registry.export("digits", 1, tmp_path / "digits.onnx")
    finally:
        os.umask(old)
        registry.close()
    assert (tmp_path / "digits.onnx").stat().st_mode & 0o777 == 0o644
