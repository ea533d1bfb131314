"""Serving options shared by `shipyard serve` (server defaults) and `shipyard model configure`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel

from shipyard.errors import InvalidInput, validation_problems

if TYPE_CHECKING:
    from shipyard.config import ModelServing

Model = TypeVar("Model", bound=BaseModel)

# Each serving option: its placeholder, its help, and the server's default where ModelServing's field
# default says too little. `serve` shows the default; `model configure` leaves unset what is not given.
_OPTIONS: dict[str, tuple[str | None, str, str | None]] = {
    "batching": (None, "Coalesce concurrent requests into one run.", "batching"),
    "max_batch_size": ("N", "Most rows in one run.", None),
    "max_queue_delay_us": (
        "MICROSECONDS",
        "Extra wait for a fuller batch once the queue is drained; 0 never waits.",
        None,
    ),
    "max_queue_size": ("N", "Requests waiting beyond this get 503 with Retry-After.", None),
    "instances": ("N", "Runs of one model version in flight at once.", None),
    "execution": (
        "WHERE",
        "Where runs happen: loop (the event loop, for models that take microseconds), threads (ORT's "
        "own), or auto (the loop when a measured run is under 0.2 ms and one instance serves).",
        None,
    ),
    "max_in_flight": (
        "N",
        "Requests of a model admitted at once (being read, queued or running); past it a request gets "
        "503 with Retry-After before its body is read.",
        "2 x instances x max batch size, at least 32",
    ),
    "timeout_s": ("SECONDS", "Drop a request that has had no answer after this long.", "no limit"),
    "versions": (
        "POLICY",
        "Versions kept loaded: all, 'latest N' or 'specific 1,3' (the default version always is).",
        None,
    ),
}


def _option(field: str, *, serve: bool) -> Any:
    from shipyard.config import ModelServing

    metavar, text, default = _OPTIONS[field]
    decls = ["--batching/--no-batching"] if field == "batching" else []
    shown = default or str(ModelServing.model_fields[field].default)
    return typer.Option(
        None,
        *decls,
        metavar=metavar,
        min=1 if field == "max_in_flight" else None,
        show_default=shown if serve else False,
        help=text,
    )


# as `model configure` declares them: a model's own value, none when not given
BATCHING = _option("batching", serve=False)
MAX_BATCH_SIZE = _option("max_batch_size", serve=False)
MAX_QUEUE_DELAY_US = _option("max_queue_delay_us", serve=False)
MAX_QUEUE_SIZE = _option("max_queue_size", serve=False)
INSTANCES = _option("instances", serve=False)
EXECUTION = _option("execution", serve=False)
MAX_IN_FLIGHT = _option("max_in_flight", serve=False)
VERSIONS = _option("versions", serve=False)
TIMEOUT_S = _option("timeout_s", serve=False)

# as `serve` declares them: the server's defaults, shown
SERVE_BATCHING = _option("batching", serve=True)
SERVE_MAX_BATCH_SIZE = _option("max_batch_size", serve=True)
SERVE_MAX_QUEUE_DELAY_US = _option("max_queue_delay_us", serve=True)
SERVE_MAX_QUEUE_SIZE = _option("max_queue_size", serve=True)
SERVE_INSTANCES = _option("instances", serve=True)
SERVE_EXECUTION = _option("execution", serve=True)
SERVE_MAX_IN_FLIGHT = _option("max_in_flight", serve=True)
SERVE_VERSIONS = _option("versions", serve=True)
SERVE_TIMEOUT_S = _option("timeout_s", serve=True)


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
        problems = validation_problems(exc.errors())
        raise InvalidInput(f"bad {what}: {problems}") from None
