"""`shipyard registry check` and `shipyard token ...` as a user runs them, on real files and databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from shipyard.registry import tempfiles as tf
from shipyard.registry.check import BLOB_GRACE_S
from shipyard.registry.tokens import hash_token
from tests.conftest import ENGINES, POSTGRES_URL, open_registry, register_digits


def shipyard(settings: Settings, *args: str, code: int = 0) -> list[str]:
    env = {**os.environ, "SHIPYARD_HOME": str(settings.home_dir), "COLUMNS": "160"}
    if settings.database_url:
        env["SHIPYARD_DATABASE_URL"] = settings.database_url
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == code, result.stdout + result.stderr
    return (result.stdout + result.stderr).strip().splitlines()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(child.stdout)


def age(path: Path, seconds: float) -> None:
    old = path.stat().st_mtime - seconds
    os.utime(path, (old, old))


def test_check_passes_a_sound_registry(settings: Settings) -> None:
    registry = Registry.open(settings)
    register_digits(registry)
    register_digits(registry, name="other")
    registry.close()
    assert shipyard(settings, "registry", "check") == ["checked 2 versions (1 artifacts): 0 problems"]


def test_check_reports_and_fix_removes_leftovers_but_never_referenced_artifacts(settings: Settings) -> None:
    registry = Registry.open(settings)
    record = register_digits(registry)
    kept = registry.artifacts.path(record.sha256)
    age(kept, 10 * BLOB_GRACE_S)  # old and referenced: must stay
    folder = kept.parent
    dead = folder / f".tmp-{tf.host()}-{dead_pid()}-abcd1234"
    dead.write_bytes(b"x" * 1000)
    alive = folder / f".tmp-{tf.host()}-{os.getpid()}-efgh5678"
    alive.write_bytes(b"y" * 10)
    orphan = registry.artifacts.path(registry.artifacts.put(b"no version uses these bytes"))
    age(orphan, 2 * BLOB_GRACE_S)
    fresh = registry.artifacts.path(registry.artifacts.put(b"a register may be about to use these"))
    registry.close()

    lines = shipyard(settings, "registry", "check", code=1)
    assert f"leftover temporary file {dead} (1,000 bytes, its writer (pid " in lines[0]
    assert lines[1].startswith(f"unreferenced blob {orphan.name[:12]} (27 bytes) at {orphan}")
    assert any(line.startswith("temporary file in use, left alone") and str(alive) in line for line in lines)
    assert any(
        line.startswith("recent unreferenced blob left alone") and str(fresh) in line for line in lines
    )
    assert lines[-1] == "checked 1 versions (1 artifacts): 2 problems; --fix removes the leftovers"
    assert dead.exists() and orphan.exists()

    lines = shipyard(settings, "registry", "check", "--fix")
    assert lines[0].startswith(f"removed leftover temporary file {dead}")
    assert lines[-1] == "checked 1 versions (1 artifacts): 2 problems, 2 fixed (1,027 bytes freed)"
    assert not dead.exists() and not orphan.exists()
    assert kept.exists() and alive.exists() and fresh.exists()
    assert shipyard(settings, "registry", "check")[-1] == "checked 1 versions (1 artifacts): 0 problems"


def test_a_corrupt_or_missing_artifact_is_reported_and_kept(settings: Settings) -> None:
    registry = Registry.open(settings)
    record = register_digits(registry)
    register_digits(registry)  # the same bytes: both versions share the artifact
    register_digits(registry, name="wide")
    registry.close()
    path = Path(str(settings.home_dir / "artifacts" / record.sha256[:2] / record.sha256))
    with path.open("r+b") as f:
        f.seek(10)
        f.write(b"\x00\x01\x02")
    for fix in ([], ["--fix"]):
        lines = shipyard(settings, "registry", "check", *fix, code=1)
        assert lines[0].startswith(
            f"artifact {record.sha256[:12]} (digits:1, digits:2, wide:1) is corrupt: its sha256 is"
        )
        assert lines[0].endswith(f"at {path}")
        assert lines[-1] == (
            "checked 3 versions (1 artifacts): 1 problem; re-import or delete the versions named above"
        )
        assert path.exists()
    path.unlink()
    lines = shipyard(settings, "registry", "check", code=1)
    assert (
        lines[0]
        == f"artifact {record.sha256[:12]} (digits:1, digits:2, wide:1) is missing: expected at {path}"
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_token_commands(settings: Settings, engine: str) -> None:
    open_registry(settings, engine).close()
    if engine == "postgresql":
        assert POSTGRES_URL is not None
        settings = settings.model_copy(update={"database_url": POSTGRES_URL})
    assert shipyard(settings, "token", "list") == [
        "no tokens yet: shipyard token create NAME --scope predict"
    ]
    out = shipyard(
        settings,
        *("token", "create", "ci", "--scope", "predict", "--scope", "feedback"),
        *("--model", "digits", "--model", "iris", "--rate", "100", "--burst", "200"),
    )
    assert (
        out[0] == "created token ci (scopes predict, feedback; models digits, iris; rate 100/s (burst 200))"
    )
    secret = out[1]
    assert secret.startswith("shp_")
    assert out[2] == "this secret cannot be shown again: only its hash is stored"
    shipyard(settings, "token", "create", "reader", "--scope", "read")

    listing = "\n".join(shipyard(settings, "token", "list"))
    assert secret not in listing and hash_token(secret) not in listing
    rows = [line for line in listing.splitlines() if line.startswith("│")]
    assert [r.split("│")[1:5] for r in rows] == [
        [" ci     ", " predict, feedback ", " digits, iris ", " 100/s (burst 200) "],
        [" reader ", " read              ", " all          ", " unlimited         "],
    ]
    registry = Registry.open(settings)
    try:
        assert [t.sha256 for t in registry.tokens() if t.name == "ci"] == [hash_token(secret)]
    finally:
        registry.close()

    assert shipyard(settings, "token", "create", "ci", "--scope", "read", code=1) == [
        "error: a token named 'ci' exists: revoke it first, or pick another name"
    ]
    assert shipyard(settings, "token", "create", "x", "--scope", "write", code=1) == [
        "error: unknown scope 'write': use predict, feedback, read, admin"
    ]
    assert shipyard(settings, "token", "revoke", "ci") == ["revoked token ci"]
    assert shipyard(settings, "token", "revoke", "ci", code=1) == ["error: no active token named 'ci'"]
    assert "ci" not in "\n".join(shipyard(settings, "token", "list"))
