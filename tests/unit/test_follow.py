"""A model's serving settings change while it serves (runtime/follow.py, runtime/reconfigure.py):
the manager follows the registry, rebuilds what the settings touch, swaps it in at once and drains the
old; requests queued before the swap finish on the old batcher, none fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from shipyard.errors import Unavailable
from shipyard.registry import Registry
from shipyard.runtime import LoadedVersion, ModelManager, RunnerOptions
from tests.conftest import register_digits
from tests.models import digits_data, digits_linear

X, _ = digits_data()


@pytest.fixture
def manager(registry: Registry) -> Iterator[ModelManager]:
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 1)
    manager = ModelManager(registry, RunnerOptions(intra_op_threads=1))
    manager.load(["digits"])
    yield manager
    manager.unload_all()


def serving(manager: ModelManager, body: Callable[[], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        await manager.start()
        try:
            return await body()
        finally:
            await manager.aclose()

    return asyncio.run(run())


async def answer(manager: ModelManager, row: int) -> LoadedVersion:
    """One request for digits, checked against numpy; returns the version that answered."""
    async with manager.use("digits") as loaded:
        (logits,) = await loaded.infer({"input": X[row : row + 1]}, None)
    np.testing.assert_allclose(logits, digits_linear().logits(X[row : row + 1]), rtol=1e-5, atol=1e-4)
    return loaded


def test_batching_settings_change_on_the_same_runner(registry: Registry, manager: ModelManager) -> None:
    before = {n: v for n, v in manager.served("digits").versions.items()}

    async def body() -> list[str]:
        # they queue on the old batchers at refresh's first await, before anything is swapped
        queued = [asyncio.create_task(answer(manager, i)) for i in range(40)]
        registry.configure("digits", {"max_batch_size": 8, "max_queue_delay_us": 500, "timeout_s": 5})
        changes = await manager.refresh()
        answered = await asyncio.gather(*queued)
        assert {v.batcher for v in answered} == {before[1].batcher}  # they finished where they queued
        after = await answer(manager, 0)
        assert after.batcher is not before[1].batcher and after.runner is before[1].runner
        return changes

    changes = serving(manager, body)
    assert changes == ["digits: now served with max_batch_size=8, max_queue_delay_us=500, timeout_s=5.0"]
    served = manager.served("digits")
    assert served.serving.max_batch_size == 8
    for number, version in served.versions.items():
        assert version.batcher.settings.max_batch_size == 8
        assert version.batcher.settings.max_queue_delay_us == 500
        assert version.batcher.settings.timeout_s == 5
        assert version.runner is before[number].runner  # no new session for batching settings
        assert before[number].batcher.queued == 0


def test_new_instances_get_new_runners_and_the_old_ones_go(registry: Registry, manager: ModelManager) -> None:
    before = {n: v for n, v in manager.served("digits").versions.items()}

    async def body() -> None:
        queued = [asyncio.create_task(answer(manager, i)) for i in range(40)]
        registry.configure("digits", {"instances": 2, "max_in_flight": 5})
        await manager.refresh()
        await asyncio.gather(*queued)
        await answer(manager, 1)

    serving(manager, body)
    served = manager.served("digits")
    assert served.serving.in_flight_limit == 5  # what admission reads for every request
    for number, version in served.versions.items():
        assert version.batcher.settings.instances == 2
        assert version.runner is not before[number].runner
        with pytest.raises(Unavailable, match="not loaded"):  # the old session is gone
            before[number].runner.run_sync({"input": X[:1]})
    resident = served.versions.values()
    assert manager.residency.resident_bytes() == sum(v.memory_bytes for v in resident)  # old ones gone


def test_the_version_policy_changes_live(registry: Registry, manager: ModelManager) -> None:
    register_digits(registry)

    async def body() -> list[str]:
        changes = await manager.refresh()
        registry.configure("digits", {"versions": "latest 1"})
        return changes + await manager.refresh()

    changes = serving(manager, body)
    assert sorted(manager.served("digits").versions) == [1, 3]  # the default always stays
    assert "digits: unloaded version 2" in changes
    assert manager.state("digits", 2) == ("UNAVAILABLE", "not in the version policy (latest 1)")


def test_settings_that_cannot_be_built_change_nothing(registry: Registry, manager: ModelManager) -> None:
    old = manager.served("digits").versions[1]
    record = registry.version("digits", 1)
    path = registry.artifacts.path(record.sha256)
    path.write_bytes(path.read_bytes() + b"tampered")  # a new session must read it again: refused

    async def body() -> list[str]:
        registry.configure("digits", {"instances": 3})
        changes = await manager.refresh()
        await answer(manager, 2)
        return changes

    assert serving(manager, body) == []
    served = manager.served("digits")
    assert served.serving.instances == 1 and served.versions[1] is old
    assert old.batcher.settings.instances == 1


def test_within_a_memory_budget_the_new_copy_makes_room_like_any_load(registry: Registry) -> None:
    from tests.conftest import DIGITS_SIGNATURE
    from tests.models import dense_model
    from tests.unit.test_memory_budget import BUDGET_MB, ask, budgeted

    for seed in range(2):
        registry.register(
            f"m{seed}", dense_model(seed).onnx_bytes, signature=DIGITS_SIGNATURE, framework="onnx", check={}
        )
    manager = budgeted(registry, BUDGET_MB)  # room for two versions
    manager.load()
    old = manager.served("m0").versions[1]

    async def body() -> None:
        await ask(manager, "m1", X[:2])  # m0 is the least recently used now, yet it is the one rebuilt
        registry.configure("m0", {"instances": 2})
        await manager.refresh()
        assert [manager.state(name, 1)[0] for name in ("m0", "m1")] == ["READY", "UNAVAILABLE"]
        await ask(manager, "m0", X[:2])
        await ask(manager, "m1", X[:2])  # loads again on its request

    try:
        serving(manager, body)
        assert manager.served("m0").versions[1].batcher.settings.instances == 2
        assert manager.served("m0").versions[1] is not old
    finally:
        manager.unload_all()


def test_a_split_waits_for_its_versions_to_load(registry: Registry, manager: ModelManager) -> None:
    from tests.conftest import DIGITS_SIGNATURE, LABELS

    onnx = digits_linear(seed=3).onnx_bytes
    broken = registry.register(
        "digits", onnx, signature=DIGITS_SIGNATURE, framework="onnx", check={}, labels=LABELS
    )
    path = registry.artifacts.path(broken.sha256)
    path.write_bytes(path.read_bytes() + b"tampered")

    async def body() -> tuple[list[str], object, set[int], list[str]]:
        registry.set_split("digits", {3: 10})
        refused = await manager.refresh()  # version 3 cannot load: no split yet, 1 answers everything
        waiting = manager.served("digits").split
        routed = {manager.record("digits").number for _ in range(200)}
        registry.set_split("digits", {2: 30})
        return refused, waiting, routed, await manager.refresh()

    refused, waiting, routed, applied = serving(manager, body)
    assert not any("traffic" in change for change in refused) and waiting is None and routed == {1}
    assert applied == ["digits: traffic split 1=70%, 2=30%"]
    assert str(manager.served("digits").split) == "1=70%, 2=30%"
