"""The rollout's admin endpoints, as the CLI's --server and scripts call them: start, status, and
pause / resume / promote / abort, behind the admin scope; bad input is a 4xx naming the problem."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipyard.config import MonitorSettings, Settings
from shipyard.registry import Registry
from tests.asgi import ASGIClient
from tests.conftest import register_digits
from tests.unit.conftest import serving, unit_settings

ADMIN = {"Authorization": "Bearer s3cret"}
START = "/v2/repository/models/digits/rollout"


@pytest.fixture
def client(registry: Registry, settings: Settings) -> Iterator[ASGIClient]:
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 1)
    watched = unit_settings(settings, admin_tokens={"ops": "s3cret"}, monitor=MonitorSettings(log=False))
    with serving(registry, watched) as (test_client, _):
        yield test_client


def test_a_rollout_is_started_watched_and_steered(client: ASGIClient, registry: Registry) -> None:
    body = {"candidate": 2, "plan": "10%:1m,100%", "gates": {"min_requests": 20.0}, "reason": "retrained"}
    assert client.post(START, json=body).status_code == 401  # admin only
    started = client.post(START, json=body, headers=ADMIN)
    assert started.status_code == 200, started.text
    doc = started.json()
    assert (doc["candidate"], doc["baseline"], doc["status"], doc["actor"]) == (2, 1, "running", "token:ops")
    assert doc["gates"]["min_requests"] == 20 and doc["plan"] == "10%:1m,100%"
    status = client.get("/v1/models/digits/rollout")  # a read: open while reads are not enforced
    assert status.status_code == 200 and status.json()["id"] == doc["id"]
    page = client.get("/dashboard/digits?fragment=1").text  # the dashboard shows the rollout too
    assert '<section class="rollout" data-status="running">' in page and "10% for 1m (running)" in page

    again = client.post(START, json=body, headers=ADMIN)
    assert again.status_code == 409 and "has a rollout under way" in again.json()["error"]
    paused = client.post(START + "/pause", json={"reason": "a look"}, headers=ADMIN)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert client.post(START + "/pause", headers=ADMIN).status_code == 409
    assert client.post(START + "/resume", headers=ADMIN).json()["status"] == "running"
    assert (
        client.post(START + "/abort", json={"reason": "enough"}, headers=ADMIN).json()["status"] == "aborted"
    )
    events = [e.detail for e in registry.history("digits") if e.kind == "rollout"]
    assert events[0].startswith("started") and events[-1] == "aborted: enough"
    assert [e.actor for e in registry.history("digits") if e.kind == "rollout"] == ["token:ops"] * 4


@pytest.mark.parametrize(
    ("path", "body", "status", "problem"),
    [
        (START, {"candidate": 2, "plan": "5%"}, 400, "needs a duration"),
        (START, {"candidate": 2, "gates": {"max_p99": 2}}, 400, "unknown gate setting 'max_p99'"),
        (START, {"candidate": 2, "gates": {"min_labels": 2.5}}, 400, "is a count"),
        (START, {"candidate": 0}, 400, "candidate"),
        (START, {"plan": "5%:1m,100%"}, 400, "candidate"),
        (START, {"candidate": 9}, 404, "no version 9"),
        (START, {"candidate": 1}, 409, "production already"),
        (START + "/jump", {}, 404, "no rollout action 'jump'"),
        (START + "/pause", {}, 404, "never been rolled out"),
        ("/v2/repository/models/nope/rollout", {"candidate": 2}, 404, "no model named 'nope'"),
    ],
)
def test_bad_rollout_calls_are_refused(
    client: ASGIClient, registry: Registry, path: str, body: dict[str, object], status: int, problem: str
) -> None:
    refused = client.post(path, json=body, headers=ADMIN)
    assert refused.status_code == status and problem in refused.json()["error"], refused.text
    assert registry.rollouts("digits") == []
    assert client.get("/v1/models/digits/rollout").status_code == 404
