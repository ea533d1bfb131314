"""The memory budget: least recently used idle versions unload, others load on their next request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from shipyard.errors import Overloaded
from shipyard.registry import Registry
from shipyard.runtime import ModelManager, RunnerOptions
from shipyard.runtime.memory import MB
from tests.conftest import DIGITS_SIGNATURE
from tests.models import dense_model, digits_data

# Each dense model holds 16.6 MB of weights and costs ONNX Runtime about 60-70 MB resident (its copy
# of the weights, a pre-packed one, buffers). Measured in a process that has run many tests before,
# the growth can hide in memory freed earlier, so here each version counts a fixed 60 MB: 160 MB holds
# two, never three. (tests/integration/test_memory.py runs the same budget on measured costs, in a
# fresh server process.)
BUDGET_MB = 160


def budgeted(registry: Registry, budget_mb: int, room_wait_s: float = 30.0) -> ModelManager:
    return ModelManager(
        registry,
        RunnerOptions(intra_op_threads=1),
        memory_budget_mb=budget_mb,
        cost=lambda _v: 60 * MB,
        room_wait_s=room_wait_s,
    )


@pytest.fixture
def three_models(registry: Registry) -> Iterator[Registry]:
    for seed in range(3):
        registry.register(
            f"m{seed}", dense_model(seed).onnx_bytes, signature=DIGITS_SIGNATURE, framework="onnx", check={}
        )
    yield registry


async def ask(manager: ModelManager, name: str, rows: np.ndarray) -> int:
    """Infer on `name` and check the answer against numpy; returns the id of the version that ran."""
    async with manager.use(name) as loaded:
        (logits,) = await loaded.infer({"input": rows}, None)
    expected = dense_model(int(name[1:])).logits(rows)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-3)
    return id(loaded)


def states(manager: ModelManager) -> dict[str, str]:
    return {name: manager.state(name, 1)[0] for name in ("m0", "m1", "m2")}


def test_a_budget_for_two_of_three_models_unloads_the_least_recently_used(three_models: Registry) -> None:
    manager = budgeted(three_models, BUDGET_MB)
    manager.load()
    assert states(manager) == {"m0": "READY", "m1": "READY", "m2": "UNAVAILABLE"}
    assert "loads on its next request" in manager.state("m2", 1)[1]
    X = digits_data()[0][:4]

    async def traffic() -> list[dict[str, str]]:
        await manager.start()
        seen = []
        try:
            for name in ["m0", "m1", "m2", "m0", "m2", "m1"]:
                await ask(manager, name, X)
                seen.append(states(manager))
                assert manager.residency.resident_bytes() <= BUDGET_MB * MB
        finally:
            await manager.aclose()
            manager.unload_all()
        return seen

    seen = asyncio.run(traffic())
    r, u = "READY", "UNAVAILABLE"
    assert seen == [
        {"m0": r, "m1": r, "m2": u},
        {"m0": r, "m1": r, "m2": u},
        {"m0": u, "m1": r, "m2": r},  # m2 loads; m0 was the least recently used
        {"m0": r, "m1": u, "m2": r},  # m0 back; m1 goes
        {"m0": r, "m1": u, "m2": r},
        {"m0": u, "m1": r, "m2": r},
    ]


def test_requests_for_a_version_being_loaded_wait_for_that_one_load(three_models: Registry) -> None:
    manager = budgeted(three_models, BUDGET_MB)
    manager.load()
    X = digits_data()[0]

    async def burst() -> set[int]:
        await manager.start()
        try:
            tasks = [asyncio.create_task(ask(manager, "m2", X[i : i + 2])) for i in range(8)]
            await asyncio.sleep(0)  # let the requests start: the first one starts the load
            assert manager.state("m2", 1) == ("LOADING", "")
            return set(await asyncio.gather(*tasks))
        finally:
            await manager.aclose()
            manager.unload_all()

    assert len(asyncio.run(burst())) == 1  # every request ran on the one version loaded


def test_versions_answering_requests_are_never_unloaded(three_models: Registry) -> None:
    manager = budgeted(three_models, 100, room_wait_s=0.2)
    manager.load(["m0", "m1"])
    assert manager.state("m1", 1)[0] == "UNAVAILABLE"  # only one fits
    X = digits_data()[0][:2]

    async def hold() -> None:
        await manager.start()
        try:
            async with manager.use("m0"):  # a request in flight on m0
                with pytest.raises(Overloaded, match=r"could not load within 0\.2 s"):
                    await ask(manager, "m1", X)
            await ask(manager, "m1", X)  # m0 idle now: it makes room
            assert manager.state("m0", 1)[0] == "UNAVAILABLE"
        finally:
            await manager.aclose()
            manager.unload_all()

    asyncio.run(hold())


def test_requests_for_two_versions_that_do_not_fit_together_both_get_answers(three_models: Registry) -> None:
    """With room for one version, m1 and m2 asked at once: each load must serve its own waiters
    before the other load may unload it (they used to evict each other for ever)."""
    manager = budgeted(three_models, 100)
    manager.load(["m0", "m1", "m2"])
    X = digits_data()[0][:2]

    async def both() -> None:
        await manager.start()
        try:
            await asyncio.wait_for(asyncio.gather(ask(manager, "m1", X), ask(manager, "m2", X)), 60)
        finally:
            await manager.aclose()
            manager.unload_all()

    asyncio.run(both())
