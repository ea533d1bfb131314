"""Fixtures shared by every layer: a registry in a temporary SHIPYARD_HOME and models built in code."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.config import Settings
from shipyard.registry import Registry, VersionRecord
from shipyard.signature import Scores, Signature, TensorSpec
from tests.models import digits_linear, many_types

DIGITS_SIGNATURE = Signature(
    inputs=(TensorSpec("input", "FP32", (-1, 64)),),
    outputs=(TensorSpec("logits", "FP32", (-1, 10)),),
    scores=Scores("logits", "logits"),
)
LABELS = [str(i) for i in range(10)]

# The CLI under test talks to the server these name when no --server is given: one set in a developer's
# shell must not take the tests' deploys and rollbacks there.
for _name in ("SHIPYARD_SERVER", "SHIPYARD_TOKEN"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="module")
def one_ray_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The modules that start a Ray cluster take turns across pytest-xdist's workers (a lock in the
    folder the workers' temporary folders share): two clusters on 2 cores slowed each other past
    their tests' deadlines (a second replica not up within 90 s)."""
    with (tmp_path_factory.getbasetemp().parent / "ray.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # let go when the file closes
        yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _database_of_this_worker(url: str | None) -> str | None:
    """Under pytest-xdist (make test) each worker empties and fills a database of its own, `test_gw0`
    and so on beside the `test` given, made here the first time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    import psycopg

    base, _, name = url.rpartition("/")
    mine = f"{name}_{worker}"
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (mine,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{mine}"')
    return f"{base}/{mine}"


POSTGRES_URL = _database_of_this_worker(os.environ.get("SHIPYARD_TEST_POSTGRES_URL"))
ENGINES = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="SHIPYARD_TEST_POSTGRES_URL is not set"),
    ),
]


def empty_postgres(url: str) -> None:
    """Drop the registry's tables so each test starts from an empty, freshly migrated schema."""
    from sqlalchemy import create_engine, text

    from shipyard.registry.tables import Base

    tables = ", ".join([*Base.metadata.tables, "alembic_version"])  # every table the migrations make
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {tables} CASCADE"))
    engine.dispose()


def open_registry(settings: Settings, engine: str = "sqlite") -> Registry:
    """A registry on `engine`; PostgreSQL starts from an empty, freshly migrated schema."""
    if engine == "postgresql":
        assert POSTGRES_URL is not None
        empty_postgres(POSTGRES_URL)
        settings = settings.model_copy(update={"database_url": POSTGRES_URL})
    return Registry.open(settings)


def registry_on_every_engine() -> Any:
    """The `registry` fixture of the registry's own tests, once per engine:
    `registry = registry_on_every_engine()` in a test module."""

    @pytest.fixture(params=ENGINES, name="registry")
    def fixture(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Registry]:
        reg = open_registry(settings, request.param)
        yield reg
        reg.close()

    return fixture


def migrated_down_and_up(registry: Registry, revision: str) -> Registry:
    """Close `registry`, take its database down to `revision` and back to head, and reopen it."""
    from alembic import command
    from sqlalchemy import create_engine

    from shipyard.registry.artifacts import ArtifactStore
    from shipyard.registry.migrate import alembic_config

    registry.close()
    engine = create_engine(registry.url)
    config = alembic_config()
    try:
        for target, step in ((revision, command.downgrade), ("head", command.upgrade)):
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                step(config, target)
    finally:
        engine.dispose()
    return Registry(registry.url, ArtifactStore(registry.artifacts.root))


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    """A SQLite registry; the registry's own tests run on every engine (tests/unit/test_registry.py)."""
    reg = open_registry(settings)
    yield reg
    reg.close()


def register_digits(registry: Registry, name: str = "digits", **kwargs: object) -> VersionRecord:
    return registry.register(
        name,
        digits_linear().onnx_bytes,
        signature=DIGITS_SIGNATURE,
        framework="onnx",
        check={"passed": True, "max_abs_diff": None, "tolerance": 0.0, "samples": 1, "source": "test"},
        labels=LABELS,
        **kwargs,  # type: ignore[arg-type]
    )


def register_many_types(registry: Registry) -> VersionRecord:
    import onnx

    from shipyard.convert.check import signature_of

    signature = signature_of(onnx.load_from_string(many_types()))
    return registry.register(
        "types",
        many_types(),
        signature=signature,
        framework="onnx",
        check={"passed": True, "source": "test"},
    )
