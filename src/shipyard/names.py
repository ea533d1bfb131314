"""The rules for the names users give: models, aliases and tokens (one home: the registry, the
settings and the prediction log's file names all check with these).

Checked with `fullmatch`: `re.match(r"^...$")` also accepts a trailing newline ("digits\\n"), which
would make a second model that prints like the first.
"""

from __future__ import annotations

import re

from shipyard.errors import InvalidInput

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
RESERVED_ALIASES = frozenset({"latest"})


def check_name(name: str, what: str = "model name") -> str:
    """`name` when it follows the model-name rule; InvalidInput naming the rule otherwise."""
    if not NAME.fullmatch(name):
        raise InvalidInput(f"bad {what} {name!r}: use letters, digits, '_', '-' and '.', up to 128")
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise InvalidInput(
            f"bad alias {alias!r}: start with a letter; letters, digits, '_' and '-'; "
            f"not {', '.join(sorted(RESERVED_ALIASES))}"
        )
    return alias
