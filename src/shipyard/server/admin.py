"""Admin request bodies (deploy, rollback, split, rollouts): small pydantic models, read and checked in
one place."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request

from shipyard.errors import InvalidInput
from shipyard.rollout.commands import DEFAULT_PLAN
from shipyard.server.handlers import read_body

Body = TypeVar("Body", bound=BaseModel)

ADMIN_BODY_LIMIT = 64 * 1024


class DeployRequest(BaseModel):
    model_config = {"extra": "forbid"}

    version: int | None = Field(
        default=None, ge=1, description="The version to serve; the newest when unset."
    )
    force: bool = Field(
        default=False, description="Deploy even when its inputs differ from the current one's."
    )
    reason: str = Field(default="", max_length=1000, description="Why; kept in the model's history.")


class SplitRequest(BaseModel):
    model_config = {"extra": "forbid"}

    shares: dict[int, float] | None = Field(
        description='Percent of the requests that name no version, by version: {"2": 20} sends 20% '
        "to version 2 and the rest to the production version; null ends the split.",
    )
    force: bool = Field(
        default=False, description="Split even when a version's inputs differ from the current one's."
    )
    reason: str = Field(default="", max_length=1000, description="Why; kept in the model's history.")


class RolloutRequest(BaseModel):
    model_config = {"extra": "forbid"}

    candidate: int = Field(ge=1, description="The version to roll out.")
    plan: str = Field(
        default=DEFAULT_PLAN,
        max_length=2000,
        description="Steps, comma-separated: P%:DURATION, pause, 100% (rollout/plan.py).",
    )
    gates: dict[str, float] = Field(
        default_factory=dict, description="Online gate settings (rollout/gates.py)."
    )
    force: bool = Field(default=False, description="Roll out even when its inputs differ from production's.")
    reason: str = Field(default="", max_length=1000, description="Why; kept in the model's history.")


class RollbackRequest(BaseModel):
    model_config = {"extra": "forbid"}

    reason: str = Field(default="", max_length=1000, description="Why; kept in the model's history.")


async def admin_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as `model` (an empty body means every default); 400 naming the problem."""
    raw = await read_body(request, ADMIN_BODY_LIMIT)  # checked while it streams, never buffered whole
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"bad request body: {problems}") from None
