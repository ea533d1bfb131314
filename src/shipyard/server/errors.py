"""The one place where errors become HTTP responses: {"error": "..."} with the error's status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from shipyard.errors import ShipyardError

log = logging.getLogger("shipyard.server")
CLIENT_GONE = 499  # nginx's "client closed request": counted, never answered


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def answer_error(exc: BaseException) -> Response:
    """The JSON answer of any exception; unexpected ones are logged once, as a 500 that says nothing of
    the server's insides."""
    if isinstance(exc, ShipyardError):
        retry = getattr(exc, "retry_after_s", None)
        if exc.status >= 500 and retry is None and exc.status != 503:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return error_response(exc.status, exc.message, {"Retry-After": str(retry)} if retry else None)
    log.error("unexpected error", exc_info=exc)
    return error_response(500, "internal server error")


async def _shipyard(_request: Request, exc: Exception) -> Response:
    return answer_error(exc)


async def _http(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint"
    return error_response(exc.status_code, message, getattr(exc, "headers", None))


async def _validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
    return error_response(400, problems or "invalid request")


async def _unexpected(_request: Request, exc: Exception) -> Response:
    return answer_error(exc)


async def _gone(_request: Request, exc: Exception) -> Response:
    log.debug("a client went away before sending its whole request")
    return Response(status_code=CLIENT_GONE)  # nobody reads it


def handlers(unexpected: bool = True) -> dict[Any, Callable[[Request, Any], Coroutine[Any, Any, Response]]]:
    """For Starlette(exception_handlers=...) and FastAPI alike; `unexpected` errors are answered (and
    logged) by the outermost app only."""
    table: dict[Any, Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
        ShipyardError: _shipyard,
        HTTPException: _http,
        RequestValidationError: _validation,
        ClientDisconnect: _gone,
    }
    if unexpected:
        table[Exception] = _unexpected
    return table
