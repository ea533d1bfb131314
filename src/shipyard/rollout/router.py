"""The router: which version of a model answers a request. A pure decision, no I/O: the runtime gives
what it serves (the default version its alias names, the versions its policy keeps, the traffic split
over them, if any), the request the version it asks for, if any, and a point in [0, 1): drawn at
random, or read from the request's key (`sticky_point`), so that one key always lands on one version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass

from shipyard.errors import InvalidInput, NotFound

MAX_SPLIT_VERSIONS = 8
"""A split over more versions than this is a mistake, not a rollout."""


@dataclass(frozen=True)
class Split:
    """Shares of the requests that name no version, in percent, summing to 100: `((version, share),
    ...)` ordered by version, so a newer version's range is the top of [0, 1) and grows downwards as
    its share does: a key that reached the candidate at 5% still does at 25%."""

    shares: tuple[tuple[int, float], ...]

    @classmethod
    def of(cls, shares: Mapping[int, float], rest_to: int | None = None) -> Split:
        """A checked split. `rest_to`: the version that takes what the others leave of 100% (the
        default one: `2=20` alone means 80% stays where it was)."""
        if not shares:
            raise InvalidInput("a traffic split needs at least one VERSION=PERCENT")
        found: dict[int, float] = {}
        for version, share in shares.items():
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 100:
                raise InvalidInput(f"version {version}'s share must be from 0 to 100 (%), not {share!r}")
            found[int(version)] = float(share)
        total = sum(found.values())
        if rest_to is not None and rest_to not in found and total < 100:
            found[rest_to] = 100.0 - total
            total = 100.0
        if abs(total - 100.0) > 1e-6:
            raise InvalidInput(f"the shares add up to {total:g}%, not 100%")
        if len(found) > MAX_SPLIT_VERSIONS:
            raise InvalidInput(f"a split goes to at most {MAX_SPLIT_VERSIONS} versions, not {len(found)}")
        return cls(tuple(sorted((v, s) for v, s in found.items() if s > 0)))

    @classmethod
    def from_dict(cls, doc: Mapping[str, float]) -> Split:
        """As stored in the registry: {"1": 80.0, "2": 20.0}."""
        return cls.of({int(version): share for version, share in doc.items()})

    def to_dict(self) -> dict[str, float]:
        return {str(version): share for version, share in self.shares}

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(version for version, _ in self.shares)

    def share(self, version: int) -> float:
        return next((share for v, share in self.shares if v == version), 0.0)

    def pick(self, point: float) -> int:
        """The version whose range holds `point` (0 <= point < 1)."""
        edge = 0.0
        for version, share in self.shares:
            edge += share / 100
            if point < edge:
                return version
        return self.shares[-1][0]  # rounding: the top of the range belongs to the last version

    def __str__(self) -> str:
        return ", ".join(f"{version}={share:g}%" for version, share in self.shares)


def sticky_point(key: str) -> float:
    """Where a request's key falls in [0, 1): the same in every process and server (a hash of its
    bytes, not Python's per-process `hash`)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(
    name: str,
    version: str | int | None,
    default: int,
    served: Container[int],
    split: Split | None = None,
    point: float = 0.0,
) -> int:
    """The version that answers a request for model `name`: `version` when the request names one (a
    number among the `served` ones, else NotFound); else the `split`'s version at `point`, or
    `default` when there is no split."""
    if version is None or version == "":
        return default if split is None else split.pick(point)
    text = str(version)
    if not (text.isascii() and text.isdigit()):
        raise NotFound(f"model {name!r} has no version {text!r}: versions are numbers")
    if int(text) not in served:
        raise NotFound(f"model {name!r} has no version {text} served here")
    return int(text)
