"""`shipyard pipeline ...`: models run one after another, registered and versioned as one model."""

from __future__ import annotations

import typer

from shipyard.cli.help import Group

app = typer.Typer(cls=Group, help="Chain models into one, versioned like a model.", no_args_is_help=True)
