"""A traffic split as a server applies it: the requests that name no version are shared by the split,
a key always lands on one version, a request that names a version gets it, and every answer says
which version served it. Set through the admin endpoint, which loads every version first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.asgi import ASGIClient
from tests.conftest import register_digits
from tests.models import digits_data
from tests.unit.conftest import digits_request, serving, unit_settings

SPLIT = "/v2/repository/models/digits/split"


@pytest.fixture
def client(registry: Registry, settings: Settings) -> Iterator[ASGIClient]:
    """digits 1 in production and 2, 3 registered; the server keeps only the production version
    loaded until a split asks for more."""
    for _ in range(3):
        register_digits(registry)
    registry.deploy("digits", 1)
    registry.configure("digits", {"versions": "specific 1"})
    with serving(registry, unit_settings(settings)) as (test_client, _):
        yield test_client


def served_by(client: ASGIClient, path: str, body: dict[str, object], headers: dict[str, str]) -> int:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    said = int(response.headers["x-shipyard-version"])
    answer = response.json()
    assert said == int(answer["model_version"] if "model_version" in answer else answer["version"])
    return said


def test_requests_naming_no_version_are_shared_by_the_split(client: ASGIClient, registry: Registry) -> None:
    X, _ = digits_data()
    infer, predict = digits_request(X[:1]), {"input": X[0].tolist()}
    assert served_by(client, "/v2/models/digits/infer", infer, {}) == 1
    done = client.post(SPLIT, json={"shares": {"2": 50}, "reason": "canary"})
    assert done.status_code == 200, done.text
    split = {"1": 50.0, "2": 50.0}
    assert done.json() == {"name": "digits", "alias": "production", "split": split, "previous": None}
    assert registry.model("digits").splits == {"production": {"1": 50.0, "2": 50.0}}
    listed = client.get("/v1/models").json()["models"][0]
    assert listed["split"] == {"1": 50.0, "2": 50.0} and listed["resident"] == [1, 2]  # loaded first

    seen = Counter(served_by(client, "/v2/models/digits/infer", infer, {}) for _ in range(200))
    seen += Counter(served_by(client, "/v1/models/digits/predict", predict, {}) for _ in range(200))
    assert set(seen) == {1, 2} and 120 < seen[2] < 280  # 50% of 400: far from either edge by chance

    for key in (f"user-{i}" for i in range(20)):  # one key, one version, whichever endpoint
        got = {served_by(client, "/v2/models/digits/infer", infer, {"X-Shipyard-Key": key}) for _ in range(3)}
        got.add(served_by(client, "/v1/models/digits/predict", predict, {"X-Shipyard-Key": key}))
        assert len(got) == 1, key
    named = "/v2/models/digits/versions/1/infer"
    assert {served_by(client, named, infer, {"X-Shipyard-Key": "user-1"}) for _ in range(20)} == {1}

    ended = client.post(SPLIT, json={"shares": None, "reason": "enough"})
    assert ended.json()["split"] is None and ended.json()["previous"] == {"1": 50.0, "2": 50.0}
    assert {served_by(client, "/v2/models/digits/infer", infer, {}) for _ in range(50)} == {1}


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        ({"shares": {"9": 20}}, 404, "no version 9"),
        ({"shares": {"2": 20, "3": 90}}, 400, "add up to 110%"),
        ({"shares": {"2": 120}}, 400, "from 0 to 100"),
        ({"shares": {"two": 20}}, 400, "shares"),
        ({"shares": {"2": 20}, "extra": 1}, 400, "extra"),
        ({}, 400, "shares"),
    ],
)
def test_a_bad_split_is_refused_and_changes_nothing(
    client: ASGIClient, registry: Registry, body: dict[str, object], status: int, problem: str
) -> None:
    refused = client.post(SPLIT, json=body)
    assert refused.status_code == status and problem in refused.json()["error"], refused.text
    assert registry.model("digits").splits == {}
    listed = client.get("/v1/models").json()["models"][0]
    assert listed["split"] is None and listed["resident"] == [1]  # nothing loaded for a bad split
