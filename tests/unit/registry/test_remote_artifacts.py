"""The shared artifact store (SHIPYARD_ARTIFACTS=s3://...) against a real S3 API on 127.0.0.1 (moto's
server): content addressing, the read-through cache, corrupt and unreachable stores, `registry check`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from shipyard.config import Settings
from shipyard.errors import CorruptArtifact, NotFound, Unavailable
from shipyard.registry import ArtifactStore, Registry
from shipyard.registry.artifacts import sha256_bytes
from shipyard.registry.check import BLOB_GRACE_S, check
from shipyard.registry.remote_artifacts import RemoteArtifactStore
from tests import s3
from tests.conftest import register_digits
from tests.integration.conftest import free_port
from tests.models import digits_linear

ONNX = digits_linear().onnx_bytes
SHA = sha256_bytes(ONNX)
KEY = f"models/{SHA[:2]}/{SHA}"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3.s3_server() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> s3.Bucket:
    for name, value in s3.aws_env(endpoint).items():
        monkeypatch.setenv(name, value)
    return s3.new_bucket(endpoint)


def machine(bucket: s3.Bucket, home: Path) -> RemoteArtifactStore:
    """The store as a machine whose SHIPYARD_HOME is `home` opens it."""
    return RemoteArtifactStore(bucket.url(), ArtifactStore(home / "artifacts"))


def test_put_and_get_round_trip_through_the_bucket(bucket: s3.Bucket, tmp_path: Path) -> None:
    store = machine(bucket, tmp_path / "a")
    assert store.put(ONNX) == SHA
    assert s3.keys(bucket) == [KEY] and s3.read(bucket, KEY) == ONNX
    assert store.has(SHA) and store.where(SHA) == f"s3://{bucket.name}/{KEY}"
    assert machine(bucket, tmp_path / "b").get(SHA, "digits:1") == ONNX


def test_identical_puts_store_one_object_and_upload_it_once(bucket: s3.Bucket, tmp_path: Path) -> None:
    client = s3.client(bucket.endpoint)
    client.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    first = machine(bucket, tmp_path / "a")
    assert first.put(ONNX) == first.put(ONNX) == machine(bucket, tmp_path / "b").put(ONNX) == SHA
    assert s3.keys(bucket) == [KEY]
    uploads = client.list_object_versions(Bucket=bucket.name)["Versions"]
    assert len(uploads) == 1  # a versioned bucket keeps every put: the later ones were skipped


def test_a_put_over_a_corrupt_object_replaces_it(bucket: s3.Bucket, tmp_path: Path) -> None:
    store = machine(bucket, tmp_path)
    store.put(ONNX)
    s3.write(bucket, KEY, b"\x00" + ONNX[1:])  # same size, other bytes
    store.put(ONNX)
    assert s3.read(bucket, KEY) == ONNX


def test_a_read_is_served_from_the_cache_once_fetched(bucket: s3.Bucket, tmp_path: Path) -> None:
    machine(bucket, tmp_path / "a").put(ONNX)
    home = tmp_path / "b"
    reader = machine(bucket, home)
    assert not s3.cached(home, SHA).exists()
    assert reader.get(SHA) == ONNX
    assert s3.cached(home, SHA).read_bytes() == ONNX
    s3.remove(bucket, KEY)  # the second read must not need the bucket
    assert reader.get(SHA) == ONNX
    with pytest.raises(NotFound, match=f"artifact {SHA[:12]} \\(digits:1\\) is missing"):
        machine(bucket, tmp_path / "c").get(SHA, "digits:1")


def test_a_corrupt_cached_copy_is_dropped_and_fetched_again(bucket: s3.Bucket, tmp_path: Path) -> None:
    store = machine(bucket, tmp_path)
    store.put(ONNX)
    copy = s3.cached(tmp_path, SHA)
    copy.write_bytes(b"bit rot" + ONNX[7:])
    assert store.get(SHA, "digits:1") == ONNX
    assert copy.read_bytes() == ONNX


def test_a_corrupt_object_is_refused_naming_the_version_not_the_bucket(
    bucket: s3.Bucket, tmp_path: Path
) -> None:
    machine(bucket, tmp_path / "a").put(ONNX)
    s3.write(bucket, KEY, ONNX[:-1] + b"\x00")
    home = tmp_path / "b"
    with pytest.raises(CorruptArtifact) as refused:
        machine(bucket, home).get(SHA, "digits:3")
    message = str(refused.value)
    assert message.startswith(
        f"artifact {SHA[:12]} (digits:3) is corrupt in the artifact store: its sha256 is"
    )
    assert message.endswith(f"the registry expects {SHA[:12]}...")
    assert bucket.name not in message and "127.0.0.1" not in message and "testing" not in message
    assert not s3.cached(home, SHA).exists()  # bad bytes are never cached


def test_an_unreachable_store_is_one_line_without_its_address(
    bucket: s3.Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = machine(bucket, tmp_path)
    for action in (lambda: store.get(SHA, "digits:1"), lambda: store.put(ONNX)):
        with pytest.raises(Unavailable) as failed:
            action()
        message = str(failed.value)
        assert "the store cannot be reached (EndpointConnectionError)" in message
        assert "\n" not in message and "127.0.0.1" not in message and bucket.name not in message


def test_missing_credentials_are_named_as_such(
    bucket: s3.Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for either
    with pytest.raises(Unavailable) as failed:
        machine(bucket, tmp_path).get(SHA, "digits:1")
    assert str(failed.value) == (
        f"cannot fetch artifact {SHA[:12]} (digits:1): no credentials "
        "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    )


def test_a_store_that_is_not_s3_writes_a_temporary_name_then_moves_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    store = RemoteArtifactStore(shared.as_uri(), ArtifactStore(tmp_path / "cache"))
    assert store.put(ONNX) == SHA
    assert [p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file()] == [
        f"{SHA[:2]}/{SHA}"
    ]
    assert RemoteArtifactStore(shared.as_uri(), ArtifactStore(tmp_path / "other")).get(SHA) == ONNX


def test_a_registry_on_the_shared_store(bucket: s3.Bucket, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "a", artifacts=bucket.url())
    registry = Registry.open(settings)
    try:
        record = register_digits(registry)
        assert s3.keys(bucket) == [KEY]
        assert registry.artifact(record) == ONNX
        registry.delete("digits", record.number)
        assert s3.keys(bucket) == []
        assert not s3.cached(settings.home_dir, SHA).exists()
    finally:
        registry.close()


def test_check_verifies_the_shared_objects_and_fix_removes_old_unreferenced_ones(
    bucket: s3.Bucket, tmp_path: Path
) -> None:
    registry = Registry.open(Settings(home=tmp_path, artifacts=bucket.url()))
    try:
        record = register_digits(registry)
        orphan = registry.artifacts.put(b"no version uses these bytes")  # shared and cached
        stale = registry.artifacts.cache.put(b"a version deleted from another machine")  # cached only
        report = check(registry)
        assert (report.versions, report.artifacts, report.problems) == (1, 1, [])
        assert sorted(report.skipped) == [
            "recent unreferenced blob left alone (a register may be using it): "
            f"s3://{bucket.name}/models/{orphan[:2]}/{orphan}",
            "recent unreferenced cached copy left alone (a register may be using it): "
            f"{s3.cached(tmp_path, stale)}",
        ]
        later = time.time() + 2 * BLOB_GRACE_S
        report = check(registry, fix=True, now=later)
        assert [(p.message.split(" (")[0], p.fixed) for p in report.problems] == [
            (f"unreferenced blob {orphan[:12]}", True),
            (f"unreferenced cached copy {stale[:12]}", True),
        ]
        assert s3.keys(bucket) == [KEY]
        assert not s3.cached(tmp_path, orphan).exists() and not s3.cached(tmp_path, stale).exists()
        assert s3.cached(tmp_path, SHA).exists()

        s3.write(bucket, KEY, b"\x00" + ONNX[1:])  # the cache still holds good bytes: check asks the bucket
        [problem] = check(registry, now=later).problems
        assert problem.kind == "corrupt" and problem.message.startswith(
            f"artifact {SHA[:12]} ({record.ref}) is corrupt: its sha256 is"
        )
        assert problem.message.endswith(f"at s3://{bucket.name}/{KEY}")
        s3.remove(bucket, KEY)
        [problem] = check(registry, now=later).problems
        assert problem.kind == "missing"
    finally:
        registry.close()


def shipyard(home: Path, bucket: s3.Bucket, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **bucket.env, "SHIPYARD_HOME": str(home), "SHIPYARD_ARTIFACTS": bucket.url()}
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_the_cli_names_a_corrupt_shared_artifact_in_one_line(bucket: s3.Bucket, tmp_path: Path) -> None:
    registry = Registry.open(Settings(home=tmp_path, artifacts=bucket.url()))
    register_digits(registry)
    registry.close()
    s3.write(bucket, KEY, ONNX[:-1] + b"\x00")
    s3.cached(tmp_path, SHA).unlink()  # another machine: nothing cached yet
    result = shipyard(tmp_path, bucket, "model", "export", "digits:1", str(tmp_path / "out.onnx"))
    assert result.returncode == 1
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: artifact {SHA[:12]} (digits:1) is corrupt in the artifact store")
    assert bucket.name not in result.stderr and not (tmp_path / "out.onnx").exists()


def test_without_s3fs_the_cli_says_what_to_install(bucket: s3.Bucket, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None\n"  # as if shipyard[s3] were not installed
        "from shipyard.cli import main\nsys.argv = ['shipyard', 'model', 'list']\nmain()\n"
    )
    env = {**os.environ, **bucket.env, "SHIPYARD_HOME": str(tmp_path), "SHIPYARD_ARTIFACTS": bucket.url()}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: SHIPYARD_ARTIFACTS={bucket.url()} needs a backend not installed "
        "(Install s3fs to access S3): pip install 'shipyard[s3]'\n"
    )
