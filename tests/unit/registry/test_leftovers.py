"""Temporary files of killed writers are found and removed; a running writer's never are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shipyard
from shipyard.errors import CorruptArtifact, NotFound
from shipyard.registry import Registry
from shipyard.registry import tempfiles as tf
from shipyard.registry.artifacts import ArtifactStore
from tests.conftest import register_digits

WRITER = """
import os, sys
from pathlib import Path
from shipyard.registry import tempfiles

folder = Path(sys.argv[1])
if sys.argv[2] == "file":
    fd, path = tempfiles.mkstemp(folder)
    os.write(fd, b"x" * 4096)  # a big import, cut short
else:
    scratch = tempfiles.scratch_dir(folder)
    path = scratch.__enter__()
    (path / "model.onnx").write_bytes(b"x" * 4096)
print(path, flush=True)
sys.stdin.readline()
"""


class Writer:
    """A real writer in another process, holding a temporary file open until told or killed."""

    def __init__(self, folder: Path, kind: str = "file") -> None:
        src = str(Path(shipyard.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        self.path = Path(self.process.stdout.readline().strip())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    started: list[Writer] = []
    yield started
    for writer in started:
        writer.close()


def blob_folder(registry: Registry) -> Path:
    folder = registry.artifacts.root / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_temp_files_carry_their_writer(tmp_path: Path) -> None:
    fd, path = tf.mkstemp(tmp_path)
    os.close(fd)
    assert path.name.startswith(f".tmp-{tf.host()}-{os.getpid()}-")
    (item,) = tf.find([tmp_path])
    assert (item.path, item.writer, item.pid) == (path, tf.Writer.ALIVE, os.getpid())


def test_a_killed_writers_file_goes_at_the_next_register(registry: Registry, writers: list[Writer]) -> None:
    killed = Writer(blob_folder(registry))
    running = Writer(blob_folder(registry))
    writers += [killed, running]
    killed.kill()
    assert killed.path.exists() and running.path.exists()
    register_digits(registry)
    assert not killed.path.exists()
    assert running.path.exists()  # its writer may still rename it into place


def test_a_killed_writers_scratch_folder_goes_at_the_next_register(
    registry: Registry, writers: list[Writer]
) -> None:
    killed = Writer(registry.scratch, "dir")
    writers.append(killed)
    assert (killed.path / "model.onnx").exists() and killed.path.parent == registry.scratch
    killed.kill()
    register_digits(registry)
    assert not killed.path.exists()


def test_scratch_folders_are_removed_on_exit(registry: Registry) -> None:
    with tf.scratch_dir(registry.scratch) as scratch:
        (scratch / "a").write_bytes(b"1")
        (item,) = tf.find([registry.scratch])
        assert item.writer is tf.Writer.ALIVE and item.size == 1
    assert not scratch.exists()


def test_files_of_unknown_writers_are_kept_until_long_untouched(registry: Registry) -> None:
    legacy = blob_folder(registry) / ".tmp-k2j4h5g6"  # an older release's name: no writer in it
    elsewhere = blob_folder(registry) / ".tmp-other-host-123-abcdefgh"
    for path in (legacy, elsewhere):
        path.write_bytes(b"x")
    register_digits(registry)
    assert legacy.exists() and elsewhere.exists()
    items = tf.find([blob_folder(registry)])
    assert [(i.writer, i.pid) for i in items] == [(tf.Writer.UNKNOWN, None), (tf.Writer.UNKNOWN, 123)]
    later = legacy.stat().st_mtime + tf.STALE_AFTER_S + 1
    assert all(not i.abandoned(legacy.stat().st_mtime + 60) for i in items)
    assert all(i.abandoned(later) for i in items)


def test_artifact_errors_name_the_version_not_the_path(registry: Registry) -> None:
    record = register_digits(registry)
    path = registry.artifacts.path(record.sha256)
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff\xfe")
    with pytest.raises(CorruptArtifact) as corrupt:
        registry.artifact(record)
    assert str(corrupt.value).startswith(
        f"artifact {record.sha256[:12]} (digits:1) is corrupt: its sha256 is"
    )
    path.unlink()
    with pytest.raises(NotFound) as missing:
        registry.artifact(record)
    assert (
        str(missing.value) == f"artifact {record.sha256[:12]} (digits:1) is missing from the artifact store"
    )
    for error in (corrupt.value, missing.value):
        assert str(registry.artifacts.root.parent) not in str(error) and "/" not in str(error)


def test_store_put_leaves_no_temp_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    sha = store.put(b"hello")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [sha]
    assert list(store.blobs()) == [(sha, store.path(sha))]
