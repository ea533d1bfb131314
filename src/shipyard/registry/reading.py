"""Reading the registry: models, versions (by number, alias or 'latest'), history and artifacts."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from shipyard.errors import InvalidInput, NotFound
from shipyard.registry import tempfiles
from shipyard.registry.base import RegistryBase
from shipyard.registry.records import DatasetInfo, Event, ModelSummary, VersionRecord
from shipyard.registry.tables import EventRow, ModelRow, VersionRow
from shipyard.signature import Signature


class ReadingMixin(RegistryBase):
    def models(self) -> list[ModelSummary]:
        with self._session() as session:
            rows = session.scalars(
                select(ModelRow)
                .where(ModelRow.deleted_at.is_(None))
                .options(selectinload(ModelRow.versions), selectinload(ModelRow.aliases))
                .order_by(ModelRow.name)
            )
            return [summary(row) for row in rows]

    def model(self, name: str) -> ModelSummary:
        with self._session() as session:
            return summary(self._model_row(session, name))

    def version(self, name: str, version: int | str | None = None) -> VersionRecord:
        """A version by number, alias or 'latest'; None means the default (production, else latest)."""
        with self._session() as session:
            model = self._model_row(session, name)
            number = resolve(summary(model), version)
            row = next(v for v in model.versions if v.number == number)
            return record(name, row, aliases_of(model, number))

    def versions(self, name: str) -> list[VersionRecord]:
        with self._session() as session:
            model = self._model_row(session, name)
            return [record(name, row, aliases_of(model, row.number)) for row in model.versions]

    def history(self, name: str) -> list[Event]:
        with self._session() as session:
            rows = session.scalars(select(EventRow).where(EventRow.model == name).order_by(EventRow.id)).all()
            if not rows:
                raise NotFound(f"no model named {name!r} and no history for it")
            return [
                Event(r.model, r.kind, r.version, r.from_version, r.actor, r.detail, r.created_at, r.reason)
                for r in rows
            ]

    def artifact(self, record: VersionRecord) -> bytes:
        """The version's ONNX bytes, refused when they no longer match their hash."""
        return self.artifacts.get(record.sha256, record.ref)

    def export(self, name: str, version: int | str | None, path: Path) -> VersionRecord:
        """Write the version's .onnx to `path` atomically."""
        record = self.version(name, version)
        data = self.artifact(record)
        path = path.expanduser()
        if path.is_dir():
            path = path / f"{record.model}-{record.number}.onnx"
        try:  # its folder made, as other writers of files here do (batch outputs, k8s render)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfiles.mkstemp(path.parent)
        except OSError as exc:
            raise InvalidInput(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o666 & ~_umask())  # as any file the user writes, not mkstemp's 0600
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return record


def resolve(model: ModelSummary, version: int | str | None) -> int:
    """The version number `version` (number, alias, 'latest' or None for the default) stands for."""
    if version is None:
        number = model.default_version
    elif isinstance(version, int) or str(version).isdigit():
        number = int(version)
        if number not in model.versions:
            raise NotFound(f"model {model.name!r} has no version {number}")
    elif version == "latest":
        number = model.latest
    elif version in model.aliases:
        number = model.aliases[version]
    else:
        raise NotFound(f"model {model.name!r} has no version or alias {version!r}")
    if number is None:
        raise NotFound(f"model {model.name!r} has no versions")
    return number


def aliases_of(model: ModelRow, number: int) -> tuple[str, ...]:
    return tuple(sorted(a.name for a in model.aliases if a.version == number))


def summary(row: ModelRow) -> ModelSummary:
    return ModelSummary(
        name=row.name,
        versions=tuple(v.number for v in row.versions),
        aliases={a.name: a.version for a in row.aliases},
        created_at=row.created_at,
        splits={a.name: dict(a.split) for a in row.aliases if a.split},
        shadows={a.name: a.shadow for a in row.aliases if a.shadow is not None},
        serving=dict(row.serving or {}),
    )


def record(name: str, row: VersionRow, aliases: tuple[str, ...]) -> VersionRecord:
    return VersionRecord(
        model=name,
        number=row.number,
        sha256=row.sha256,
        size=row.size,
        framework=row.framework,
        signature=Signature.from_dict(row.signature),
        labels=row.labels,
        check=row.check,
        description=row.description,
        dataset=DatasetInfo(**row.dataset) if row.dataset else None,
        created_at=row.created_at,
        aliases=aliases,
        lineage=row.lineage,
        report=row.report,
        reference=row.reference,
    )


def _umask() -> int:
    """The process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
