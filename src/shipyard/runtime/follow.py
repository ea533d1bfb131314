"""Following the registry: how a running server keeps up with deploys, new versions and settings.

Every interval (SHIPYARD_WATCH_INTERVAL_S, a second by default) the watch reads each served model's
summary, one cheap query; when it changed, it reads the model whole and brings the server in line,
all off the request path:

    serving settings   (`shipyard model configure`) the resident versions are rebuilt with them and
                       swapped in at once; the old ones drain (runtime/reconfigure.py)
    versions           the ones the policy now serves are loaded and warmed up, those it no longer
                       serves drained and unloaded
    default            moves to the version the alias names, once that version is resident
    traffic split      applied once every version it names is resident (or loads on demand, within
                       a memory budget); ended at once
    shadow             the same, for the version that gets a copy of the requests

Each switch is one assignment on the event loop, so a request sees the old state or the new one,
never neither, and requests already queued finish where they were queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from shipyard.errors import NotFound, ShipyardError
from shipyard.runtime.reconfigure import reconfigure
from shipyard.runtime.residency import Residency
from shipyard.runtime.served import ServedModel

if TYPE_CHECKING:
    from shipyard.registry import ModelSummary
    from shipyard.runtime.manager import ModelManager

log = logging.getLogger(__name__)

FULL_READ_S = 30.0


class Follower:
    def __init__(self, manager: ModelManager, residency: Residency) -> None:
        self._manager = manager
        self._residency = residency
        self._summaries: dict[str, ModelSummary] = {}  # as the watch last read them
        self._full_read = time.monotonic()

    async def watch(self, interval_s: float) -> None:
        """Refresh every `interval_s` until cancelled; a failed round is logged and tried again."""
        while True:
            await asyncio.sleep(interval_s)  # a polling period, not a synchronisation
            try:
                for change in await self.refresh():
                    log.info("registry watch: %s", change)
            except Exception:
                log.exception("registry watch failed; trying again")

    async def refresh(self, names: Iterable[str] | None = None) -> list[str]:
        """Bring the named models (every served one when None) in line with the registry; returns
        what changed, one line each. Naming models reads them whole, changed or not."""
        changes: list[str] = []
        full = names is not None or time.monotonic() - self._full_read >= FULL_READ_S
        if full:
            self._full_read = time.monotonic()
        for name in list(names or self._manager.models):
            try:
                now = await asyncio.to_thread(self._read_if_changed, name, full)
            except NotFound:
                continue  # deleted from the registry: keep serving what is loaded
            except ShipyardError as exc:  # e.g. settings no server could use: the others follow on
                log.error("%s: the registry's description cannot be followed: %s", name, exc.message)
                continue
            served = self._manager.models.get(name)
            if served is not None and now is not None:
                await self._follow(served, now, changes)
        return changes

    def _read_if_changed(self, name: str, full: bool) -> ServedModel | None:
        """The model read whole, or None when its summary (versions, aliases, settings) is as last
        time: a cheap query every second, the full read (every version's manifest) only on a change,
        and every FULL_READ_S anyway for what the summary does not show (a new reference profile)."""
        summary = self._manager.registry.model(name)
        if not full and self._summaries.get(name) == summary:
            return None
        self._summaries[name] = summary
        return self._manager.read(name, summary)

    async def _follow(self, served: ServedModel, now: ServedModel, changes: list[str]) -> None:
        residency, name = self._residency, served.name
        if now.serving != served.serving:  # first, so that versions loaded next get the new settings
            before, after = served.serving.model_dump(), now.serving.model_dump()
            changed = ", ".join(f"{k}={after[k]}" for k in after if after[k] != before[k])
            try:
                await reconfigure(residency, self._manager.models, served, now.serving)
                changes.append(f"{name}: now served with {changed}")
            except ShipyardError as exc:
                log.error("%s: still served as before, %s failed: %s", name, changed, exc.message)
        for number, record in now.records.items():  # keep unchanged records: the monitor's key
            known = served.records.get(number)
            if known is None or known.reference != record.reference or known.aliases != record.aliases:
                served.records[number] = record
                if number in served.versions:
                    served.versions[number].record = record
        for number in residency.eager(now):
            if number in served.versions or residency.failure(name, number) is not None:
                continue
            if residency.budgeted and number == served.default:
                continue  # unloaded for the budget: it loads again on its next request
            with contextlib.suppress(ShipyardError):  # recorded in the history; the rest serve on
                await residency.load(served, number)
                changes.append(f"{name}: loaded version {number}")
        if now.default != served.default and now.default in served.versions:
            changes.append(f"{name}: default version {served.default} -> {now.default}")
            served.default = now.default
        if now.split != served.split:
            self._split(served, now, changes)
        if now.shadow != served.shadow and (now.shadow is None or now.shadow in served.versions):
            served.shadow = now.shadow
            changes.append(
                f"{name}: " + ("shadow ended" if now.shadow is None else f"shadow version {now.shadow}")
            )
        leaving = set(served.records) - set(now.records) - {served.default}
        for number in sorted(leaving):
            del served.records[number]
            if number in served.versions:
                await residency.drain(served, [served.versions[number]])
                changes.append(f"{name}: unloaded version {number}")

    def _split(self, served: ServedModel, now: ServedModel, changes: list[str]) -> None:
        """Apply the registry's traffic split once every version it sends traffic to can answer."""
        name, split = served.name, now.split
        missing = [] if split is None else [n for n in split.versions if n not in served.versions]
        if missing and not self._residency.budgeted:
            log.error("%s: traffic split %s not applied: version %s is not loaded", name, split, missing[0])
            return
        served.split = split
        changes.append(f"{name}: traffic {'split ' + str(split) if split else 'split ended'}")
