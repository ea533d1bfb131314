"""The pure layers import without the heavy ones: a batcher, the protocol codec or the drift maths
used alone (a Ray replica, a batch job, a test) must not pay for ONNX Runtime, SQLAlchemy or a web
framework. Each check runs in a fresh interpreter, where nothing else has imported them yet."""

from __future__ import annotations

import subprocess
import sys

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
