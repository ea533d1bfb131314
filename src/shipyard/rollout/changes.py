"""Changes asked of a running server (the repository extension and the admin endpoints): load or
unload a model, deploy a version, roll back, split the traffic. Each loads and warms up what it needs
before anything moves, so a version that cannot serve changes nothing, and the registry is written
last. The registry moves the alias (or its split); the server follows it (runtime/follow.py), here at
once rather than at its next check."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from shipyard.errors import ShipyardError, Unavailable
from shipyard.registry import VersionRecord
from shipyard.rollout.router import Split
from shipyard.runtime.manager import ModelManager
from shipyard.runtime.served import ServedModel


class Changes:
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    async def load_model(self, name: str) -> None:
        """Load (or reload) a model while serving: staged beside the old one, swapped in at once."""
        manager, residency = self.manager, self.manager.residency
        fresh = await asyncio.to_thread(manager.read, name)
        residency.retry(name, fresh.records)
        await residency.stage(fresh)
        old = manager.swap(name, fresh)
        if old is not None:
            await residency.drain(old, list(old.versions.values()))

    async def unload_model(self, name: str) -> None:
        """Stop serving a model: new requests get 404, queued ones finish, then its sessions go."""
        served = self.manager.swap(self.manager.served(name).name, None)
        assert served is not None
        await self.manager.residency.drain(served, list(served.versions.values()))

    async def deploy(
        self,
        name: str,
        version: int | None,
        *,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> tuple[int | None, int]:
        """Make `version` (the newest when None) the default here and in the registry: loaded and warmed
        up first, so a version that cannot serve changes nothing. Returns (before, after)."""
        manager, registry, alias = self.manager, self.manager.registry, self.manager.alias
        served = manager.served(name)
        if version is None:
            version = max((await asyncio.to_thread(registry.model, name)).versions)
        record = await asyncio.to_thread(registry.check_deploy, name, version, force=force, alias=alias)
        await self._switch_to(served, record)
        before = await asyncio.to_thread(
            registry.deploy, name, version, force=True, reason=reason, alias=alias, actor=actor
        )
        await manager.refresh([name])
        return before, version

    async def rollback(self, name: str, *, reason: str = "", actor: str | None = None) -> tuple[int, int]:
        """Back to the version the alias pointed at before its last change: loaded first, as deploy."""
        manager, registry, alias = self.manager, self.manager.registry, self.manager.alias
        served = manager.served(name)
        current, previous = await asyncio.to_thread(registry.rollback_target, name, alias=alias)
        await self._switch_to(served, await asyncio.to_thread(registry.version, name, previous))
        moved = await asyncio.to_thread(  # Conflict, moving nothing, if another change came in between
            registry.rollback, name, reason=reason, alias=alias, actor=actor, expect=(current, previous)
        )
        await manager.refresh([name])
        return moved

    async def split(
        self,
        name: str,
        shares: Mapping[int, float] | None,
        *,
        force: bool = False,
        reason: str = "",
        actor: str | None = None,
    ) -> tuple[Split | None, Split | None]:
        """Share the requests that name no version among versions (None: end the split): every
        version it names loaded first, as deploy. Returns (before, after)."""
        manager, registry, alias = self.manager, self.manager.registry, self.manager.alias
        served = manager.served(name)
        if shares is not None:  # checked before anything loads; the registry checks it again, locked
            for number in Split.of(shares, rest_to=served.default).versions:
                await self._switch_to(served, await asyncio.to_thread(registry.version, name, number))
        done = await asyncio.to_thread(
            registry.set_split, name, shares, alias=alias, force=force, reason=reason, actor=actor
        )
        await manager.refresh([name])
        return done

    async def _switch_to(self, served: ServedModel, record: VersionRecord) -> None:
        """Have `record` resident before any alias moves; a failure says why and changes nothing."""
        served.records.setdefault(record.number, record)
        residency = self.manager.residency
        residency.retry(served.name, [record.number])
        try:
            await residency.stage(served, [record.number])
        except ShipyardError as exc:
            raise Unavailable(
                f"{record.ref} was not deployed, {served.name}:{served.default} still serves: {exc.message}"
            ) from None
