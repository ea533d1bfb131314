"""Content-addressed blob stores: every artifact is stored once, under its sha256.

`Artifacts` is what the registry needs of a store. `ArtifactStore` keeps the blobs in a local folder;
`RemoteArtifactStore` (remote_artifacts.py) keeps them at an fsspec URL (s3://...) shared by many
machines, with an `ArtifactStore` as each machine's read-through cache.

In the local folder, writes go to a temporary file in the same folder, named after its writer
(tempfiles.py), and are renamed into place, so a half-written file never counts and a killed writer's
leftover can be told from a live writer's file; reads verify the hash, so bytes changed on disk are
refused instead of served. Errors name the artifact by hash and version, never by path: they reach a
server's clients.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipyard.errors import CorruptArtifact, NotFound
from shipyard.registry import tempfiles

SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe(sha256: str, ref: str | None) -> str:
    """How errors name an artifact: by hash and NAME:VERSION, never by where it is stored."""
    return f"artifact {sha256[:12]}" + (f" ({ref})" if ref else "")


def refuse_mismatch(data: bytes, sha256: str, ref: str | None, where: str = "") -> bytes:
    """`data`, unless its hash is not `sha256`: then CorruptArtifact, for bytes must never be served
    as a version they are not."""
    actual = sha256_bytes(data)
    if actual != sha256:
        raise CorruptArtifact(
            f"{describe(sha256, ref)} is corrupt{where}: its sha256 is {actual[:12]}..., "
            f"the registry expects {sha256[:12]}..."
        )
    return data


@dataclass(frozen=True)
class Blob:
    """One stored blob, as `registry check` lists it."""

    sha256: str
    where: str
    """A path or URL, for the operator running the check (never shown to a server's clients)."""
    size: int
    modified: float
    """Seconds since the epoch: unreferenced blobs are removed only once old enough."""


class Artifacts(Protocol):
    """What the registry needs of an artifact store (the swap point between local and shared)."""

    root: Path
    """The local folder of blobs: the store itself, or a remote store's cache. Scratch space and
    temporary files live beside it."""

    def put(self, data: bytes) -> str:
        """Store `data` unless identical bytes are already there; return its sha256."""
        ...

    def get(self, sha256: str, ref: str | None = None) -> bytes:
        """The bytes, verified against their hash; `ref` (NAME:VERSION) names them in errors."""
        ...

    def has(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> bool:
        """Remove a blob; False when it was not there."""
        ...

    def digest(self, sha256: str) -> str:
        """The sha256 of what is stored under `sha256` (FileNotFoundError when nothing is)."""
        ...

    def where(self, sha256: str) -> str:
        """Where the blob is stored, for the operator's eyes only."""
        ...

    def inventory(self) -> Iterator[Blob]:
        """Every stored blob; temporary files and anything else are skipped."""
        ...

    def temp_folders(self) -> list[Path]:
        """The local folders writers put their temporary files in."""
        ...


class ArtifactStore:
    """A folder of blobs named by their sha256, fanned out by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def where(self, sha256: str) -> str:
        return str(self.path(sha256))

    def digest(self, sha256: str) -> str:
        return sha256_file(self.path(sha256))

    def put(self, data: bytes) -> str:
        """Store `data` unless identical bytes are already there; return its sha256."""
        sha = sha256_bytes(data)
        target = self.path(sha)
        if target.exists() and sha256_file(target) == sha:
            # touched: a blob about to be referenced again is recent, so `registry check --fix`,
            # which removes only old unreferenced blobs, leaves it alone
            os.utime(target)
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfiles.mkstemp(target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha256: str, ref: str | None = None) -> bytes:
        """The stored bytes, verified against their hash; `ref` (NAME:VERSION) names it in errors."""
        what = describe(sha256, ref)
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{what} is missing from the artifact store") from None
        except OSError as exc:
            raise CorruptArtifact(f"{what} cannot be read: {exc.strerror or type(exc).__name__}") from None
        return refuse_mismatch(data, sha256, ref)

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def blobs(self) -> Iterator[tuple[str, Path]]:
        """Every stored blob as (sha256, path); temporary files and anything else are skipped."""
        for folder in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for path in sorted(folder.iterdir()):
                if SHA256.fullmatch(path.name) and path.name.startswith(folder.name):
                    yield path.name, path

    def inventory(self) -> Iterator[Blob]:
        for sha, path in self.blobs():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # deleted since the listing
            yield Blob(sha, str(path), stat.st_size, stat.st_mtime)

    def temp_folders(self) -> list[Path]:
        """The folders writers put their temporary files in."""
        return sorted(p for p in self.root.glob("*") if p.is_dir())
