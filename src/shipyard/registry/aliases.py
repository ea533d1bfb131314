"""Aliases, deploys and rollbacks: moving a model's named pointers, each move one serialised step.

Every move records where the alias came from (`from_version`); rollback follows that chain back. The
read of the alias, its move and its history event happen in one transaction holding the model's lock
(base.py, database.py), as do a deploy's input check and a rollback's choice of target, so moves racing
from a CLI, a server's admin endpoint or threads queue up instead of breaking the chain.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import Conflict, NotFound
from shipyard.names import check_alias
from shipyard.registry.reading import ReadingMixin, aliases_of, record
from shipyard.registry.records import VersionRecord
from shipyard.registry.tables import AliasRow, EventRow, ModelRow, VersionRow, utcnow
from shipyard.rollout.router import Split
from shipyard.signature import Signature

PRODUCTION = "production"
ALIAS_CHANGES = frozenset({"alias", "restore", "deploy", "rollback"})
"""The event kinds that move an alias (the event's detail names the alias)."""


class AliasesMixin(ReadingMixin):
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
        check_alias(alias)
        with self._writing() as session:
            model = self._locked_model(session, name)
            return self._move(session, model, version, alias, kind=kind, reason=reason, actor=actor)

    def restore(self, name: str, version: int) -> int | None:
        """Make an earlier version the production one again."""
        return self.set_alias(name, version, PRODUCTION, kind="restore")

    def check_deploy(
        self, name: str, version: int, *, force: bool = False, alias: str = PRODUCTION
    ) -> VersionRecord:
        """The version `deploy` would serve; Conflict when its inputs differ from the current one's."""
        with self._session() as session:
            model = self._model_row(session, name)
            target = deployable(model, version, force=force, alias=alias)
            return record(name, target, aliases_of(model, version))

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
        check_alias(alias)
        with self._writing() as session:
            model = self._locked_model(session, name)
            deployable(model, version, force=force, alias=alias)
            return self._move(session, model, version, alias, kind="deploy", reason=reason, actor=actor)

    def rollback_target(self, name: str, *, alias: str = PRODUCTION) -> tuple[int, int]:
        """(current, previous): the version `alias` pointed at before its last change."""
        with self._session() as session:
            return _rollback_target(session, self._model_row(session, name), alias)

    def rollback(
        self,
        name: str,
        *,
        reason: str = "",
        alias: str = PRODUCTION,
        actor: str | None = None,
        expect: tuple[int, int] | None = None,
    ) -> tuple[int, int]:
        """`alias` goes back to the version it pointed at before its last change; returns (from, to).

        `expect` is the (current, previous) a caller prepared for (say, a server that loaded the
        target first): when another change came in between, Conflict and nothing moves.
        """
        with self._writing() as session:
            model = self._locked_model(session, name)
            current, previous = _rollback_target(session, model, alias)
            if expect is not None and expect != (current, previous):
                raise Conflict(
                    f"{name}: {alias} changed meanwhile (it is now {current}, and would go back to "
                    f"{previous}); nothing was rolled back"
                )
            self._move(session, model, previous, alias, kind="rollback", reason=reason, actor=actor)
            return current, previous

    def set_split(
        self,
        name: str,
        shares: Mapping[int, float] | None,
        *,
        alias: str = PRODUCTION,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> tuple[Split | None, Split | None]:
        """Divide the requests for `name` that name no version among versions, by percent (the alias's
        own version takes what the others leave); None (or all to the alias's version) ends the split.
        Every version must take the alias's inputs, as for deploy. Returns (before, after)."""
        check_alias(alias)
        with self._writing() as session:
            model = self._locked_model(session, name)
            row = _alias_row(model, alias, "to split the traffic of")
            before = None if row.split is None else Split.from_dict(row.split)
            split = None if shares is None else Split.of(shares, rest_to=row.version)
            if split is not None:
                for version in split.versions:
                    deployable(model, version, force=force, alias=alias)
                if split.versions == (row.version,):
                    split = None
            if split != before:
                row.split, row.updated_at = (None if split is None else split.to_dict()), utcnow()
                self._split_event(session, model.name, row, split, reason=reason, actor=actor)
            return before, split

    def set_shadow(
        self,
        name: str,
        version: int | None,
        *,
        alias: str = PRODUCTION,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> int | None:
        """Give `alias` a shadow: `version` gets a copy of its requests and answers no one (None: no
        shadow). Its inputs must be the alias's, as for deploy. Returns the shadow before."""
        check_alias(alias)
        with self._writing() as session:
            model = self._locked_model(session, name)
            row = _alias_row(model, alias, "to shadow")
            if version is not None:
                if version == row.version:
                    raise Conflict(f"{name}:{version} is {alias} already: it cannot shadow itself")
                deployable(model, version, force=force, alias=alias)
            before = row.shadow
            self._shadow(session, model.name, row, version, reason=reason, actor=actor)
            return before

    def _split_event(
        self,
        session: Session,
        model: str,
        row: AliasRow,
        split: Split | None,
        *,
        reason: str,
        actor: str | None,
    ) -> None:
        """History of a split: the alias's version, and `alias: 1=80%, 2=20%` (or `alias: ended`)."""
        detail = f"{row.name}: {split if split is not None else 'ended'}"
        self._event(session, model, "split", row.version, detail=detail, reason=reason, actor=actor)

    def _move(
        self,
        session: Session,
        model: ModelRow,
        version: int,
        alias: str,
        *,
        kind: str,
        reason: str,
        actor: str | None,
    ) -> int | None:
        """Move the alias of a locked model and record the move; returns where it pointed before."""
        if version not in {v.number for v in model.versions}:
            raise NotFound(f"model {model.name!r} has no version {version}")
        row = next((a for a in model.aliases if a.name == alias), None)
        before = row.version if row else None
        if row is None:
            session.add(AliasRow(model_id=model.id, name=alias, version=version))
        else:
            row.version, row.updated_at = version, utcnow()
        self._event(
            session, model.name, kind, version, from_version=before, detail=alias, reason=reason, actor=actor
        )
        if row is not None and row.split is not None:  # a move sends all the alias's traffic to one version
            row.split = None
            self._split_event(session, model.name, row, None, reason=f"ended by {kind}", actor=actor)
        if row is not None and row.shadow is not None:
            self._shadow(session, model.name, row, None, reason=f"ended by {kind}", actor=actor)
        return before

    def _shadow(
        self,
        session: Session,
        model: str,
        row: AliasRow,
        version: int | None,
        *,
        reason: str,
        actor: str | None,
    ) -> None:
        """Give the alias a shadow (None: none), recorded: `alias: shadow 2` (or `alias: shadow ended`)."""
        if row.shadow == version:
            return
        row.shadow, row.updated_at = version, utcnow()
        detail = f"{row.name}: " + ("shadow ended" if version is None else f"shadow {version}")
        self._event(session, model, "shadow", row.version, detail=detail, reason=reason, actor=actor)


def _alias_row(model: ModelRow, alias: str, what: str) -> AliasRow:
    """The alias's row, for a change that needs a version there (Conflict naming `what` when none)."""
    row = next((a for a in model.aliases if a.name == alias), None)
    if row is None:
        raise Conflict(f"{model.name} has no {alias} version {what}: deploy one first")
    return row


def deployable(model: ModelRow, version: int, *, force: bool, alias: str) -> VersionRow:
    target = _version_row(model, version)
    current = next((a.version for a in model.aliases if a.name == alias), None)
    if current is not None and current != version and not force:
        serving = Signature.from_dict(_version_row(model, current).signature)
        problem = input_difference(serving, Signature.from_dict(target.signature))
        if problem:
            raise Conflict(
                f"{model.name}:{version} cannot replace {model.name}:{current}: {problem} "
                "(--force deploys anyway)"
            )
    return target


def _rollback_target(session: Session, model: ModelRow, alias: str) -> tuple[int, int]:
    current = next((a.version for a in model.aliases if a.name == alias), None)
    last = session.scalar(
        select(EventRow)
        .where(EventRow.model == model.name, EventRow.detail == alias, EventRow.kind.in_(ALIAS_CHANGES))
        .order_by(EventRow.id.desc())
        .limit(1)
    )
    if current is None or last is None or last.from_version is None:
        raise Conflict(f"{model.name} has no earlier {alias} version to roll back to")
    previous = last.from_version
    if previous not in {v.number for v in model.versions}:
        raise Conflict(f"{model.name}: the previous {alias} version {previous} has been deleted")
    return current, previous


def _version_row(model: ModelRow, version: int) -> VersionRow:
    row = next((v for v in model.versions if v.number == version), None)
    if row is None:
        raise NotFound(f"model {model.name!r} has no version {version}")
    return row


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
