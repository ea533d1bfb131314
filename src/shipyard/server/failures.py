"""What a caller is told when a request fails, the same on every transport.

HTTP answers with the status (server/errors.py), gRPC with the code its table gives for it
(server/grpc.py); both take it from here, so a failure is logged in one way whichever transport
carried it: a fault of the server's (anything that is not a ShipyardError) once, with its traceback,
as a 500 that says nothing of the server's insides; a ShipyardError that is the server's own fault
(5xx, except the 503s that ask the client to come back) in one line; a client that went away at
debug level; every other error, the caller's, not at all.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import NamedTuple

from shipyard.errors import ClientGone, ShipyardError, status_of

log = logging.getLogger("shipyard.server")
INTERNAL = "internal server error"


class Failure(NamedTuple):
    status: int
    message: str
    retry_after_s: int | None = None


def failure(exc: BaseException) -> Failure:
    """The status, message and Retry-After (seconds) of `exc`'s answer; logged here, as above."""
    status = status_of(exc)
    if isinstance(exc, ShipyardError):
        retry = getattr(exc, "retry_after_s", None)
        if status >= 500 and status != HTTPStatus.SERVICE_UNAVAILABLE:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return Failure(status, exc.message, retry)
    if isinstance(exc, ClientGone):
        log.debug("a client went away before sending its whole request")
        return Failure(status, "the client went away")
    log.error("unexpected error", exc_info=exc)
    return Failure(status, INTERNAL)
