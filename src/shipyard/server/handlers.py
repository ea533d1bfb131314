"""The hot endpoints (v2 infer, predict, health, metrics) as plain `request -> response` functions.

Each one decides what it can before reading a byte of the body: the caller's token, whether the model
is served, whether the model has room (admission). Only an admitted request has its body read and
decoded, so refusing under overload costs almost nothing. Failures become their answer here, not
by raising through Starlette: a 4xx or 5xx leaves the keep-alive connection usable, and a client that
went away mid-body is counted as such (499), not as a server error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from shipyard.dataplane import DataPlane
from shipyard.errors import InvalidInput, PayloadTooLarge, ShipyardError
from shipyard.protocol.v2 import HEADER_LENGTH, decode_request, encode_response
from shipyard.server.auth import Auth
from shipyard.server.errors import CLIENT_GONE, answer_error
from shipyard.server.transport import hold_connection

JSON = "application/json"
log = logging.getLogger("shipyard.server")


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to pass `limit` (before buffering it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(f"Inference-Header-Content-Length must be a number, got {value!r}")
    return int(value)


def _top_k(request: Request) -> int:
    value = request.query_params.get("top_k", "0")
    if not (value.isascii() and value.isdigit()) or int(value) > 1000:
        raise InvalidInput(f"top_k must be an integer from 0 to 1000, got {value!r}")
    return int(value)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Handlers:
    def __init__(self, dataplane: DataPlane, auth: Auth, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.auth = auth
        self.limit = max_body_bytes

    def allow(self, request: Request, scope: str, model: str | None = None) -> str:
        """The actor for the history; raises when the request may not do this (see server/auth.py)."""
        return self.auth.check(request.headers.get("authorization"), scope, model, client_of(request))

    def _failed(
        self,
        request: Request,
        exc: BaseException,
        name: str | None,
        version: str | None,
        protocol: str,
        started: float,
    ) -> Response:
        if isinstance(exc, ClientDisconnect):
            log.debug("a client went away before sending its whole request")
            self.dataplane.failed(name, version, protocol, CLIENT_GONE, started)
            return Response(status_code=CLIENT_GONE)
        response = answer_error(exc)
        self.dataplane.failed(name, version, protocol, response.status_code, started)
        retry = getattr(exc, "retry_after_s", None)
        if retry:
            hold_connection(request.scope, retry)
        return response

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> Response:
        is_ready, down = self.dataplane.ready(), self.dataplane.down()
        doc: dict[str, Any] = {"ready": is_ready}
        if down:
            doc["down"] = down
        return json_response(doc, 200 if is_ready else 400)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        name, version = request.path_params["name"], request.path_params.get("version")
        try:
            if self.auth.enforced("predict"):
                self.allow(request, "predict", name)
            self.dataplane.admit(name, version)  # 404 or 503 before the body is read
            body_read = False
            try:
                body = await read_body(request, self.limit)
                self.dataplane.body_read(name)
                body_read = True
                decoded = decode_request(body, _header_length(request))
                answer = await self.dataplane.infer(name, version, decoded, "rest", started)
            finally:
                self.dataplane.release(name, body_read)
            content, header_length = encode_response(answer)
        except Exception as exc:
            return self._failed(request, exc, name, version, "rest", started)
        if header_length is None:
            return Response(content, media_type=JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    async def predict(self, request: Request) -> Response:
        started = time.perf_counter()
        name, version = request.path_params.get("name"), request.path_params.get("version")
        try:
            top_k = _top_k(request)
            name = self.dataplane.only_model() if name is None else name
            if self.auth.enforced("predict"):
                self.allow(request, "predict", name)
            self.dataplane.admit(name, version)
            body_read = False
            try:
                body = await read_body(request, self.limit)
                self.dataplane.body_read(name)
                body_read = True
                answer = await self.dataplane.predict(name, version, body, top_k, started)
            finally:
                self.dataplane.release(name, body_read)
        except Exception as exc:
            return self._failed(request, exc, name, version, "predict", started)
        return json_response(answer)

    async def metrics(self, request: Request) -> Response:
        try:
            if self.auth.enforced("read"):
                self.allow(request, "read")
        except ShipyardError as exc:
            return answer_error(exc)
        monitor = self.dataplane.monitor
        if monitor is None:
            return Response(b"", media_type="text/plain")
        content, media_type = monitor.metrics.exposition()
        return Response(content, media_type=media_type)


def overload_refusal(dataplane: DataPlane, auth: Auth) -> Callable[[bytes], tuple[bytes, int] | None]:
    """For the transport (server/transport.py): given a POST's raw URL, the 503 body and Retry-After
    when its model has no room, decided before a request object, a route or a task exists: under a
    flood, refusals must cost far less than answers. None sends the request on its usual way (and so
    whenever a token is needed: a client without one learns nothing from a 503)."""

    def refuse(url: bytes) -> tuple[bytes, int] | None:
        if auth.enforced("predict") or b"%" in url:
            return None
        parts = url.split(b"?", 1)[0].split(b"/")
        if len(parts) not in (5, 7) or parts[2] != b"models" or parts[-1] not in (b"infer", b"predict"):
            return None
        if parts[1] not in (b"v1", b"v2") or (len(parts) == 7 and parts[4] != b"versions"):
            return None
        name = parts[3].decode("ascii", "replace")
        refused = dataplane.overloaded(name)
        if refused is None:
            return None
        protocol = "predict" if parts[-1] == b"predict" else "rest"
        dataplane.failed(name, None, protocol, 503, time.perf_counter())
        return orjson.dumps({"error": refused.message}), refused.retry_after_s

    return refuse
