"""Alias moves racing: deploys and rollbacks of one model from separate registries (separate engines, as
separate processes have) must each be one serialised step, so the history stays one unbroken chain."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from threading import Barrier

import pytest

import shipyard
from shipyard.config import Settings
from shipyard.errors import Conflict
from shipyard.registry import ArtifactStore, Event, Registry
from tests.conftest import ENGINES, open_registry, register_digits

ROUNDS = 100
ALIAS_CHANGES = {"alias", "restore", "deploy", "rollback"}


@pytest.fixture(params=ENGINES)
def registry(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Registry]:
    reg = open_registry(settings, request.param)
    for _ in range(3):
        register_digits(reg)
    yield reg
    reg.close()


def broken_links(events: list[Event]) -> int:
    """Alias changes whose from_version is not the version the previous change of that alias set."""
    last: dict[str, int | None] = {}
    broken = 0
    for e in events:
        if e.kind not in ALIAS_CHANGES:
            continue
        broken += e.from_version != last.get(e.detail)
        last[e.detail] = e.version
    return broken


def race(registry: Registry, moves: Callable[[int, Registry], list[Callable[[], object]]]) -> None:
    """ROUNDS rounds; in each, every move of the round starts at once from its own Registry."""
    others = [Registry(registry.url, ArtifactStore(registry.artifacts.root)) for _ in range(2)]
    try:
        with ThreadPoolExecutor(len(others)) as pool:
            for i in range(ROUNDS):
                start = Barrier(len(others))
                steps = moves(i, others[0]) + moves(i + 1, others[1])

                def run(step: Callable[[], object], start: Barrier = start) -> None:
                    start.wait(timeout=30)
                    with suppress(Conflict):  # a rollback with nothing to go back to moves nothing
                        step()

                for future in [pool.submit(run, step) for step in steps]:
                    future.result()
    finally:
        for other in others:
            other.close()


def test_concurrent_deploys_keep_one_chain(registry: Registry) -> None:
    def deploy(i: int, reg: Registry) -> list[Callable[[], object]]:
        return [lambda: reg.deploy("digits", i % 3 + 1)]

    race(registry, deploy)
    history = registry.history("digits")
    assert sum(e.kind == "deploy" for e in history) == 2 * ROUNDS
    assert broken_links(history) == 0
    assert_rollback_follows_history(registry)


def test_concurrent_deploys_and_rollbacks_keep_one_chain(registry: Registry) -> None:
    registry.deploy("digits", 1)
    registry.deploy("digits", 2)

    def deploy_or_roll_back(i: int, reg: Registry) -> list[Callable[[], object]]:
        if i % 2:
            return [lambda: reg.rollback("digits", reason=f"round {i}")]
        return [lambda: reg.deploy("digits", i % 3 + 1)]

    race(registry, deploy_or_roll_back)
    history = registry.history("digits")
    assert sum(e.kind == "rollback" for e in history) >= ROUNDS // 2
    assert broken_links(history) == 0
    assert_rollback_follows_history(registry)


def assert_rollback_follows_history(registry: Registry) -> None:
    changes = [e for e in registry.history("digits") if e.kind in ALIAS_CHANGES and e.detail == "production"]
    expected = changes[-1].from_version
    assert expected is not None
    assert registry.rollback("digits") == (changes[-1].version, expected)
    assert registry.version("digits").number == expected


CHILD = """
import sys
from pathlib import Path
from shipyard.registry import ArtifactStore, Registry

url, root, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
registry = Registry(url, ArtifactStore(Path(root)))
print("ready", flush=True)
sys.stdin.readline()
for i in range(first, first + 40):
    registry.deploy("digits", i % 3 + 1)
registry.close()
"""


def test_two_processes_keep_one_chain(registry: Registry) -> None:
    src = str(Path(shipyard.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    args = [registry.url, str(registry.artifacts.root)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, *args, str(first)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for first in (0, 1)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            assert child.wait(timeout=120) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.communicate()  # closes its pipes
    history = registry.history("digits")
    assert sum(e.kind == "deploy" for e in history) == 80
    assert broken_links(history) == 0
    assert_rollback_follows_history(registry)
