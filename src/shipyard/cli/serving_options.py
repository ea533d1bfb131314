"""Serving options shared by `shipyard serve` (server defaults) and `shipyard model configure`."""

from __future__ import annotations

from typing import Any

import typer

BATCHING = typer.Option(None, "--batching/--no-batching", help="Coalesce concurrent requests.")
MAX_BATCH_SIZE = typer.Option(None, help="Most rows in one ORT run (default 32).")
MAX_QUEUE_DELAY_US = typer.Option(None, help="Extra wait for a fuller batch, in µs (default 0).")
MAX_QUEUE_SIZE = typer.Option(None, help="Queued requests before 503 + Retry-After (default 512).")
INSTANCES = typer.Option(None, help="Runs of one model version in flight at once (default 1).")
VERSIONS = typer.Option(None, help="Versions kept loaded: 'all', 'latest N' or 'specific 1,3'.")
TIMEOUT_S = typer.Option(None, help="Drop a request with no answer after this many seconds.")


def serving_updates(**values: Any) -> dict[str, Any]:
    """The options the user actually gave."""
    return {k: v for k, v in values.items() if v is not None}
