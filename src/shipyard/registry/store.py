"""The registry: named models, their numbered versions, aliases, history, and API tokens.

Knows nothing of serving. Every change is one serialised transaction and one history event; artifacts
are written before their version row, so a crash leaves at worst an unreferenced blob, never a version
without bytes. The parts live one concept to a module (reading.py, aliases.py, tokens.py, jobs.py); this
one adds and removes versions and assembles them into `Registry`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shipyard.config import Settings
from shipyard.errors import Conflict, InvalidInput, NotFound, Unavailable
from shipyard.names import check_name
from shipyard.registry import tempfiles
from shipyard.registry.aliases import ALIAS_CHANGES, PRODUCTION, input_difference
from shipyard.registry.artifacts import Artifacts, ArtifactStore
from shipyard.registry.jobs import JobsMixin
from shipyard.registry.reading import record
from shipyard.registry.records import DatasetInfo, VersionRecord
from shipyard.registry.rollouts import RolloutsMixin
from shipyard.registry.tables import ModelRow, VersionRow, utcnow
from shipyard.registry.tokens import TokensMixin
from shipyard.signature import Signature

__all__ = ["ALIAS_CHANGES", "PRODUCTION", "Registry", "input_difference", "parse_ref"]


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split `NAME[:VERSION|ALIAS]` into its name and the optional version part."""
    name, sep, version = ref.partition(":")
    if not name or (sep and not version):
        raise InvalidInput(f"bad model reference {ref!r}: expected NAME or NAME:VERSION")
    return name, version or None


class Registry(RolloutsMixin, TokensMixin, JobsMixin):
    @classmethod
    def open(cls, settings: Settings) -> Registry:
        """The registry the settings point at, creating SHIPYARD_HOME on first use. With
        SHIPYARD_ARTIFACTS set, artifacts live there and the home's artifacts folder is their cache."""
        settings.home_dir.mkdir(parents=True, exist_ok=True)
        local = ArtifactStore(settings.artifacts_dir)
        artifacts: Artifacts = local
        if settings.artifacts:
            from shipyard.registry.remote_artifacts import RemoteArtifactStore  # fsspec only when asked

            artifacts = RemoteArtifactStore(settings.artifacts, cache=local)
        return cls(settings.registry_url, artifacts, scratch=settings.home_dir / "tmp")

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
        check_name(name)
        _check_labels(labels, signature)
        self.sweep()
        sha = self.artifacts.put(onnx_bytes)
        for _attempt in range(5):
            try:
                with self._writing() as session:
                    model = session.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
                    if model is None:
                        model = ModelRow(name=name, last_version=0, created_at=utcnow())
                        session.add(model)
                    elif model.deleted_at is not None:  # deleted before: numbering goes on from there
                        model.deleted_at, model.created_at = None, utcnow()
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
                    created = record(name, row, ())
            except IntegrityError:
                continue  # another writer created the same model first: try again
            if not self.artifacts.has(sha):
                self.artifacts.put(onnx_bytes)  # a delete of the last version using it came in between
            return created
        raise Conflict(f"could not add a version of {name!r}: too many concurrent writers")

    def sweep(self) -> list[tempfiles.TempFile]:
        """Remove temporary files left by writers that were killed (never a running writer's)."""
        return tempfiles.sweep([*self.artifacts.temp_folders(), self.scratch])

    def set_reference(self, name: str, version: int, profile: dict[str, Any], source: str) -> None:
        """Store the reference profile live traffic of `version` is compared with (replacing any)."""
        with self._writing() as session:
            model = self._locked_model(session, name)
            row = next((v for v in model.versions if v.number == version), None)
            if row is None:
                raise NotFound(f"model {name!r} has no version {version}")
            row.reference = profile
            self._event(session, name, "reference", version, detail=source)

    def configure(self, name: str, serving: dict[str, Any]) -> dict[str, Any]:
        """Merge serving settings into the model's (a None value removes one); returns the result."""
        with self._writing() as session:
            model = self._locked_model(session, name)
            merged = {**(model.serving or {}), **serving}
            model.serving = {k: v for k, v in merged.items() if v is not None}
            detail = ", ".join(f"{k}={v}" for k, v in sorted(serving.items()))
            self._event(session, name, "configure", None, detail=detail)
            return dict(model.serving)

    def record(
        self,
        name: str,
        kind: str,
        version: int | None,
        reason: str,
        actor: str | None = None,
        *,
        from_version: int | None = None,
        detail: str = "",
    ) -> None:
        """Add an event that changes nothing else (e.g. a server failing to load a version, a gate's
        verdict)."""
        with self._writing() as session:
            self._event(
                session,
                name,
                kind,
                version,
                from_version=from_version,
                detail=detail,
                reason=reason,
                actor=actor,
            )

    def delete(self, name: str, version: int | None = None) -> list[int]:
        """Delete one version (and aliases pointing at it) or the whole model; returns the numbers.
        A deleted model's name may be imported again: its versions go on from the last number given."""
        with self._writing() as session:
            model = self._locked_model(session, name)
            if version is None:
                doomed = list(model.versions)
            else:
                doomed = [v for v in model.versions if v.number == version]
                if not doomed:
                    raise NotFound(f"model {name!r} has no version {version}")
            shas = {v.sha256 for v in doomed}
            numbers = [v.number for v in doomed]
            if version is None:  # the row stays, hidden, so that no version number is given twice
                model.versions.clear()
                model.aliases.clear()
                model.serving, model.deleted_at = None, utcnow()
                self._event(session, name, "deleted", None, detail="model and all versions")
            else:
                for alias in model.aliases:
                    if alias.version == version:
                        session.delete(alias)
                        continue
                    why = f"version {version} deleted"
                    if alias.split is not None and str(version) in alias.split:
                        alias.split = None  # its traffic goes back to the alias's own version
                        self._split_event(session, name, alias, None, reason=why, actor=None)
                    if alias.shadow == version:
                        self._shadow(session, name, alias, None, reason=why, actor=None)
                session.delete(doomed[0])
                self._event(session, name, "deleted", version)
            session.flush()
            still_used = set(session.scalars(select(VersionRow.sha256).where(VersionRow.sha256.in_(shas))))
        for sha in shas - still_used:
            # the version is gone either way: a blob the store could not delete stays, unreferenced,
            # for `registry check --fix`
            with contextlib.suppress(Unavailable):
                self.artifacts.delete(sha)
        return numbers


def _check_labels(labels: list[str] | None, signature: Signature) -> None:
    if labels is None or signature.scores is None:
        return
    spec = signature.output(signature.scores.output)
    classes = spec.shape[-1] if spec and spec.shape else -1
    if classes > 0 and len(labels) != classes:
        raise InvalidInput(f"{len(labels)} labels given, but the model scores {classes} classes")
