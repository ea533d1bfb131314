"""What every part of the registry shares: the database, its two kinds of transaction, the history.

The `Registry` is assembled from one mixin per concept (reading.py, aliases.py, tokens.py, store.py);
each builds on this base and nothing else.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from shipyard.errors import NotFound
from shipyard.registry import migrate
from shipyard.registry.artifacts import Artifacts
from shipyard.registry.database import make_engine, writer
from shipyard.registry.tables import EventRow, ModelRow, utcnow


class RegistryBase:
    def __init__(
        self, url: str, artifacts: Artifacts, actor: str | None = None, scratch: Path | None = None
    ) -> None:
        self.url = url
        self.artifacts = artifacts
        self.actor = actor or _current_user()
        self.scratch = scratch if scratch is not None else artifacts.root.parent / "tmp"
        """Where long work (conversions, optimizations) keeps scratch files: see tempfiles.scratch_dir."""
        self.engine = make_engine(url)
        migrate.upgrade(writer(self.engine))
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(writer(self.engine), expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A transaction that only reads: one consistent view, never waiting for writers."""
        with self._reads.begin() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A transaction that writes: serialised with every other writer (database.py says how)."""
        with self._writes.begin() as session:
            yield session

    def _locked_model(self, session: Session, name: str) -> ModelRow:
        """The model's row, locked until the transaction ends, so its changes go one at a time.

        Locked before anything of the model is read, so what is read next is what the previous
        writer committed (PostgreSQL's read committed takes a fresh snapshot per statement; SQLite's
        writer already holds the database's write lock).
        """
        session.execute(select(ModelRow.id).where(ModelRow.name == name).with_for_update())
        return self._model_row(session, name)

    def _model_row(self, session: Session, name: str) -> ModelRow:
        model = session.scalar(
            select(ModelRow)
            .where(ModelRow.name == name, ModelRow.deleted_at.is_(None))
            .options(selectinload(ModelRow.versions), selectinload(ModelRow.aliases))
        )
        if model is None:
            raise NotFound(f"no model named {name!r}")
        return model

    def _event(
        self,
        session: Session,
        model: str,
        kind: str,
        version: int | None,
        *,
        from_version: int | None = None,
        detail: str = "",
        reason: str = "",
        actor: str | None = None,
    ) -> None:
        session.add(
            EventRow(
                model=model,
                kind=kind,
                version=version,
                from_version=from_version,
                actor=actor or self.actor,
                detail=detail,
                reason=reason,
                created_at=utcnow(),
            )
        )


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
