"""Lineage and report columns (migration 0004) on every engine, and the upgrade of an older database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from shipyard.registry import Registry
from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.migrate import alembic_config
from tests.conftest import register_digits, registry_on_every_engine

registry = registry_on_every_engine()


def test_lineage_and_report_round_trip(registry: Registry) -> None:
    register_digits(registry)
    lineage = {
        "parent": "digits:1",
        "method": "dynamic-int8",
        "options": {"per_channel": False},
        "gate": {"passed": False, "forced": True},
    }
    report = {"metric": "accuracy", "candidate": {"size_bytes": 123, "latency_ms": {"p50": 0.1}}}
    register_digits(registry, lineage=lineage, report=report)
    plain, made = registry.version("digits", 1), registry.version("digits", 2)
    assert (plain.lineage, plain.report) == (None, None)
    assert (made.lineage, made.report) == (lineage, report)
    assert made.to_dict()["lineage"] == lineage and made.to_dict()["report"] == report
    assert registry.history("digits")[-1].detail == "dynamic-int8 of digits:1"


def test_an_older_database_is_upgraded_and_keeps_its_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
    engine.dispose()
    with create_engine(url).begin() as conn:
        conn.execute(
            text("INSERT INTO models (id, name, last_version, created_at) VALUES (1, 'm', 1, '2026-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO versions (model_id, number, sha256, size, framework, signature, labels, "
                "\"check\", description, dataset, created_at) VALUES (1, 1, 'ab', 1, 'onnx', "
                "'{\"inputs\": [], \"outputs\": []}', NULL, '{}', '', NULL, '2026-01-01')"
            )
        )
    registry = Registry(url, ArtifactStore(tmp_path / "artifacts"))
    try:
        record = registry.version("m", 1)
        assert (record.number, record.lineage, record.report) == (1, None, None)
    finally:
        registry.close()
