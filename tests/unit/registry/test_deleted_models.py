"""A deleted model is gone for every reader, yet its version numbers are never given again (migration
0007): importing the name again goes on from the last number, and the history stays whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from shipyard.config import Settings
from shipyard.errors import NotFound
from shipyard.registry import Registry
from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.migrate import alembic_config
from tests.conftest import (
    ENGINES,
    POSTGRES_URL,
    empty_postgres,
    migrated_down_and_up,
    open_registry,
    register_digits,
    registry_on_every_engine,
)

registry = registry_on_every_engine()


def test_an_import_after_a_whole_model_delete_goes_on_numbering(registry: Registry) -> None:
    register_digits(registry)
    register_digits(registry)
    registry.set_alias("digits", 2, "production")
    registry.configure("digits", {"max_batch_size": 64})
    assert registry.delete("digits") == [1, 2]
    assert register_digits(registry).number == 3
    model = registry.model("digits")
    assert (model.versions, model.aliases, model.serving) == ((3,), {}, {})  # nothing of before
    assert [v.number for v in registry.versions("digits")] == [3]
    with pytest.raises(NotFound, match="no version 1"):
        registry.version("digits", 1)
    events = [(e.kind, e.version) for e in registry.history("digits")]
    assert events == [
        ("created", 1),
        ("created", 2),
        ("alias", 2),
        ("configure", None),
        ("deleted", None),
        ("created", 3),
    ]


def test_a_deleted_model_is_gone_for_every_reader(registry: Registry) -> None:
    register_digits(registry)
    register_digits(registry, name="other")
    registry.delete("digits")
    assert [m.name for m in registry.models()] == ["other"]
    for read in (
        lambda: registry.model("digits"),
        lambda: registry.version("digits"),
        lambda: registry.versions("digits"),
        lambda: registry.delete("digits"),
        lambda: registry.set_alias("digits", 1, "production"),
        lambda: registry.configure("digits", {"instances": 2}),
    ):
        with pytest.raises(NotFound, match="no model named 'digits'"):
            read()
    assert registry.history("digits")[-1].kind == "deleted"  # what happened to it stays readable


@pytest.mark.parametrize("engine", ENGINES)
def test_a_database_at_0006_with_models_is_upgraded(engine: str, tmp_path: Path) -> None:
    url = POSTGRES_URL if engine == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    assert url is not None
    if engine == "postgresql":
        empty_postgres(url)
    old = create_engine(url)
    config = alembic_config()
    with old.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006")
        conn.execute(
            text(
                "INSERT INTO models (id, name, last_version, created_at) "
                "VALUES (1, 'digits', 2, '2026-01-01'), (2, 'other', 1, '2026-01-01')"
            )
        )
        for model, number in ((1, 2), (2, 1)):
            conn.execute(
                text(
                    "INSERT INTO versions (model_id, number, sha256, size, framework, signature, labels, "
                    '"check", description, dataset, created_at) VALUES (:model, :number, :sha, 1, '
                    "'onnx', '{\"inputs\": [], \"outputs\": []}', NULL, '{}', '', NULL, '2026-01-01')"
                ),
                {"model": model, "number": number, "sha": "ab" * 32},
            )
    old.dispose()
    registry = Registry(url, ArtifactStore(tmp_path / "artifacts"))
    try:
        assert [(m.name, m.versions) for m in registry.models()] == [("digits", (2,)), ("other", (1,))]
        registry.delete("digits")
        assert [m.name for m in registry.models()] == ["other"]
        assert register_digits(registry).number == 3
    finally:
        registry.close()


def test_going_down_from_0007_drops_the_deleted_models_only(settings: Settings) -> None:
    registry = open_registry(settings)
    register_digits(registry)
    register_digits(registry, name="other")
    registry.delete("digits")
    again = migrated_down_and_up(registry, "0006")
    try:
        assert [m.name for m in again.models()] == ["other"]
        assert register_digits(again).number == 1  # the schema before 0007 could not remember it
    finally:
        again.close()
