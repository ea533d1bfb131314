"""Runners and the model manager alone: providers, warm-up, version lookup, refusal of corrupt bytes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shipyard.errors import CorruptArtifact, InvalidInput, NotFound, Unavailable
from shipyard.registry import Registry
from shipyard.runtime import ModelManager, Runner, RunnerOptions
from shipyard.runtime.session import choose_providers
from tests.conftest import register_digits
from tests.models import digits_data, digits_linear


def test_cpu_is_always_the_last_resort() -> None:
    assert choose_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(None)[-1] == "CPUExecutionProvider"


def test_runner_runs_off_the_loop_and_unloads() -> None:
    runner = Runner("digits:1", digits_linear().onnx_bytes, RunnerOptions(intra_op_threads=1))
    runner.load()
    X, _ = digits_data()
    (logits,) = asyncio.run(runner.run({"input": X[:3]}))
    np.testing.assert_allclose(logits, digits_linear().logits(X[:3]), rtol=1e-5, atol=1e-4)
    runner.unload()
    with pytest.raises(Unavailable, match="not loaded"):
        runner.run_sync({"input": X[:3]})


def test_runner_refuses_garbage_bytes_clearly() -> None:
    with pytest.raises(Unavailable, match="cannot load the model"):
        Runner("bad:1", b"garbage", RunnerOptions()).load()


def test_runner_turns_ort_input_errors_into_invalid_input() -> None:
    runner = Runner("digits:1", digits_linear().onnx_bytes, RunnerOptions())
    runner.load()
    with pytest.raises(InvalidInput, match="refused the input"):
        runner.run_sync({"input": np.zeros((1, 3), np.float32)})
    runner.unload()


def test_manager_default_version_and_lookups(registry: Registry) -> None:
    register_digits(registry)
    register_digits(registry)
    registry.set_alias("digits", 1, "production")
    manager = ModelManager(registry, RunnerOptions())
    manager.load(["digits"])
    try:
        assert manager.get("digits").number == 1
        assert manager.get("digits", "2").number == 2
        with pytest.raises(NotFound, match="no version 7 loaded"):
            manager.get("digits", "7")
        with pytest.raises(NotFound, match="not served"):
            manager.get("other")
        assert manager.ready() and manager.names == ["digits"]
    finally:
        manager.unload_all()
    assert not manager.ready()


def test_manager_refuses_a_corrupt_artifact(registry: Registry) -> None:
    record = register_digits(registry)
    path = registry.artifacts.path(record.sha256)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(CorruptArtifact, match="is corrupt"):
        ModelManager(registry, RunnerOptions()).load()


def test_manager_with_an_empty_registry_says_what_to_do(registry: Registry) -> None:
    with pytest.raises(NotFound, match="shipyard model import"):
        ModelManager(registry, RunnerOptions()).load()
