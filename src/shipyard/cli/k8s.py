"""`shipyard k8s render`: Kubernetes and KServe manifests for a model."""

from __future__ import annotations

import typer

from shipyard.cli.help import Group

app = typer.Typer(cls=Group, help="Kubernetes and KServe manifests.", no_args_is_help=True)


@app.command("render")
def render(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The model to serve."),
) -> None:
    """Write the manifests (not built yet)."""
    raise typer.Exit(1)
