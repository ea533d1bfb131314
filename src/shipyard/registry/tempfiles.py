"""Temporary files named after their writer, so a killed writer's leftovers can be found and removed.

A writer names its temporary files and folders `.tmp-<host>-<pid>-<random>`. One whose writer ran on
this host and no longer runs is a leftover (a kill -9 mid-import once left 640 MiB of them); one whose
writer still runs is never touched. A recycled pid only makes a leftover look alive, which is safe.
Files whose writer cannot be asked (another host on shared storage, or an older release's nameless
`.tmp-<random>`) count as abandoned only once nobody has written to them for STALE_AFTER_S.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

PREFIX = ".tmp-"
STALE_AFTER_S = 24 * 3600
_TAGGED = re.compile(r"\.tmp-(?P<host>.+)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+")


class Writer(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


def host() -> str:
    """This machine's name as it appears in temp file names (no separators or path characters), with
    the process-id namespace: two containers with one host name on a shared volume must not take each
    other's live writers for dead ones."""
    name = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"
    try:
        return f"{name}.{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: the host name alone
        return name


def prefix() -> str:
    """The name prefix of this process's temporary files."""
    return f"{PREFIX}{host()}-{os.getpid()}-"


@dataclass(frozen=True)
class TempFile:
    """A temporary file or folder someone wrote, with what is known of its writer."""

    path: Path
    size: int
    modified: float
    writer: Writer
    pid: int | None

    def abandoned(self, now: float | None = None) -> bool:
        """True when no writer can still be using it: its writer is gone, or it is long untouched."""
        if self.writer is Writer.DEAD:
            return True
        age = (time.time() if now is None else now) - self.modified
        return self.writer is Writer.UNKNOWN and age > STALE_AFTER_S

    def describe(self) -> str:
        if self.writer is Writer.DEAD:
            return f"its writer (pid {self.pid}) is gone"
        if self.writer is Writer.ALIVE:
            return f"its writer (pid {self.pid}) is still running"
        hours = (time.time() - self.modified) / 3600
        return f"writer unknown, untouched for {hours:.1f} h"


def mkstemp(folder: Path) -> tuple[int, Path]:
    """A new temporary file in `folder` named after this process: (open fd, path)."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix())
    return fd, Path(path)


@contextmanager
def scratch_dir(parent: Path) -> Iterator[Path]:
    """A private folder under `parent` for scratch files, removed on exit (by the next sweep if killed)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def find(folders: Iterable[Path]) -> list[TempFile]:
    """The temporary files and folders directly inside `folders` (missing folders are skipped)."""
    found = []
    for folder in folders:
        try:
            entries = [p for p in folder.iterdir() if p.name.startswith(PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for path in entries:
            item = _inspect(path)
            if item is not None:
                found.append(item)
    return sorted(found, key=lambda t: t.path)


def remove(item: TempFile) -> bool:
    """Delete a temporary file or folder; False when it was already gone."""
    try:
        if item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path)
        else:
            item.path.unlink()
    except FileNotFoundError:
        return False
    return True


def sweep(folders: Iterable[Path]) -> list[TempFile]:
    """Remove the leftovers of writers known to be dead; returns what was removed."""
    return [item for item in find(folders) if item.writer is Writer.DEAD and remove(item)]


def _inspect(path: Path) -> TempFile | None:
    try:
        stat = path.lstat()
        size = (
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else stat.st_size
        )
    except FileNotFoundError:
        return None  # its writer renamed or removed it meanwhile
    tagged = _TAGGED.fullmatch(path.name)
    if tagged is None:
        return TempFile(path, size, stat.st_mtime, Writer.UNKNOWN, None)
    pid = int(tagged["pid"])
    if tagged["host"] != host():
        return TempFile(path, size, stat.st_mtime, Writer.UNKNOWN, pid)
    return TempFile(path, size, stat.st_mtime, Writer.ALIVE if _running(pid) else Writer.DEAD, pid)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False
    return True
