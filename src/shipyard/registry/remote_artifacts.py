"""Artifacts at an fsspec URL (SHIPYARD_ARTIFACTS=s3://bucket/prefix), read through a local cache.

With the registry on PostgreSQL this makes servers stateless: every machine reads the same blobs, and
keeps those it has read in its own SHIPYARD_HOME (an `ArtifactStore`, verified by sha256 on every read,
so a corrupt cached file is dropped and fetched again). Blobs are laid out as in the local store,
`<prefix>/<first two hex digits>/<sha256>`.

A half-written upload never counts: an S3 put is atomic per object, and other backends get a temporary
name first and are moved into place. Nothing fsspec, s3fs or boto is imported unless a remote store is
configured. Errors name artifacts by hash and NAME:VERSION only: they reach a server's clients, while
the bucket, the endpoint and the underlying exception go to the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from shipyard.errors import CorruptArtifact, InvalidInput, NotFound, Unavailable
from shipyard.registry import tempfiles
from shipyard.registry.artifacts import (
    SHA256,
    ArtifactStore,
    Blob,
    describe,
    refuse_mismatch,
    sha256_bytes,
)

log = logging.getLogger(__name__)

INSTALL = "pip install 'shipyard[s3]'"
ATOMIC_PUTS = {"s3", "s3a", "gs", "gcs"}
"""Object stores whose single-object writes are all-or-nothing: no temporary name needed."""
CHUNK = 1 << 20
T = TypeVar("T")


class RemoteArtifactStore:
    """Blobs in a shared fsspec filesystem, with `cache` (a local store) in front for reads."""

    def __init__(self, url: str, cache: ArtifactStore) -> None:
        self.url = url.rstrip("/")
        self.cache = cache
        self.root = cache.root
        self.fs, self._base = open_filesystem(self.url)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple | list) else (self.fs.protocol,)
        self._atomic_puts = bool(ATOMIC_PUTS.intersection(protocols))

    def key(self, sha256: str) -> str:
        return f"{self._base}/{sha256[:2]}/{sha256}"

    def where(self, sha256: str) -> str:
        return str(self.fs.unstrip_protocol(self.key(sha256)))

    def has(self, sha256: str) -> bool:
        return self._call(f"look up {describe(sha256, None)}", lambda: bool(self.fs.exists(self.key(sha256))))

    def put(self, data: bytes) -> str:
        """Upload `data` unless the object is there with the same bytes (read back and hashed: a
        corrupt object is replaced), and keep a copy in the cache."""
        sha = sha256_bytes(data)
        what = describe(sha, None)
        if not self._call(f"look up {what}", lambda: self._holds(sha, len(data))):
            self._call(f"store {what}", lambda: self._upload(sha, data))
        self._cache(data)
        return sha

    def get(self, sha256: str, ref: str | None = None) -> bytes:
        """From the cache when it holds the right bytes, else fetched, verified and cached."""
        try:
            return self.cache.get(sha256, ref)
        except NotFound:
            pass
        except CorruptArtifact as exc:
            log.warning("dropping a corrupt cached copy, fetching it again: %s", exc)
            with contextlib.suppress(OSError):  # if it cannot go, the fetched copy replaces it
                self.cache.delete(sha256)
        what = describe(sha256, ref)
        try:
            data: bytes = self.fs.cat_file(self.key(sha256))
        except FileNotFoundError:
            raise NotFound(f"{what} is missing from the artifact store") from None
        except Exception as exc:  # botocore, aiohttp, OSError...: one line, the rest to the log
            raise self._failure(f"fetch {what}", exc) from None
        refuse_mismatch(data, sha256, ref, " in the artifact store")
        self._cache(data)
        return data

    def delete(self, sha256: str) -> bool:
        """Remove the shared object (and the cached copy); False when the object was not there."""
        key = self.key(sha256)

        def remove() -> bool:
            if not self.fs.exists(key):
                return False
            self.fs.rm_file(key)
            return True

        existed = self._call(f"delete {describe(sha256, None)}", remove)
        self.cache.delete(sha256)
        return existed

    def digest(self, sha256: str) -> str:
        """The hash of the shared object, streamed (the cache is not asked: it may hold good bytes
        while the shared copy is bad)."""
        return self._call(
            f"read {describe(sha256, None)}", lambda: self._hash(self.key(sha256)), FileNotFoundError
        )

    def inventory(self) -> Iterator[Blob]:
        found: dict[str, dict[str, Any]] = self._call(
            "list the artifact store", lambda: self.fs.find(self._base, detail=True)
        )
        for key, info in sorted(found.items()):
            folder, _, name = key.rpartition("/")
            if SHA256.fullmatch(name) and folder.endswith(f"/{name[:2]}"):
                yield Blob(
                    name, str(self.fs.unstrip_protocol(key)), int(info.get("size") or 0), _modified(info)
                )

    def temp_folders(self) -> list[Path]:
        return self.cache.temp_folders()

    def _holds(self, sha256: str, size: int) -> bool:
        key = self.key(sha256)
        try:
            if self.fs.size(key) != size:
                return False
        except FileNotFoundError:
            return False
        return self._hash(key) == sha256

    def _upload(self, sha256: str, data: bytes) -> None:
        key = self.key(sha256)
        if self._atomic_puts:
            self.fs.pipe_file(key, data)
            return
        tmp = f"{key.rpartition('/')[0]}/{tempfiles.prefix()}{secrets.token_hex(4)}"
        self.fs.makedirs(key.rpartition("/")[0], exist_ok=True)
        self.fs.pipe_file(tmp, data)
        try:
            self.fs.mv(tmp, key)
        except BaseException:
            self.fs.rm_file(tmp)
            raise

    def _hash(self, key: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(key, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        return digest.hexdigest()

    def _cache(self, data: bytes) -> None:
        """Keep a verified copy; a cache that cannot be written only costs a fetch next time."""
        try:
            self.cache.put(data)
        except OSError as exc:
            log.warning("artifact cache %s cannot be written: %s", self.cache.root, exc)

    def _call(self, doing: str, action: Callable[[], T], *passing: type[BaseException]) -> T:
        """`action`, with its failures (but `passing`) turned into one line safe to show anyone."""
        try:
            return action()
        except passing:
            raise
        except Exception as exc:
            raise self._failure(doing, exc) from None

    def _failure(self, doing: str, exc: Exception) -> Unavailable:
        # the cause in full (endpoint, bucket, key) only in the log, at info level: the one line raised
        # is what a CLI user or a server's operator sees first, and all a client may see
        log.info("artifact store %s: cannot %s: %s: %s", self.url, doing, type(exc).__name__, exc)
        if "Credentials" in type(exc).__name__:  # botocore's NoCredentialsError, PartialCredentialsError
            why = "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        elif isinstance(exc, PermissionError):
            why = "access denied (check the credentials, e.g. AWS_ACCESS_KEY_ID)"
        elif isinstance(exc, FileNotFoundError):
            why = "not found (does the bucket exist?)"
        else:
            why = f"the store cannot be reached ({type(exc).__name__})"
        return Unavailable(f"cannot {doing}: {why}")


def open_filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path inside it, or a one-line error saying what to
    install or fix. Credentials and endpoint come from the backend's own settings (for S3 the standard
    AWS variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_PROFILE...)."""
    try:
        import fsspec  # type: ignore[import-untyped]  # no type hints of its own
    except ImportError:
        raise InvalidInput(f"SHIPYARD_ARTIFACTS={url} needs fsspec and s3fs: {INSTALL}") from None
    try:
        # no instance or listing caches: other machines change the store, and each test its endpoint
        fs, base = fsspec.core.url_to_fs(url, skip_instance_cache=True, use_listings_cache=False)
    except ImportError as exc:
        raise InvalidInput(
            f"SHIPYARD_ARTIFACTS={url} needs a backend not installed ({exc}): {INSTALL}"
        ) from None
    except ValueError as exc:
        raise InvalidInput(f"SHIPYARD_ARTIFACTS={url} is no storage URL fsspec knows: {exc}") from None
    return fs, str(base).rstrip("/")


def _modified(info: dict[str, Any]) -> float:
    """The object's last change, as the backends name it (S3: LastModified, local: mtime); unknown
    counts as now, so that `registry check --fix` never takes it for an old leftover."""
    for name in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return time.time()
