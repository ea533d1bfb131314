"""Scoped API tokens: what a client may do (scopes), on which models, and how fast.

Only the sha256 of a secret is stored: the secret is shown once, when the token is made, and a copy of
the database grants nothing. Servers compare `hash_token(presented)` with the stored hashes.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.names import check_name
from shipyard.registry.base import RegistryBase
from shipyard.registry.records import TokenRecord
from shipyard.registry.tables import TokenRow, utcnow

SCOPES = ("predict", "feedback", "read", "admin")
SECRET_PREFIX = "shp_"


def hash_token(secret: str) -> str:
    """What the registry stores of a secret, and what a presented secret is compared by."""
    return hashlib.sha256(secret.encode()).hexdigest()


class TokensMixin(RegistryBase):
    def create_token(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        models: Iterable[str] | None = None,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token and its secret; the secret is not stored and cannot be shown again."""
        check_name(name, "token name")
        row = TokenRow(
            name=name,
            scopes=list(_scopes(scopes)),
            models=None if models is None else list(_models(models)),
            rate_per_s=_rate(rate_per_s, burst),
            burst=burst,
            created_at=utcnow(),
        )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        row.sha256 = hash_token(secret)
        try:
            with self._writing() as session:
                if session.scalar(select(TokenRow.id).where(TokenRow.name == name, _active())) is not None:
                    raise Conflict(f"a token named {name!r} exists: revoke it first, or pick another name")
                session.add(row)
        except IntegrityError:  # another writer made the same name first (PostgreSQL)
            raise Conflict(f"a token named {name!r} exists: revoke it first, or pick another name") from None
        return token_record(row), secret

    def tokens(self) -> list[TokenRecord]:
        """The active tokens, by name."""
        with self._session() as session:
            rows = session.scalars(select(TokenRow).where(_active()).order_by(TokenRow.name))
            return [token_record(row) for row in rows]

    def revoke_token(self, name: str) -> TokenRecord:
        """Revoke the active token named `name`; servers refuse it from their next look-up on."""
        with self._writing() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.name == name, _active()).with_for_update())
            if row is None:
                raise NotFound(f"no active token named {name!r}")
            row.revoked_at = utcnow()
            return token_record(row)


def token_record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        name=row.name,
        scopes=tuple(row.scopes),
        models=None if row.models is None else tuple(row.models),
        rate_per_s=row.rate_per_s,
        burst=row.burst,
        sha256=row.sha256,
        created_at=row.created_at,
    )


def _active() -> ColumnElement[bool]:
    return TokenRow.revoked_at.is_(None)


def _scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    given = list(scopes) if not isinstance(scopes, str) else [scopes]
    unknown = sorted(set(given) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}")
    if not given:
        raise InvalidInput(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def _models(models: Iterable[str]) -> tuple[str, ...]:
    given = list(models) if not isinstance(models, str) else [models]
    if not given:
        raise InvalidInput("a token needs at least one model, or none given for every model")
    return tuple(dict.fromkeys(check_name(m) for m in given))


def _rate(rate_per_s: float | None, burst: int | None) -> float | None:
    if rate_per_s is not None and not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise InvalidInput(f"bad rate {rate_per_s}: requests per second above 0 (none for no limit)")
    if burst is not None and rate_per_s is None:
        raise InvalidInput("a burst needs a rate: it is how far above the rate a client may go at once")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise InvalidInput(f"bad burst {burst!r}: a whole number of requests, 1 or more")
    return None if rate_per_s is None else float(rate_per_s)
