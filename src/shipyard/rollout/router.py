"""The router: which version of a model answers a request. A pure decision, no I/O: the runtime gives
what it serves (the default version its alias names, the versions its policy keeps), the request the
version it asks for, if any."""

from __future__ import annotations

from collections.abc import Container

from shipyard.errors import NotFound


def route(name: str, version: str | int | None, default: int, served: Container[int]) -> int:
    """The version that answers a request for model `name`: `version` when the request names one (a
    number among the `served` ones, else NotFound), else `default`."""
    if version is None or version == "":
        return default
    text = str(version)
    if not (text.isascii() and text.isdigit()):
        raise NotFound(f"model {name!r} has no version {text!r}: versions are numbers")
    if int(text) not in served:
        raise NotFound(f"model {name!r} has no version {text} served here")
    return int(text)
