"""`shipyard deploy` and `shipyard rollback`: move the production alias, with checks and a reason.

Servers follow the registry (SHIPYARD_WATCH_INTERVAL_S, default 1 s): they load a new version, warm
it up, then switch to it, with no restart and no failed request.
"""

from __future__ import annotations

import typer

from shipyard.cli.common import console, get_state
from shipyard.errors import InvalidInput
from shipyard.registry import parse_ref


def deploy(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION (or NAME for its latest version)."),
    force: bool = typer.Option(False, "--force", help="Deploy even when the inputs differ."),
    reason: str = typer.Option("", help="Why; kept in the model's history."),
) -> None:
    """Make a version the production one (its inputs must match the current production's)."""
    name, version = parse_ref(ref)
    registry = get_state(ctx).registry
    number = registry.version(name, version or "latest").number
    before = registry.deploy(name, number, force=force, reason=reason)
    was = f" (was {before})" if before is not None else ""
    console.print(f"deployed {name}:{number} to production{was}")


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    reason: str = typer.Option("", help="Why; kept in the model's history."),
) -> None:
    """Put back the version that was production before the last change."""
    if ":" in name:
        raise InvalidInput("rollback takes a model NAME: it goes back to the previous production version")
    current, previous = get_state(ctx).registry.rollback(name, reason=reason)
    console.print(f"rolled {name} back from version {current} to {previous}")
