"""The pure layers import without the heavy ones: a batcher, the protocol codec or the drift maths
used alone (a Ray replica, a batch job, a test) must not pay for ONNX Runtime, SQLAlchemy or a web
framework. Each check runs in a fresh interpreter, where nothing else has imported them yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "onnxruntime", "starlette", "fastapi", "grpc", "torch")


@pytest.mark.parametrize(
    "module",
    ["shipyard.runtime.batcher", "shipyard.protocol.v2", "shipyard.signature", "shipyard.monitor.drift"],
)
def test_a_pure_module_imports_alone(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"importing {module} pulled in {loaded.stdout.strip()}"


SHARED_STORE = ("fsspec", "s3fs", "boto3", "botocore", "aiobotocore")


def test_a_server_on_local_artifacts_imports_no_shared_store_client(tmp_path: Path) -> None:
    """fsspec, s3fs and boto come in with SHIPYARD_ARTIFACTS alone (an optional extra, shipyard[s3])."""
    code = (
        "import sys\nimport shipyard.server.serving\nfrom shipyard.config import Settings\n"
        "from shipyard.registry import Registry\n"
        f"Registry.open(Settings(home={str(tmp_path)!r})).close()\n"
        f"print(' '.join(m for m in {SHARED_STORE!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"a local server pulled in {loaded.stdout.strip()}"
