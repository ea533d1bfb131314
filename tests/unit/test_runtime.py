"""Runners and the model manager alone: providers, warm-up, version lookup, refusal of corrupt bytes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from shipyard.errors import InvalidInput, NotFound, Unavailable
from shipyard.registry import Registry
from shipyard.runtime import ModelManager, Runner, RunnerOptions
from shipyard.runtime.session import INLINE_BELOW_S, choose_providers
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


@pytest.mark.parametrize(
    ("options", "threads"),
    [
        (RunnerOptions(execution="loop"), 1),  # a run on the loop: ORT's spinning pool would take its core
        (RunnerOptions(intra_op_threads=2, execution="loop"), 2),  # a count that was set is kept
        (RunnerOptions(execution="threads"), 0),  # a run on threads: ORT's own choice, every core
    ],
)
def test_a_model_that_runs_on_the_loop_gets_one_ort_thread_unless_a_count_was_set(
    options: RunnerOptions, threads: int
) -> None:
    runner = Runner("digits:1", digits_linear().onnx_bytes, options)
    runner.load()
    X, _ = digits_data()
    runner.choose_execution({"input": X[:1]})
    assert runner.threads == threads
    (logits,) = runner.run_sync({"input": X[:3]})
    np.testing.assert_allclose(logits, digits_linear().logits(X[:3]), rtol=1e-5, atol=1e-4)
    runner.unload()


@pytest.mark.parametrize(
    ("options", "inline"),
    [
        (RunnerOptions(intra_op_threads=1), None),  # auto: as the measured run time says
        (RunnerOptions(intra_op_threads=1, instances=2), False),  # concurrent runs need threads
        (RunnerOptions(intra_op_threads=1, execution="threads"), False),
        (RunnerOptions(intra_op_threads=1, execution="loop"), True),
    ],
)
def test_runs_happen_where_the_options_and_the_measured_run_time_say(
    options: RunnerOptions, inline: bool | None
) -> None:
    runner = Runner("digits:1", digits_linear().onnx_bytes, options)
    runner.load()
    X, _ = digits_data()
    runner.choose_execution({"input": X[:1]})
    assert runner.run_s is not None and runner.run_s > 0
    expected = runner.run_s < INLINE_BELOW_S if inline is None else inline
    assert runner.inline is expected
    threads: list[int] = []
    run_sync = runner.run_sync

    def noting_the_thread(*args: Any) -> list[np.ndarray]:
        threads.append(threading.get_ident())
        return run_sync(*args)

    runner.run_sync = noting_the_thread  # type: ignore[method-assign,assignment]

    async def run() -> tuple[list[np.ndarray], int]:
        return await runner.run({"input": X[:3]}), threading.get_ident()

    (logits,), loop_thread = asyncio.run(run())
    np.testing.assert_allclose(logits, digits_linear().logits(X[:3]), rtol=1e-5, atol=1e-4)
    assert (threads == [loop_thread]) is expected
    runner.unload()


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
    assert not manager.ready()  # not before its batchers run

    async def serve() -> None:
        await manager.start()
        try:
            assert manager.ready() and manager.names == ["digits"]
            assert manager.record("digits").number == 1
            assert manager.record("digits", "2").number == 2
            X, _ = digits_data()
            async with manager.use("digits") as loaded:
                assert loaded.number == 1 and loaded.in_flight == 1
                (logits,) = await loaded.infer({"input": X[:2]}, None)
            assert loaded.in_flight == 0
            np.testing.assert_allclose(logits, digits_linear().logits(X[:2]), rtol=1e-5, atol=1e-4)
            with pytest.raises(NotFound, match="no version 7 served"):
                manager.record("digits", "7")
            with pytest.raises(NotFound, match="not served"):
                async with manager.use("other"):
                    pass
        finally:
            await manager.aclose()

    asyncio.run(serve())
    manager.unload_all()
    assert not manager.ready()


def test_batch_settings_follow_the_signature() -> None:
    from shipyard.config import ModelServing
    from shipyard.runtime.loading import batch_settings
    from shipyard.signature import Signature, TensorSpec
    from tests.conftest import DIGITS_SIGNATURE

    fixed = Signature((TensorSpec("x", "FP32", (1, 64)),), (TensorSpec("y", "FP32", (1, 10)),))
    assert batch_settings(ModelServing(max_batch_size=8), DIGITS_SIGNATURE).max_batch_size == 8
    assert batch_settings(ModelServing(batching=False), DIGITS_SIGNATURE).max_batch_size == 1
    assert batch_settings(ModelServing(max_batch_size=8), fixed).max_batch_size == 1


def test_manager_refuses_a_corrupt_artifact_when_nothing_else_can_serve(registry: Registry) -> None:
    record = register_digits(registry)
    path = registry.artifacts.path(record.sha256)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(Unavailable, match=r"no model could be loaded: digits:1: .* is corrupt"):
        ModelManager(registry, RunnerOptions()).load()
    assert registry.history("digits")[-1].kind == "load-failed"


def test_manager_with_an_empty_registry_says_what_to_do(registry: Registry) -> None:
    with pytest.raises(NotFound, match="shipyard model import"):
        ModelManager(registry, RunnerOptions()).load()


def test_version_policies() -> None:
    from shipyard.runtime.policy import wanted_versions

    assert wanted_versions("all", [1, 2, 3], 2) == {1, 2, 3}
    assert wanted_versions("latest 2", [1, 2, 3, 4], 1) == {1, 3, 4}  # the default always stays
    assert wanted_versions("specific 2,9", [1, 2, 3], None) == {2}


def test_manager_follows_the_registry_within_its_policy(registry: Registry) -> None:
    from shipyard.config import ModelServing

    for _ in range(3):
        register_digits(registry)
    registry.deploy("digits", 1)
    manager = ModelManager(registry, RunnerOptions(), ModelServing(versions="latest 1"))
    manager.load(["digits"])
    assert sorted(manager.served("digits").versions) == [1, 3]

    async def follow() -> list[list[str]]:
        await manager.start()
        try:
            register_digits(registry)  # version 4: the newest now
            first = await manager.refresh()
            assert sorted(manager.served("digits").versions) == [1, 4]
            registry.deploy("digits", 4)
            second = await manager.refresh()
            assert manager.record("digits").number == 4
            assert sorted(manager.served("digits").versions) == [4]
            X, _ = digits_data()
            async with manager.use("digits") as loaded:
                (logits,) = await loaded.infer({"input": X[:1]}, None)
            np.testing.assert_allclose(logits, digits_linear().logits(X[:1]), rtol=1e-5, atol=1e-4)
            return [first, second]
        finally:
            await manager.aclose()
            manager.unload_all()

    first, second = asyncio.run(follow())
    assert first == ["digits: loaded version 4", "digits: unloaded version 3"]
    assert second == ["digits: default version 1 -> 4", "digits: unloaded version 1"]
