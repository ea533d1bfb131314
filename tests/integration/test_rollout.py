"""Rollouts as a user runs them, against a real server under the traffic of 16 clients: a good
candidate promoted through every step (a shadow first), a less accurate one (found out through
feedback), a slower one and one that disagrees with production as a shadow rolled back at their first
step, a controller killed mid-step going on at that step, and not one failed request through any of it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry, RolloutRecord
from tests.conftest import DIGITS_SIGNATURE, LABELS
from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_deploy import cli
from tests.models import digits_confused, digits_data, digits_linear, digits_slow

CLIENTS = 16
GATES = ["--gate", "min_requests=30", "--gate", "min_labels=30"]
# A candidate as fast as production may still measure slower on a loaded machine (a p99 of 2x was
# seen): where the gate under test is not latency, latency's bound is wide, so only that gate can fail.
NO_LATENCY_GATE = ("--gate", "max_p99_ratio=100")


def start_rollout(home: Path, candidate: int, plan: str, *gates: str) -> None:
    cli(home, "rollout", "start", "digits", "--candidate", str(candidate), "--plan", plan, *GATES, *gates)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """digits 1 in production; candidates 2 (as good), 3 (confuses half the classes), 4 (slower)."""
    registry = Registry.open(Settings(home=tmp_path))
    for onnx in (
        digits_linear().onnx_bytes,
        digits_linear().onnx_bytes,
        digits_confused().onnx_bytes,
        digits_slow(),
    ):
        registry.register(
            "digits", onnx, signature=DIGITS_SIGNATURE, framework="onnx", check={}, labels=LABELS
        )
    registry.deploy("digits", 1)
    registry.close()
    return tmp_path


@dataclass
class Traffic:
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[int] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def traffic(server: Server, feedback: bool = False) -> Iterator[Traffic]:
    """CLIENTS clients asking for predictions (labelling each answer, with `feedback`) till the block ends."""
    X, y = digits_data()
    seen = Traffic()
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not seen.stop.is_set():
                i = int(rng.integers(len(X)))
                answer = http.post("/v1/models/digits/predict", json={"input": X[i].tolist()})
                with lock:
                    seen.statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        seen.versions[answer.json()["version"]] += 1
                if feedback and answer.status_code == 200:
                    label = [{"id": answer.json()["id"], "label": str(y[i])}]
                    done = http.post("/v1/models/digits/feedback", json=label)
                    with lock:
                        seen.statuses[done.status_code] += 1

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        seen.stop.set()
        for thread in threads:
            thread.join(timeout=60)


def rollout(home: Path) -> RolloutRecord:
    registry = Registry.open(Settings(home=home))
    try:
        return registry.rollout("digits")
    finally:
        registry.close()


def wait_for(home: Path, status: str, timeout: float = 60.0) -> RolloutRecord:
    """The rollout once its status is `status` (polled, bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while (found := rollout(home)).status != status:
        assert time.monotonic() < deadline, f"still {found.status} at step {found.step + 1}: {found.verdict}"
        time.sleep(0.2)  # polling the registry, bounded by the deadline
    return found


def moves(home: Path) -> list[str]:
    registry = Registry.open(Settings(home=home))
    try:
        return [e.detail for e in registry.history("digits") if e.kind == "rollout"]
    finally:
        registry.close()


def test_a_good_candidate_is_promoted_through_every_step_with_no_failed_request(home: Path) -> None:
    server = start_server(home, "--no-grpc")
    try:
        start_rollout(home, 2, "shadow:2s,50%:2s,100%", *NO_LATENCY_GATE)
        with traffic(server) as seen:
            done = wait_for(home, "promoted")
        assert seen.statuses == {200: sum(seen.versions.values())}, seen.statuses
        assert seen.versions[1] > 0 and seen.versions[2] > 0
        assert [line.split(":")[0] for line in moves(home)] == [
            "started", "step 1", "step 1 passed", "step 2", "step 2 passed", "promoted",
        ]  # fmt: skip
        assert done.reason == "plan complete"
        status = cli(home, "rollout", "status", "digits")
        assert "version 2 against 1, promoted" in status and "errors      ok" in status
        with httpx.Client(base_url=server.url) as client:
            X, _ = digits_data()
            deadline = time.monotonic() + 10
            while (
                client.post("/v1/models/digits/predict", json={"input": X[0].tolist()}).json()["version"] != 2
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)  # the server follows the registry within its watch interval
    finally:
        stop_server(server)


@pytest.mark.parametrize(
    ("candidate", "first", "gate", "feedback", "others"),
    [
        (3, "20%:1h", "accuracy gate failed at step 1", True, NO_LATENCY_GATE),
        (4, "20%:1h", "latency gate failed at step 1", False, ()),
        (3, "shadow:1h", "agreement gate failed at step 1", False, NO_LATENCY_GATE),
    ],
    ids=["less accurate", "slower", "disagreeing shadow"],
)
def test_a_worse_candidate_is_rolled_back_at_its_first_step_with_no_failed_request(
    home: Path, candidate: int, first: str, gate: str, feedback: bool, others: tuple[str, ...]
) -> None:
    server = start_server(home, "--no-grpc")
    try:
        plan = f"{first},100%"
        start_rollout(home, candidate, plan, *others)
        with traffic(server, feedback=feedback) as seen:
            done = wait_for(home, "rolled-back")
            rolled_back = time.monotonic()
            with httpx.Client(
                base_url=server.url
            ) as client:  # all traffic is production's again, within seconds
                while client.get("/v1/models").json()["models"][0]["split"] is not None:
                    assert time.monotonic() - rolled_back < 5
                    time.sleep(0.05)
        assert seen.statuses.keys() == {200}, seen.statuses
        shadow = first.startswith("shadow")  # a shadow answers no one
        assert seen.versions.keys() == {1} if shadow else seen.versions[candidate] > 0
        assert done.reason.startswith(gate), done.reason
        assert moves(home)[-1] == f"rolled back: {done.reason}"
        assert "reason: " + gate in cli(home, "rollout", "status", "digits")
    finally:
        stop_server(server)


def test_a_controller_killed_mid_step_goes_on_at_that_step(home: Path) -> None:
    server = start_server(home, "--no-grpc")
    start_rollout(home, 2, "50%:3s,100%", *NO_LATENCY_GATE)
    deadline = time.monotonic() + 20
    while rollout(home).marks is None:  # the first step has begun: its split is set
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    began = rollout(home)
    assert (began.status, began.step) == ("running", 0)
    server = start_server(home, "--no-grpc")  # another process: it takes the lease once the old one lapses
    try:
        with traffic(server) as seen:
            wait_for(home, "promoted")
        assert seen.statuses.keys() == {200}
        assert [line.split(":")[0] for line in moves(home)] == [
            "started",
            "step 1",
            "step 1 passed",
            "promoted",
        ]
    finally:
        stop_server(server)
