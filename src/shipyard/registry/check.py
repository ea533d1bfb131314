"""`registry check`: does every version still have its bytes, and what was left behind?

Verifies each version's artifact (present, sha256 matching) and finds temporary files and blobs no
version uses. Fixing removes only what nobody can need: killed writers' temporary files (tempfiles.py)
and unreferenced blobs older than BLOB_GRACE_S (a register stores its blob before its version row, so a
younger one may be about to be used). A missing or corrupt referenced artifact cannot be fixed here:
it is reported, for the version to be re-imported or deleted.

With a shared store (SHIPYARD_ARTIFACTS) the shared objects are checked, each read whole: slower, and
the same from any machine. This machine's cache is verified on every read; its unreferenced copies
are removed as unreferenced blobs are.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from shipyard.registry import tempfiles
from shipyard.registry.artifacts import Artifacts, Blob
from shipyard.registry.remote_artifacts import RemoteArtifactStore
from shipyard.registry.store import Registry

BLOB_GRACE_S = 3600


@dataclass(frozen=True)
class Problem:
    kind: str
    """missing, corrupt, unreadable, temp or unreferenced."""
    message: str
    where: str
    """The path or URL of what is wrong."""
    size: int = 0
    fixable: bool = False
    fixed: bool = False


@dataclass
class Report:
    versions: int = 0
    artifacts: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Things left alone that are no problem: running writers' files, blobs a register may be using."""

    @property
    def ok(self) -> bool:
        """Nothing left to fix: every problem found was fixed."""
        return all(p.fixed for p in self.problems)


def check(registry: Registry, *, fix: bool = False, now: float | None = None) -> Report:
    """Check `registry`'s artifacts and temporary files; with `fix`, remove what can safely go."""
    now = time.time() if now is None else now
    report = Report()
    users: dict[str, list[str]] = defaultdict(list)
    for model in registry.models():
        for version in registry.versions(model.name):
            users[version.sha256].append(version.ref)
            report.versions += 1
    for sha, refs in sorted(users.items()):
        report.artifacts += 1
        problem = _verify(registry, sha, refs)
        if problem is not None:
            report.problems.append(problem)
    for item in tempfiles.find([*registry.artifacts.temp_folders(), registry.scratch]):
        if not item.abandoned(now):
            report.skipped.append(f"temporary file in use, left alone: {item.path} ({item.describe()})")
            continue
        what = f"leftover temporary file {item.path} ({item.size:,} bytes, {item.describe()})"
        report.problems.append(
            Problem("temp", what, str(item.path), item.size, True, fix and tempfiles.remove(item))
        )
    orphans: list[tuple[Artifacts, str, Blob]] = []
    listed: set[str] = set()  # a blob both shared and cached is listed once: deleting it drops both
    for store, what in _stores(registry):
        for blob in store.inventory():
            if blob.sha256 in users or blob.sha256 in listed:
                continue
            listed.add(blob.sha256)
            if now - blob.modified < BLOB_GRACE_S:
                report.skipped.append(
                    f"recent unreferenced {what} left alone (a register may be using it): {blob.where}"
                )
            else:
                orphans.append((store, what, blob))
    # asked again just before removing: a version registered since the listing may use one now
    in_use = _referenced(registry) if fix and orphans else set(users)
    for store, what, blob in orphans:
        fixed = fix and blob.sha256 not in in_use and store.delete(blob.sha256)
        message = f"unreferenced {what} {blob.sha256[:12]} ({blob.size:,} bytes) at {blob.where}"
        report.problems.append(Problem("unreferenced", message, blob.where, blob.size, True, fixed))
    return report


def _verify(registry: Registry, sha: str, refs: list[str]) -> Problem | None:
    where = registry.artifacts.where(sha)
    which = f"artifact {sha[:12]} ({', '.join(refs)})"
    try:
        actual = registry.artifacts.digest(sha)
    except FileNotFoundError:
        return Problem("missing", f"{which} is missing: expected at {where}", where)
    except OSError as exc:
        return Problem("unreadable", f"{which} cannot be read at {where}: {exc.strerror}", where)
    if actual != sha:
        return Problem("corrupt", f"{which} is corrupt: its sha256 is {actual[:12]}..., at {where}", where)
    return None


def _stores(registry: Registry) -> list[tuple[Artifacts, str]]:
    """Where blobs are listed: the store, and a shared store's cache on this machine (which nothing
    else prunes: copies of deleted versions would stay there for good)."""
    stores: list[tuple[Artifacts, str]] = [(registry.artifacts, "blob")]
    if isinstance(registry.artifacts, RemoteArtifactStore):
        stores.append((registry.artifacts.cache, "cached copy"))
    return stores


def _referenced(registry: Registry) -> set[str]:
    return {v.sha256 for m in registry.models() for v in registry.versions(m.name)}
