"""The `shipyard` command line: one command per stage, one clear line on any error."""

from __future__ import annotations

import os
import sys

import typer

from shipyard.cli import model, monitor, optimize, registry, rollout, serve, token
from shipyard.cli.common import state
from shipyard.config import Settings
from shipyard.errors import InvalidInput, ShipyardError

app = typer.Typer(
    help="Take a trained model to a fast, versioned, monitored production endpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(model.app, name="model")
app.add_typer(monitor.app, name="monitor")
app.add_typer(registry.app, name="registry")
app.add_typer(token.app, name="token")
app.command("serve")(serve.serve)
app.command("deploy")(rollout.deploy)
app.command("rollback")(rollout.rollback)
app.command("optimize")(optimize.optimize)


@app.callback()
def _root(
    ctx: typer.Context,
    home: str | None = typer.Option(None, "--home", help="Registry folder (env SHIPYARD_HOME)."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Registry database URL (env SHIPYARD_DATABASE_URL)."
    ),
) -> None:
    from pydantic import ValidationError

    overrides = {k: v for k, v in {"home": home, "database_url": database_url}.items() if v}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # SHIPYARD_* variables: one line naming each bad one
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"bad settings: {problems}") from None
    ctx.obj = state(settings)


def main() -> None:
    """Entry point: usage errors as typer shows them (exit 2), shipyard errors as one line (exit 1)."""
    try:
        app(prog_name="shipyard")
    except ShipyardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SHIPYARD_DEBUG"):
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (SHIPYARD_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
