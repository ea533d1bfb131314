"""Who may do what: scoped tokens, checked when a request arrives, before its body is read.

Four scopes: `predict` (inference), `feedback`, `read` (metadata, metrics, dashboard) and `admin`
(repository and deploy calls; it also grants the other three). Tokens come from the registry
(`shipyard token create`, stored as sha256 hashes, followed while the server runs) and from
SHIPYARD_ADMIN_TOKEN(S), which are admin tokens for every model.

A scope needs a token once any token grants it by name, so a server without tokens stays open on
loopback as before, and one `shipyard token create ci --scope predict` closes predict on every
server of the registry. Admin is the exception: on an address other than loopback, admin endpoints
without any admin token are refused rather than open to the network. Health checks never need one.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from shipyard.buckets import TokenBucket
from shipyard.errors import Forbidden, RateLimited, Unauthorized
from shipyard.registry.tokens import SCOPES, hash_token

BEARER = "bearer "


class TokenLike(Protocol):
    """What the server needs of a registry token (registry.TokenRecord)."""

    @property
    def name(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def models(self) -> tuple[str, ...] | None: ...
    @property
    def rate_per_s(self) -> float | None: ...
    @property
    def burst(self) -> int | None: ...
    @property
    def sha256(self) -> str: ...


@dataclass
class Grant:
    actor: str
    scopes: frozenset[str]
    models: frozenset[str] | None
    bucket: TokenBucket | None = None
    rate: tuple[float, int] | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Auth:
    def __init__(self, admin_tokens: Mapping[str, str] | None = None, *, loopback: bool = True) -> None:
        self._fixed = {
            hash_token(secret): Grant(f"token:{name}", frozenset(SCOPES), None)
            for name, secret in (admin_tokens or {}).items()
        }
        self._loopback = loopback
        self._grants: dict[str, Grant] = {}
        self._enforced: frozenset[str] = frozenset()
        self.update(())

    def update(self, tokens: Iterable[TokenLike]) -> None:
        """Follow the registry's tokens; a token still there keeps its rate bucket."""
        grants = dict(self._fixed)
        enforced = {"admin"} if self._fixed else set()
        for token in tokens:
            rate = (
                (token.rate_per_s, token.burst or max(1, math.ceil(token.rate_per_s)))
                if token.rate_per_s
                else None
            )
            known = self._grants.get(token.sha256)
            bucket = known.bucket if known is not None and known.rate == rate else None
            if rate is not None and bucket is None:
                bucket = TokenBucket(*rate)
            scopes = frozenset(token.scopes)
            grants[token.sha256] = Grant(
                f"token:{token.name}",
                frozenset(SCOPES) if "admin" in scopes else scopes,
                frozenset(token.models) if token.models is not None else None,
                bucket,
                rate,
            )
            enforced |= scopes
        self._grants, self._enforced = grants, frozenset(enforced)

    def enforced(self, scope: str) -> bool:
        return scope in self._enforced

    def check(self, authorization: str | None, scope: str, model: str | None, client: str) -> str:
        """The actor the history records (`token:NAME`, or `http:ADDRESS` where no token is needed);
        Unauthorized, Forbidden or RateLimited otherwise."""
        if scope not in self._enforced:
            if scope == "admin" and not self._loopback:
                raise Forbidden(
                    "admin endpoints are off: this server listens beyond loopback and has no admin "
                    "token; set SHIPYARD_ADMIN_TOKEN or run `shipyard token create NAME --scope admin`"
                )
            return f"http:{client}"
        grant = self._grant(authorization, scope)
        if scope not in grant.scopes:
            raise Forbidden(f"{grant.actor} does not have the {scope!r} scope")
        if grant.models is not None and (model is None or model not in grant.models):
            where = f"model {model!r}" if model is not None else "every model"
            raise Forbidden(f"{grant.actor} is not for {where}")
        if grant.bucket is not None:
            wait = grant.bucket.wait()
            if wait:
                raise RateLimited(f"{grant.actor} is over its rate limit", max(1, math.ceil(wait)))
        return grant.actor

    def _grant(self, authorization: str | None, scope: str) -> Grant:
        if not authorization or authorization[: len(BEARER)].lower() != BEARER:
            needed = "an admin token" if scope == "admin" else f"a token with the {scope!r} scope"
            raise Unauthorized(f"this endpoint needs {needed}: Authorization: Bearer <token>")
        secret = authorization[len(BEARER) :].strip()
        grant = self._grants.get(hash_token(secret)) if secret else None
        if grant is None:
            raise Unauthorized("the token is not known here (revoked, mistyped, or from another registry)")
        return grant
