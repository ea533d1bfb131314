"""`shipyard token ...`: make, list and revoke scoped API tokens (stored hashed in the registry)."""

from __future__ import annotations

import typer
from rich.table import Table

from shipyard.cli.common import console, get_state, when
from shipyard.cli.help import Group
from shipyard.registry import TokenRecord
from shipyard.registry.tokens import SCOPES

SCOPE_HELP = f"What it may do: {', '.join(SCOPES)}; repeatable."

app = typer.Typer(cls=Group, help="Scoped API tokens for servers to check.", no_args_is_help=True)

NAME = typer.Argument(..., metavar="NAME", help="The token's name.")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME", help="A name to list and revoke it by: letters, digits, ., - and _."
    ),
    scopes: list[str] = typer.Option(..., "--scope", metavar="SCOPE", help=SCOPE_HELP),
    models: list[str] | None = typer.Option(
        None,
        "--model",
        metavar="NAME",
        show_default="every model",
        help="A model it may be used on; repeatable.",
    ),
    rate: float | None = typer.Option(
        None, "--rate", metavar="NUMBER", show_default="no limit", help="Requests per second it may make."
    ),
    burst: int | None = typer.Option(
        None,
        "--burst",
        metavar="N",
        show_default="the rate, rounded up",
        help="Requests it may make at once, after a quiet spell (with --rate).",
    ),
) -> None:
    """Make a token and print its secret, once."""
    record, secret = get_state(ctx).registry.create_token(
        name, scopes, models=models or None, rate_per_s=rate, burst=burst
    )
    console.print(f"created token {record.name} ({_describe(record)})")
    console.print(secret)
    console.print("this secret cannot be shown again: only its hash is stored")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """The active tokens: what each may do (never their secrets)."""
    tokens = get_state(ctx).registry.tokens()
    if not tokens:
        console.print("no tokens yet: shipyard token create NAME --scope predict")
        return
    table = Table("name", "scopes", "models", "rate", "created")
    for t in tokens:
        table.add_row(t.name, ", ".join(t.scopes), _models(t), _rate(t), when(t.created_at))
    console.print(table)


@app.command("revoke")
def revoke(ctx: typer.Context, name: str = NAME) -> None:
    """Revoke a token: servers refuse it from their next look-up on."""
    record = get_state(ctx).registry.revoke_token(name)
    console.print(f"revoked token {record.name}")


def _describe(t: TokenRecord) -> str:
    return f"scopes {', '.join(t.scopes)}; models {_models(t)}; rate {_rate(t)}"


def _models(t: TokenRecord) -> str:
    return "all" if t.models is None else ", ".join(t.models)


def _rate(t: TokenRecord) -> str:
    if t.rate_per_s is None:
        return "unlimited"
    return f"{t.rate_per_s:g}/s" + (f" (burst {t.burst})" if t.burst is not None else "")
