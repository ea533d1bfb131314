"""Scoped tokens stored hashed, on a real database: SQLite, and PostgreSQL when configured."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from sqlalchemy import create_engine, text

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.registry import ArtifactStore, Registry, TokenRecord
from shipyard.registry.tokens import SCOPES, hash_token
from tests.conftest import migrated_down_and_up, registry_on_every_engine

registry = registry_on_every_engine()


def stored_rows(registry: Registry) -> list[str]:
    """Every tokens row as text, read past the registry, to see what is really on disk."""
    engine = create_engine(registry.url)
    try:
        with engine.connect() as conn:
            return [repr(tuple(row)) for row in conn.execute(text("SELECT * FROM tokens"))]
    finally:
        engine.dispose()


def test_create_returns_the_secret_once_and_stores_only_its_hash(registry: Registry) -> None:
    record, secret = registry.create_token(
        "ci", ["read", "predict"], models=["digits"], rate_per_s=100, burst=200
    )
    assert secret.startswith("shp_") and len(secret) > 40
    assert record == TokenRecord(
        name="ci",
        scopes=("predict", "read"),
        models=("digits",),
        rate_per_s=100.0,
        burst=200,
        sha256=hash_token(secret),
        created_at=record.created_at,
    )
    assert record.created_at.tzinfo is not None
    (row,) = stored_rows(registry)
    assert secret not in row and secret[4:] not in row
    assert hash_token(secret) in row
    assert registry.tokens() == [record]


def test_every_secret_differs_and_defaults_mean_everything(registry: Registry) -> None:
    a, secret_a = registry.create_token("a", ["predict"])
    b, secret_b = registry.create_token("b", SCOPES)
    assert secret_a != secret_b and a.sha256 != b.sha256
    assert (a.models, a.rate_per_s, a.burst) == (None, None, None)
    assert b.scopes == SCOPES
    assert [t.name for t in registry.tokens()] == ["a", "b"]


def test_revoked_tokens_are_not_listed_and_free_their_name(registry: Registry) -> None:
    first, _ = registry.create_token("ci", ["predict"])
    with pytest.raises(Conflict, match="a token named 'ci' exists"):
        registry.create_token("ci", ["read"])
    assert registry.revoke_token("ci") == first
    assert registry.tokens() == []
    with pytest.raises(NotFound, match="no active token named 'ci'"):
        registry.revoke_token("ci")
    second, _ = registry.create_token("ci", ["read"])
    assert registry.tokens() == [second] and second.sha256 != first.sha256
    assert len(stored_rows(registry)) == 2  # the revoked one is kept as a record


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "ci", "scopes": ["predict", "write"]}, "unknown scope 'write'"),
        ({"name": "ci", "scopes": []}, "at least one scope"),
        ({"name": "ci\n", "scopes": ["predict"]}, "bad token name"),
        ({"name": "has space", "scopes": ["predict"]}, "bad token name"),
        ({"name": "ci", "scopes": ["predict"], "models": ["digits\n"]}, "bad model name"),
        ({"name": "ci", "scopes": ["predict"], "models": []}, "at least one model"),
        ({"name": "ci", "scopes": ["predict"], "rate_per_s": 0}, "bad rate"),
        ({"name": "ci", "scopes": ["predict"], "rate_per_s": float("nan")}, "bad rate"),
        ({"name": "ci", "scopes": ["predict"], "burst": 5}, "a burst needs a rate"),
        ({"name": "ci", "scopes": ["predict"], "rate_per_s": 1, "burst": 0}, "bad burst"),
    ],
)
def test_bad_tokens_are_refused(registry: Registry, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        registry.create_token(**kwargs)  # type: ignore[arg-type]
    assert registry.tokens() == []


def test_one_of_two_racing_creates_of_a_name_wins(registry: Registry) -> None:
    others = [Registry(registry.url, ArtifactStore(registry.artifacts.root)) for _ in range(2)]
    start = Barrier(2)

    def create(reg: Registry) -> str:
        start.wait(timeout=30)
        try:
            reg.create_token("ci", ["predict"])
        except Conflict:
            return "conflict"
        return "created"

    try:
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(create, others))
    finally:
        for other in others:
            other.close()
    assert outcomes == ["conflict", "created"]
    assert len(registry.tokens()) == 1


def test_the_tokens_migration_goes_down_and_up_again(registry: Registry) -> None:
    registry.create_token("ci", ["predict"])
    again = migrated_down_and_up(registry, "0005")
    try:
        assert again.tokens() == []
        again.create_token("ci", ["predict"])
    finally:
        again.close()
