"""Content-addressed blob store: every artifact is stored once, under its sha256.

Writes go to a temporary file in the same folder, named after its writer (tempfiles.py), and are renamed
into place, so a half-written file never counts and a killed writer's leftover can be told from a live
writer's file; reads verify the hash, so bytes changed on disk are refused instead of served. Errors name
the artifact by hash and version, never by path: they reach a server's clients.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

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


class ArtifactStore:
    """A folder of blobs named by their sha256, fanned out by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

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
        what = f"artifact {sha256[:12]}" + (f" ({ref})" if ref else "")
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{what} is missing from the artifact store") from None
        except OSError as exc:
            raise CorruptArtifact(f"{what} cannot be read: {exc.strerror or type(exc).__name__}") from None
        actual = sha256_bytes(data)
        if actual != sha256:
            raise CorruptArtifact(
                f"{what} is corrupt: its sha256 is {actual[:12]}..., the registry expects {sha256[:12]}..."
            )
        return data

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def blobs(self) -> Iterator[tuple[str, Path]]:
        """Every stored blob as (sha256, path); temporary files and anything else are skipped."""
        for folder in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for path in sorted(folder.iterdir()):
                if SHA256.fullmatch(path.name) and path.name.startswith(folder.name):
                    yield path.name, path

    def temp_folders(self) -> list[Path]:
        """The folders writers put their temporary files in."""
        return sorted(p for p in self.root.glob("*") if p.is_dir())
