"""The control plane: what changes what a server serves, apart from the requests it answers (the data
plane, dataplane.py): Triton's repository extension (index, load, unload), deploys, rollbacks and
traffic splits (done here and written to the registry: rollout/changes.py), and rollouts (written to
the registry, carried out by the controller: rollout/commands.py). The admin endpoints call it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from shipyard.errors import NotFound
from shipyard.rollout import commands
from shipyard.rollout.changes import Changes
from shipyard.rollout.plan import Plan
from shipyard.runtime.manager import ModelManager

STEER = {
    "pause": commands.pause,
    "resume": commands.resume,
    "promote": commands.promote,
    "abort": commands.abort,
}


class ControlPlane:
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self.changes = Changes(manager)

    async def repository_index(self) -> list[dict[str, str]]:
        """Every registered version with its state here: READY, LOADING, or UNAVAILABLE and why."""
        out = []
        for summary in await asyncio.to_thread(self.manager.registry.models):
            for number in summary.versions:
                state, reason = self.manager.state(summary.name, number)
                out.append({"name": summary.name, "version": str(number), "state": state, "reason": reason})
        return out

    async def repository_load(self, name: str) -> None:
        await self.changes.load_model(name)

    async def repository_unload(self, name: str) -> None:
        await self.changes.unload_model(name)

    async def deploy(
        self, name: str, version: int | None, *, force: bool, reason: str, actor: str
    ) -> dict[str, Any]:
        before, after = await self.changes.deploy(name, version, force=force, reason=reason, actor=actor)
        return {"name": name, "alias": self.manager.alias, "version": after, "previous": before}

    async def rollback(self, name: str, *, reason: str, actor: str) -> dict[str, Any]:
        before, after = await self.changes.rollback(name, reason=reason, actor=actor)
        return {"name": name, "alias": self.manager.alias, "version": after, "previous": before}

    async def split(
        self, name: str, shares: dict[int, float] | None, *, force: bool, reason: str, actor: str
    ) -> dict[str, Any]:
        before, after = await self.changes.split(name, shares, force=force, reason=reason, actor=actor)
        return {
            "name": name,
            "alias": self.manager.alias,
            "split": None if after is None else after.to_dict(),
            "previous": None if before is None else before.to_dict(),
        }

    # -- rollouts ---------------------------------------------------------------------------

    async def rollout_start(self, name: str, body: dict[str, Any], actor: str | None) -> dict[str, Any]:
        registry = self.manager.registry
        started = await asyncio.to_thread(commands.start, registry, name, actor=actor, **body)
        return asdict(started)

    def rollout_summary(self, name: str) -> dict[str, Any] | None:
        """The model's latest rollout as the dashboard shows it (None: never rolled out); blocking."""
        found = self.manager.registry.rollouts(name)
        if not found:
            return None
        rollout = found[0]
        return {**asdict(rollout), "steps": [str(step) for step in Plan.parse(rollout.plan).steps]}

    async def rollout_status(self, name: str) -> dict[str, Any]:
        return asdict(await asyncio.to_thread(self.manager.registry.rollout, name))

    async def rollout_steer(self, name: str, action: str, reason: str, actor: str | None) -> dict[str, Any]:
        """pause, resume, promote or abort the model's rollout (NotFound for any other `action`)."""
        steer = STEER.get(action)
        if steer is None:
            raise NotFound(f"no rollout action {action!r}: pause, resume, promote or abort")
        return asdict(await asyncio.to_thread(steer, self.manager.registry, name, reason, actor))
