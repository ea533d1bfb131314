"""The one error hierarchy of shipyard.

Raised anywhere; `status_of` gives the status a failure is answered and counted with, which each
transport maps in one place (HTTP: the status itself, gRPC: a code from its table), and the CLI turns
into a one-line message::

    ShipyardError (500)
    ├── InvalidInput (400)            a request or argument the caller must fix
    │   └── ConversionFailed (422)    a model that cannot be imported or fails its numerical check
    ├── Unauthorized (401)            no token, or one that is not known, where one is needed
    ├── Forbidden (403)               a token without the scope or model asked for; admin turned off
    ├── NotFound (404)                an unknown model, version, alias or file
    ├── Conflict (409)                a name or alias clash
    ├── PayloadTooLarge (413)         a request body over the configured limit
    ├── RateLimited (429)             a token past its rate: retry later (carries Retry-After)
    ├── Unavailable (503)             a model that is not loaded or cannot run right now
    │   ├── Overloaded (503)          too many requests in flight: retry later (carries Retry-After)
    │   └── DeadlineExceeded (504)    no answer within the request timeout
    └── CorruptArtifact (500)         stored bytes that no longer match their sha256

    ClientGone (499)                  the client went away before its request was whole: nobody is
                                      answered; counted as nginx counts it ("client closed request")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any


class ShipyardError(Exception):
    """Base of every error shipyard raises on purpose; its message is safe to show to a caller."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(ShipyardError):
    status = HTTPStatus.BAD_REQUEST


class ConversionFailed(InvalidInput):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class Unauthorized(ShipyardError):
    status = HTTPStatus.UNAUTHORIZED


class Forbidden(ShipyardError):
    status = HTTPStatus.FORBIDDEN


class NotFound(ShipyardError):
    status = HTTPStatus.NOT_FOUND


class Conflict(ShipyardError):
    status = HTTPStatus.CONFLICT


class PayloadTooLarge(ShipyardError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class RateLimited(ShipyardError):
    status = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ShipyardError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class Overloaded(Unavailable):
    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Unavailable):
    status = HTTPStatus.GATEWAY_TIMEOUT


class CorruptArtifact(ShipyardError):
    status = HTTPStatus.INTERNAL_SERVER_ERROR


CLIENT_GONE = 499


class ClientGone(Exception):
    """The client went away before sending its whole request. Not a ShipyardError: there is nobody to
    tell, and it is nobody's fault here (counted as CLIENT_GONE, logged at debug level)."""


def status_of(exc: BaseException) -> int:
    """The status a failure is answered and counted with: a ShipyardError's own, CLIENT_GONE for a
    client that went away, 500 for anything else (a fault of the server's)."""
    if isinstance(exc, ShipyardError):
        return exc.status
    return CLIENT_GONE if isinstance(exc, ClientGone) else HTTPStatus.INTERNAL_SERVER_ERROR


_BY_STATUS: dict[int, type[ShipyardError]] = {
    cls.status: cls
    for cls in (
        *(ShipyardError, CorruptArtifact, DeadlineExceeded, Unavailable, RateLimited, PayloadTooLarge),
        *(Conflict, NotFound, Forbidden, Unauthorized, ConversionFailed, InvalidInput),
    )
}


def error_for_status(status: int, message: str) -> ShipyardError:
    """The error a server's answer stands for (a client's view of the same tree); 500 when unknown."""
    return _BY_STATUS.get(status, ShipyardError)(message)


def validation_problems(errors: Iterable[Mapping[str, Any]], empty: str = "") -> str:
    """pydantic's errors (`exc.errors()`) as one line, each as `field.path: message`, so that every
    layer (the CLI's settings and options, the HTTP API's bodies) words a bad field the same way."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or empty}: {e['msg']}" for e in errors)


__all__ = [
    "CLIENT_GONE",
    "ClientGone",
    "Conflict",
    "ConversionFailed",
    "CorruptArtifact",
    "DeadlineExceeded",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RateLimited",
    "ShipyardError",
    "Unauthorized",
    "Unavailable",
    "status_of",
]
