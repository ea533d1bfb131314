"""How `--help` shows parameters: one upper-case placeholder each, switches bare.

Every option that takes a value names it with an upper-case placeholder (its `metavar`): FILE, DIR,
PATH, URL, NAME, NAME[:VERSION], N (a whole number), NUMBER, FRACTION, SECONDS, MB, ... An argument is
shown by its placeholder alone (`FILE`; `[NAME]...` in the usage line when optional and repeatable),
a switch (`--trust`, `--grpc/--no-grpc`) by its names alone. A default is `[default: X]`, whether it
is the option's value or, for one the settings decide, text (`show_default="8000"`).

typer's own display adds a `<type>` to each: `<bool>` beside every switch, `--help` included, and
`<path>` beside an argument already called FILE, with `{path}` in the usage line. A `Group` gives its
own parameters, and those of the commands registered on it, the display above; every `typer.Typer`
of the CLI is made with `cls=Group` (`tests/e2e/test_cli_help.py` walks them all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typer._click import Context, Parameter


class Argument(TyperArgument):
    """An argument shown by its placeholder: `FILE` in its row, `FILE` or `[NAME]...` in the usage."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Context) -> list[str]:
        piece = self.metavar or (self.name or "").upper()
        if not self.required:
            piece = f"[{piece}]"
        return [piece + ("..." if self.nargs != 1 else "")]


class Option(TyperOption):
    """An option shown with its placeholder, a switch with none; a default given as text
    (`show_default="8000"`, for an option whose default the settings decide) shown as `[default: 8000]`,
    as a default value is, not typer's `[default: (8000)]`."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None if self.is_flag else super().display_type_rich(ctx)

    def _get_default_string(self, *, ctx: Context, show_default_is_str: bool, default_value: Any) -> str:
        if show_default_is_str:
            return str(self.show_default)
        return super()._get_default_string(
            ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value
        )


class Command(TyperCommand):
    """A command whose `--help` option shows as a switch (it is made when first asked for)."""

    def get_help_option(self, ctx: Context) -> Any:
        option = super().get_help_option(ctx)
        _restyle([option])
        return option


class Group(TyperGroup):
    """A group whose parameters, and whose commands' parameters, show as this module says."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _restyle(self.params)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                command.__class__ = Command  # same object, help display of its own
                _restyle(command.params)

    def get_help_option(self, ctx: Context) -> Any:
        option = super().get_help_option(ctx)
        _restyle([option])
        return option


def _restyle(params: Iterable[Parameter | None]) -> None:
    """Give typer's parameters the display above: the classes add no state, only how they show."""
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = Argument
        elif type(param) is TyperOption:
            param.__class__ = Option
