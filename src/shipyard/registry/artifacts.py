"""Content-addressed blob store: every artifact is stored once, under its sha256.

Writes go to a temporary file in the same folder and are renamed into place, so a half-written file
never counts; reads verify the hash, so bytes changed on disk are refused instead of served.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from shipyard.errors import CorruptArtifact, NotFound


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
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha256: str) -> bytes:
        """The stored bytes, verified against their hash."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256[:12]} is missing from {self.root}") from None
        actual = sha256_bytes(data)
        if actual != sha256:
            raise CorruptArtifact(
                f"artifact {target} is corrupt: its sha256 is {actual[:12]}..., "
                f"the registry expects {sha256[:12]}..."
            )
        return data

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
