"""`shipyard capacity`: how many replicas and cores a target load needs, from this machine's measurements."""

from __future__ import annotations

import typer


def capacity(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[:VERSION]", help="The model to plan for."),
) -> None:
    """Replicas, cores and cost for a target load (not built yet)."""
    raise typer.Exit(1)
