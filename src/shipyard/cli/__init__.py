"""The `shipyard` command line: one command per stage, one clear line on any error."""

from __future__ import annotations

import os
import sys

import typer

from shipyard.cli import (
    batch,
    capacity,
    export,
    k8s,
    model,
    monitor,
    optimize,
    pipeline,
    registry,
    rollout,
    rollouts,
    schedule,
    serve,
    token,
)
from shipyard.cli.common import state
from shipyard.cli.help import Group
from shipyard.config import Settings
from shipyard.errors import InvalidInput, ShipyardError, validation_problems

app = typer.Typer(
    cls=Group,
    help="Take a trained model to a fast, versioned, monitored production endpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(model.app, name="model")
app.add_typer(batch.app, name="batch")
app.add_typer(monitor.app, name="monitor")
app.add_typer(registry.app, name="registry")
app.add_typer(rollouts.app, name="rollout")
app.add_typer(token.app, name="token")
app.add_typer(k8s.app, name="k8s")
app.add_typer(pipeline.app, name="pipeline")
app.command("serve")(serve.serve)
app.command("deploy")(rollout.deploy)
app.command("rollback")(rollout.rollback)
app.command("gate")(rollout.gate)
app.command("optimize")(optimize.optimize)
app.command("scheduler")(schedule.scheduler)
app.command("capacity")(capacity.capacity)
app.command("export")(export.export)


@app.callback()
def _root(
    ctx: typer.Context,
    home: str | None = typer.Option(
        None,
        "--home",
        metavar="DIR",
        envvar="SHIPYARD_HOME",
        show_default=str(Settings.model_fields["home"].default),
        help="Folder of the registry (its database unless --database-url, its artifacts) and of the "
        "prediction logs.",
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        metavar="URL",
        envvar="SHIPYARD_DATABASE_URL",
        show_default="SQLite in the --home folder",
        help="Registry database as a SQLAlchemy URL, e.g. postgresql+psycopg://host/db.",
    ),
) -> None:
    from pydantic import ValidationError

    overrides = {k: v for k, v in {"home": home, "database_url": database_url}.items() if v}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # SHIPYARD_* variables: one line naming each bad one
        problems = validation_problems(exc.errors())
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
