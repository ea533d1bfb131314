"""Scoped tokens on the app in-process: which scope each route needs, models, rates, and admin beyond
loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from shipyard.registry.tokens import hash_token
from shipyard.server.auth import Auth
from shipyard.server.routes import scope_of
from tests.asgi import ASGIClient
from tests.conftest import register_digits
from tests.unit.conftest import digits_request, serving, unit_settings


@dataclass(frozen=True)
class Token:
    name: str
    scopes: tuple[str, ...]
    models: tuple[str, ...] | None = None
    rate_per_s: float | None = None
    burst: int | None = None
    secret: str = ""

    @property
    def sha256(self) -> str:
        return hash_token(self.secret or f"secret-{self.name}")


def bearer(token: Token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.secret or 'secret-' + token.name}"}


@pytest.fixture
def served(registry: Registry, settings: Settings) -> Iterator[tuple[ASGIClient, Auth]]:
    register_digits(registry)
    register_digits(registry, name="other")
    auth = Auth()
    with serving(registry, unit_settings(settings), auth=auth) as (client, _):
        yield client, auth


ONE = digits_request(np.zeros((1, 64), np.float32))


def test_without_tokens_everything_but_admin_beyond_loopback_is_open(
    served: tuple[ASGIClient, Auth],
) -> None:
    client, _ = served
    assert client.post("/v2/models/digits/infer", json=ONE).status_code == 200
    assert client.get("/v2/models/digits").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.post("/v2/repository/index").status_code == 200  # loopback


def test_a_scope_needs_a_token_once_a_token_grants_it(served: tuple[ASGIClient, Auth]) -> None:
    client, auth = served
    ci = Token("ci", ("predict",), models=("digits",))
    auth.update([ci])
    refused = client.post("/v2/models/digits/infer", json=ONE)
    assert refused.status_code == 401 and "'predict' scope" in refused.json()["error"]
    assert client.post("/v1/models/digits/predict", json={"input": [0] * 64}).status_code == 401
    assert client.post("/v2/models/digits/infer", json=ONE, headers=bearer(ci)).status_code == 200
    other = client.post("/v2/models/other/infer", json=ONE, headers=bearer(ci))
    assert other.status_code == 403 and "not for model 'other'" in other.json()["error"]
    unknown = client.post("/v2/models/digits/infer", json=ONE, headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401 and "not known" in unknown.json()["error"]
    blank = client.post("/v2/models/digits/infer", json=ONE, headers={"Authorization": "Bearer "})
    assert blank.status_code == 401
    # read is not granted by any token: still open; the token does not open admin either
    assert client.get("/v2/models/digits").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    auth.update([ci, Token("ops", ("read",))])
    assert client.get("/v2/models/digits").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(Token("ops", ("read",)))).status_code == 200
    assert client.get("/v2/models/digits", headers=bearer(ci)).status_code == 403
    assert client.get("/v2/health/live").status_code == 200  # probes never need one
    auth.update([])  # revoked: open again
    assert client.post("/v2/models/digits/infer", json=ONE).status_code == 200


def test_an_admin_token_opens_every_scope(served: tuple[ASGIClient, Auth]) -> None:
    client, auth = served
    admin = Token("root", ("admin",))
    auth.update([admin, Token("ci", ("predict",))])
    assert client.post("/v2/repository/index").status_code == 401
    assert client.post("/v2/repository/index", headers=bearer(admin)).status_code == 200
    assert client.post("/v2/models/other/infer", json=ONE, headers=bearer(admin)).status_code == 200


def test_a_token_over_its_rate_gets_429_with_retry_after(served: tuple[ASGIClient, Auth]) -> None:
    client, auth = served
    slow = Token("slow", ("predict",), rate_per_s=0.01, burst=2)
    auth.update([slow])
    statuses = [client.post("/v2/models/digits/infer", json=ONE, headers=bearer(slow)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["retry-after"]) >= 1
    assert "over its rate limit" in statuses[2].json()["error"]
    auth.update([slow])  # the registry read again: the bucket is kept, not refilled
    assert client.post("/v2/models/digits/infer", json=ONE, headers=bearer(slow)).status_code == 429


def test_admin_beyond_loopback_without_a_token_is_refused(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    with serving(registry, unit_settings(settings), auth=Auth(loopback=False)) as (client, _):
        refused = client.post("/v2/repository/models/digits/rollback")
        assert refused.status_code == 403 and "SHIPYARD_ADMIN_TOKEN" in refused.json()["error"]
        assert client.post("/v2/models/digits/infer", json=ONE).status_code == 200
    with serving(registry, unit_settings(settings), auth=Auth({"ci": "c1-token"}, loopback=False)) as (
        client,
        _,
    ):
        ok = client.post("/v2/repository/index", headers={"Authorization": "Bearer c1-token"})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/v2/health/ready", None),
        ("/v2/repository/models/{name}/deploy", "admin"),
        ("/v1/models/{name}/feedback", "feedback"),
        ("/v2/models/{name}/versions/{version}/infer", "predict"),
        ("/predict", "predict"),
        ("/dashboard/{name}", "read"),
        ("/v2/models/{name}/config", "read"),
        ("/v2", "read"),
        ("/metrics/anything-new", "admin"),
        ("", "admin"),
    ],
)
def test_every_route_has_a_scope(path: str, scope: str | None) -> None:
    assert scope_of(path) == scope


@pytest.mark.parametrize("value", ["", "  ", "\t"])
def test_blank_admin_tokens_are_a_configuration_error(value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="empty or blank"):
        Settings(admin_token=value)
    with pytest.raises(ValidationError, match="empty or blank"):
        Settings(admin_tokens={"ci": value})
