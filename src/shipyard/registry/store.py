"""The registry: named models, their numbered versions, aliases and history.

Knows nothing of serving. Every change is one transaction and one history event; artifacts are written
before their version row, so a crash leaves at worst an unreferenced blob, never a version without bytes.
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from shipyard.config import Settings
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.registry import migrate
from shipyard.registry.artifacts import ArtifactStore
from shipyard.registry.records import DatasetInfo, Event, ModelSummary, VersionRecord
from shipyard.registry.tables import AliasRow, EventRow, ModelRow, VersionRow, utcnow
from shipyard.signature import Signature

# matched whole (fullmatch): `re.match(r"^...$")` also accepts a trailing newline ("digits\n")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
RESERVED_ALIASES = {"latest"}
PRODUCTION = "production"
ALIAS_CHANGES = {"alias", "restore", "deploy", "rollback"}


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split `NAME[:VERSION|ALIAS]` into its name and the optional version part."""
    name, sep, version = ref.partition(":")
    if not name or (sep and not version):
        raise InvalidInput(f"bad model reference {ref!r}: expected NAME or NAME:VERSION")
    return name, version or None


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Registry:
    def __init__(self, url: str, artifacts: ArtifactStore, actor: str | None = None) -> None:
        self.url = url
        self.artifacts = artifacts
        self.actor = actor or _current_user()
        self.engine = _make_engine(url)
        migrate.upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: Settings) -> Registry:
        """The registry the settings point at, creating SHIPYARD_HOME on first use."""
        settings.home_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.registry_url, ArtifactStore(settings.artifacts_dir))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- writing ---------------------------------------------------------------------------

    def register(
        self,
        name: str,
        onnx_bytes: bytes,
        *,
        signature: Signature,
        framework: str,
        check: dict[str, Any],
        labels: list[str] | None = None,
        description: str = "",
        dataset: DatasetInfo | None = None,
        lineage: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Store the artifact and add it as the next version of `name` (creating the model)."""
        if not NAME.fullmatch(name):
            raise InvalidInput(f"bad model name {name!r}: use letters, digits, '_', '-' and '.', up to 128")
        _check_labels(labels, signature)
        sha = self.artifacts.put(onnx_bytes)
        for _attempt in range(5):
            try:
                with self._session() as session:
                    model = session.scalar(select(ModelRow).where(ModelRow.name == name))
                    if model is None:
                        model = ModelRow(name=name, last_version=0, created_at=utcnow())
                        session.add(model)
                    model.last_version += 1
                    session.flush()
                    row = VersionRow(
                        model_id=model.id,
                        number=model.last_version,
                        sha256=sha,
                        size=len(onnx_bytes),
                        framework=framework,
                        signature=signature.to_dict(),
                        labels=labels,
                        check=check,
                        description=description,
                        dataset=dataset.to_dict() if dataset else None,
                        lineage=lineage,
                        report=report,
                        created_at=utcnow(),
                    )
                    session.add(row)
                    session.flush()
                    made = f"from {framework}"
                    if lineage and "method" in lineage and "parent" in lineage:
                        made = f"{lineage['method']} of {lineage['parent']}"
                    self._event(session, name, "created", row.number, detail=made)
                    return _record(name, row, ())
            except IntegrityError:
                continue  # another writer took the same number or name: try again
        raise Conflict(f"could not add a version of {name!r}: too many concurrent writers")

    def set_alias(
        self,
        name: str,
        version: int,
        alias: str,
        *,
        kind: str = "alias",
        reason: str = "",
        actor: str | None = None,
    ) -> int | None:
        """Point `alias` at `version`; returns the version it pointed at before."""
        if not ALIAS.fullmatch(alias) or alias in RESERVED_ALIASES:
            raise InvalidInput(
                f"bad alias {alias!r}: start with a letter; letters, digits, '_' and '-'; "
                f"not {', '.join(sorted(RESERVED_ALIASES))}"
            )
        with self._session() as session:
            model = self._model_row(session, name)
            if version not in {v.number for v in model.versions}:
                raise NotFound(f"model {name!r} has no version {version}")
            row = session.get(AliasRow, (model.id, alias))
            before = row.version if row else None
            if row is None:
                session.add(AliasRow(model_id=model.id, name=alias, version=version))
            else:
                row.version, row.updated_at = version, utcnow()
            self._event(
                session, name, kind, version, from_version=before, detail=alias, reason=reason, actor=actor
            )
            return before

    def set_reference(self, name: str, version: int, profile: dict[str, Any], source: str) -> None:
        """Store the reference profile live traffic of `version` is compared with (replacing any)."""
        with self._session() as session:
            model = self._model_row(session, name)
            row = next((v for v in model.versions if v.number == version), None)
            if row is None:
                raise NotFound(f"model {name!r} has no version {version}")
            row.reference = profile
            self._event(session, name, "reference", version, detail=source)

    def configure(self, name: str, serving: dict[str, Any]) -> dict[str, Any]:
        """Merge serving settings into the model's (a None value removes one); returns the result."""
        with self._session() as session:
            model = self._model_row(session, name)
            merged = {**(model.serving or {}), **serving}
            model.serving = {k: v for k, v in merged.items() if v is not None}
            detail = ", ".join(f"{k}={v}" for k, v in sorted(serving.items()))
            self._event(session, name, "configure", None, detail=detail)
            return dict(model.serving)

    def restore(self, name: str, version: int) -> int | None:
        """Make an earlier version the production one again."""
        return self.set_alias(name, version, PRODUCTION, kind="restore")

    def record(
        self, name: str, kind: str, version: int | None, reason: str, actor: str | None = None
    ) -> None:
        """Add an event that changes nothing else (e.g. a server failing to load a version)."""
        with self._session() as session:
            self._event(session, name, kind, version, reason=reason, actor=actor)

    def check_deploy(
        self, name: str, version: int, *, force: bool = False, alias: str = PRODUCTION
    ) -> VersionRecord:
        """The version `deploy` would serve; Conflict when its inputs differ from the current one's."""
        target = self.version(name, version)
        current = self.model(name).aliases.get(alias)
        if current is not None and current != version and not force:
            problem = input_difference(self.version(name, current).signature, target.signature)
            if problem:
                raise Conflict(
                    f"{name}:{version} cannot replace {name}:{current}: {problem} (--force deploys anyway)"
                )
        return target

    def deploy(
        self,
        name: str,
        version: int,
        *,
        force: bool = False,
        reason: str = "",
        alias: str = PRODUCTION,
        actor: str | None = None,
    ) -> int | None:
        """Point `alias` (production) at `version`; refused when its inputs differ from the current's."""
        self.check_deploy(name, version, force=force, alias=alias)
        return self.set_alias(name, version, alias, kind="deploy", reason=reason, actor=actor)

    def rollback_target(self, name: str, *, alias: str = PRODUCTION) -> tuple[int, int]:
        """(current, previous): the version `alias` pointed at before its last change."""
        current = self.model(name).aliases.get(alias)
        changes = [e for e in self.history(name) if e.detail == alias and e.kind in ALIAS_CHANGES]
        if current is None or not changes or changes[-1].from_version is None:
            raise Conflict(f"{name} has no earlier {alias} version to roll back to")
        previous = changes[-1].from_version
        if previous not in self.model(name).versions:
            raise Conflict(f"{name}: the previous {alias} version {previous} has been deleted")
        return current, previous

    def rollback(
        self, name: str, *, reason: str = "", alias: str = PRODUCTION, actor: str | None = None
    ) -> tuple[int, int]:
        """`alias` goes back to the version it pointed at before its last change; returns (from, to)."""
        current, previous = self.rollback_target(name, alias=alias)
        self.set_alias(name, previous, alias, kind="rollback", reason=reason, actor=actor)
        return current, previous

    def delete(self, name: str, version: int | None = None) -> list[int]:
        """Delete one version (and aliases pointing at it) or the whole model; returns the numbers."""
        with self._session() as session:
            model = self._model_row(session, name)
            if version is None:
                doomed = list(model.versions)
            else:
                doomed = [v for v in model.versions if v.number == version]
                if not doomed:
                    raise NotFound(f"model {name!r} has no version {version}")
            shas = {v.sha256 for v in doomed}
            numbers = [v.number for v in doomed]
            if version is None:
                session.delete(model)
                self._event(session, name, "deleted", None, detail="model and all versions")
            else:
                for alias in [a for a in model.aliases if a.version == version]:
                    session.delete(alias)
                session.delete(doomed[0])
                self._event(session, name, "deleted", version)
            session.flush()
            still_used = set(session.scalars(select(VersionRow.sha256).where(VersionRow.sha256.in_(shas))))
        for sha in shas - still_used:
            self.artifacts.delete(sha)
        return numbers

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

    # -- reading ---------------------------------------------------------------------------

    def models(self) -> list[ModelSummary]:
        with self._session() as session:
            rows = session.scalars(
                select(ModelRow)
                .options(selectinload(ModelRow.versions), selectinload(ModelRow.aliases))
                .order_by(ModelRow.name)
            )
            return [_summary(row) for row in rows]

    def model(self, name: str) -> ModelSummary:
        with self._session() as session:
            return _summary(self._model_row(session, name))

    def version(self, name: str, version: int | str | None = None) -> VersionRecord:
        """A version by number, alias or 'latest'; None means the default (production, else latest)."""
        with self._session() as session:
            model = self._model_row(session, name)
            summary = _summary(model)
            number = _resolve(summary, version)
            row = next(v for v in model.versions if v.number == number)
            aliases = tuple(sorted(a for a, v in summary.aliases.items() if v == number))
            return _record(name, row, aliases)

    def versions(self, name: str) -> list[VersionRecord]:
        with self._session() as session:
            model = self._model_row(session, name)
            summary = _summary(model)
            return [
                _record(
                    name,
                    row,
                    tuple(sorted(a for a, v in summary.aliases.items() if v == row.number)),
                )
                for row in model.versions
            ]

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
        return self.artifacts.get(record.sha256)

    def export(self, name: str, version: int | str | None, path: Path) -> VersionRecord:
        """Write the version's .onnx to `path` atomically."""
        record = self.version(name, version)
        data = self.artifact(record)
        path = path.expanduser()
        if path.is_dir():
            path = path / f"{record.model}-{record.number}.onnx"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return record

    def _model_row(self, session: Session, name: str) -> ModelRow:
        model = session.scalar(
            select(ModelRow)
            .where(ModelRow.name == name)
            .options(selectinload(ModelRow.versions), selectinload(ModelRow.aliases))
        )
        if model is None:
            raise NotFound(f"no model named {name!r}")
        return model


def input_difference(serving: Signature, candidate: Signature) -> str | None:
    """What makes requests for `serving` invalid for `candidate`, naming the tensor; None if nothing."""
    theirs = {spec.name: spec for spec in candidate.inputs}
    for spec in serving.inputs:
        other = theirs.pop(spec.name, None)
        if other is None:
            return f"input {spec.name!r} is gone"
        if other.datatype != spec.datatype:
            return f"input {spec.name!r} changes datatype {spec.datatype} -> {other.datatype}"
        if len(other.shape) != len(spec.shape) or any(
            a != b and -1 not in (a, b) for a, b in zip(spec.shape, other.shape, strict=True)
        ):
            return f"input {spec.name!r} changes shape {list(spec.shape)} -> {list(other.shape)}"
    if theirs:
        return f"new required input {next(iter(theirs))!r}"
    return None


def _resolve(summary: ModelSummary, version: int | str | None) -> int:
    if version is None:
        number = summary.default_version
    elif isinstance(version, int) or str(version).isdigit():
        number = int(version)
        if number not in summary.versions:
            raise NotFound(f"model {summary.name!r} has no version {number}")
    elif version == "latest":
        number = summary.latest
    elif version in summary.aliases:
        number = summary.aliases[version]
    else:
        raise NotFound(f"model {summary.name!r} has no version or alias {version!r}")
    if number is None:
        raise NotFound(f"model {summary.name!r} has no versions")
    return number


def _check_labels(labels: list[str] | None, signature: Signature) -> None:
    if labels is None or signature.scores is None:
        return
    spec = signature.output(signature.scores.output)
    classes = spec.shape[-1] if spec and spec.shape else -1
    if classes > 0 and len(labels) != classes:
        raise InvalidInput(f"{len(labels)} labels given, but the model scores {classes} classes")


def _summary(row: ModelRow) -> ModelSummary:
    return ModelSummary(
        name=row.name,
        versions=tuple(v.number for v in row.versions),
        aliases={a.name: a.version for a in row.aliases},
        created_at=row.created_at,
        serving=dict(row.serving or {}),
    )


def _record(name: str, row: VersionRow, aliases: tuple[str, ...]) -> VersionRecord:
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


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
