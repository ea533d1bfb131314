"""The hot endpoints (v2 infer, predict, health, metrics) as plain `request -> response` functions.

Inference is the data plane's from the request's arrival (dataplane.py): a handler gives it the
request with the `Inbound` that checks the caller's token and reads the body once the request is
admitted, and encodes what comes back. Failures become their answer here, not by raising through
Starlette: a 4xx or 5xx leaves the keep-alive connection usable, and a client that went away
mid-body gets no answer (it is counted as 499).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from shipyard.dataplane import DataPlane, Predict
from shipyard.errors import ClientGone, InvalidInput, PayloadTooLarge
from shipyard.protocol.v2 import HEADER_LENGTH, InferenceRequest, decode_request, encode_response
from shipyard.server.auth import Auth
from shipyard.server.errors import answer_error
from shipyard.server.transport import hold_connection

JSON = "application/json"


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to pass `limit` (before buffering it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
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


class Inference:
    """What both inbound kinds share: the caller's `predict` scope, and the body limit."""

    def __init__(self, auth: Auth, limit: int) -> None:
        self.auth, self.limit = auth, limit

    def allow(self, request: Request, model: str) -> None:
        if self.auth.enforced("predict"):
            authorization = request.headers.get("authorization")
            self.auth.check(authorization, "predict", model, client_of(request))


class V2Inbound(Inference):
    """A v2 request over HTTP: JSON, or a JSON header and binary tensors (the binary extension)."""

    async def read(self, request: Request) -> InferenceRequest:
        return decode_request(await read_body(request, self.limit), _header_length(request))


class PredictInbound(Inference):
    """A friendly prediction: the body, and `?top_k=`."""

    async def read(self, request: Request) -> Predict:
        top_k = _top_k(request)
        return await read_body(request, self.limit), top_k


class Handlers:
    def __init__(self, dataplane: DataPlane, auth: Auth, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.v2 = V2Inbound(auth, max_body_bytes)
        self.friendly = PredictInbound(auth, max_body_bytes)

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> Response:
        is_ready, down = self.dataplane.ready(), self.dataplane.down()
        doc: dict[str, Any] = {"ready": is_ready}
        if down:
            doc["down"] = down
        return json_response(doc, 200 if is_ready else 400)

    async def infer(self, request: Request) -> Response:
        params = request.path_params
        try:
            answer = await self.dataplane.infer(
                params["name"], params.get("version"), request, self.v2, "rest"
            )
            content, header_length = encode_response(answer)
        except Exception as exc:
            return failed(request, exc)
        if header_length is None:
            return Response(content, media_type=JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    async def predict(self, request: Request) -> Response:
        params = request.path_params
        try:
            answer = await self.dataplane.predict(
                params.get("name"), params.get("version"), request, self.friendly
            )
        except Exception as exc:
            return failed(request, exc)
        return json_response(answer)

    async def metrics(self, request: Request) -> Response:
        content, media_type = self.dataplane.metrics()
        return Response(content, media_type=media_type)


def failed(request: Request, exc: Exception) -> Response:
    """The answer of a request that failed; a refusal with Retry-After also holds the connection's
    next request until then (server/transport.py)."""
    retry = getattr(exc, "retry_after_s", None)
    if retry:
        hold_connection(request.scope, retry)
    return answer_error(exc)


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
        refused = dataplane.refused(name, "predict" if parts[-1] == b"predict" else "rest")
        if refused is None:
            return None
        return orjson.dumps({"error": refused.message}), refused.retry_after_s

    return refuse
