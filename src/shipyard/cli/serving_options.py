"""Serving options shared by `shipyard serve` (server defaults) and `shipyard model configure`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.config import ModelServing

Model = TypeVar("Model", bound=BaseModel)

BATCHING = typer.Option(None, "--batching/--no-batching", help="Coalesce concurrent requests.")
MAX_BATCH_SIZE = typer.Option(None, help="Most rows in one ORT run (default 32).")
MAX_QUEUE_DELAY_US = typer.Option(None, help="Extra wait for a fuller batch, in µs (default 0).")
MAX_QUEUE_SIZE = typer.Option(None, help="Queued requests before 503 + Retry-After (default 512).")
INSTANCES = typer.Option(None, help="Runs of one model version in flight at once (default 1).")
MAX_IN_FLIGHT = typer.Option(
    None,
    min=1,
    help="Requests of a model admitted at once; past it 503 + Retry-After before the body is read "
    "(default 2 x instances x max batch size, at least 32).",
)
VERSIONS = typer.Option(None, help="Versions kept loaded: 'all', 'latest N' or 'specific 1,3'.")
TIMEOUT_S = typer.Option(None, help="Drop a request with no answer after this many seconds.")


def serving_updates(values: Mapping[str, Any]) -> dict[str, Any]:
    """The serving options the user actually gave, out of a command's arguments (its locals())."""
    from shipyard.config import ModelServing

    return {k: v for k, v in values.items() if k in ModelServing.model_fields and v is not None}


def merged(base: Mapping[str, Any], updates: Mapping[str, Any]) -> ModelServing:
    """`base` with `updates` on top, validated; a bad value is one clear line."""
    from shipyard.config import ModelServing

    return validated(ModelServing, {**base, **updates}, "serving settings")


def validated(model: type[Model], values: Mapping[str, Any], what: str) -> Model:
    """`values` as `model`, or one InvalidInput line naming each bad field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad {what}: {problems}") from None
