"""The one place where errors become HTTP responses: {"error": "..."} with the error's status.

What each failure is answered with, and how it is logged, is server/failures.py's, for gRPC too.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shipyard.errors import CLIENT_GONE, ClientGone, ShipyardError
from shipyard.server.failures import failure


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def answer_error(exc: BaseException) -> Response:
    """The JSON answer of any exception (none for a client that went away: nobody reads it)."""
    status, message, retry = failure(exc)
    if status == CLIENT_GONE:
        return Response(status_code=CLIENT_GONE)
    return error_response(status, message, {"Retry-After": str(retry)} if retry else None)


async def _any(_request: Request, exc: Exception) -> Response:
    return answer_error(exc)


async def _http(_request: Request, exc: Exception) -> Response:
    """Starlette's own: no route (404), a method the route does not take (405)."""
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint"
    return error_response(exc.status_code, message, getattr(exc, "headers", None))


def handlers() -> dict[Any, Callable[[Request, Any], Coroutine[Any, Any, Response]]]:
    """For Starlette(exception_handlers=...): what is expected is answered where it is raised;
    anything else is answered last (and re-raised by Starlette: see transport.KeepErrorsQuiet)."""
    return {ShipyardError: _any, ClientGone: _any, HTTPException: _http, Exception: _any}
