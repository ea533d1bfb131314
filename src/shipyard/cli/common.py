"""What every command shares: the settings, a lazily opened registry, and the console."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer
from rich.console import Console

from shipyard.config import Settings
from shipyard.registry import Registry

# markup off: names, reasons and descriptions are the user's text, printed as written (a reason
# such as "[/]" is not a style tag); the few emphases are given as styles instead.
console = Console(highlight=False, soft_wrap=True, markup=False)


@dataclass
class State:
    settings: Settings
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry.open(self.settings)
        return self._registry


def state(settings: Settings) -> State:
    return State(settings)


def get_state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def when(dt: object) -> str:
    """Times as the user reads them: local, to the second."""
    from datetime import datetime

    assert isinstance(dt, datetime)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def refs(registry: Registry, name: str) -> set[str]:
    """The refs of every version `name` has now (none for a new model): what an import or a pipeline
    adds is told from what it returns again."""
    from shipyard.errors import NotFound

    try:
        return {f"{name}:{number}" for number in registry.model(name).versions}
    except NotFound:
        return set()
