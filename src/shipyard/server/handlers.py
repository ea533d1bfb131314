"""The hot endpoints, v2 infer and predict, answered on the hot path (server/hot.py): a `Call` in,
one data-plane call, the answer sent.

Inference is the data plane's from the request's arrival (dataplane.py): a handler gives it the call
with the `Inbound` that checks the caller's token and reads the body once the request is admitted,
and encodes what comes back. Failures become their answer here (Call.fail): a 4xx or 5xx leaves the
keep-alive connection usable, and a client that went away mid-body is counted as 499.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from shipyard.dataplane import DataPlane, Predict
from shipyard.errors import InvalidInput
from shipyard.protocol.v2 import InferenceRequest, decode_request, encode_response
from shipyard.server.auth import Auth
from shipyard.server.hot import BINARY, Call, receive_body

JSON = "application/json"
VERSION = b"x-shipyard-version"
"""The response header naming the version that answered (a traffic split may have chosen it)."""


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """A Starlette request's whole body, refused with 413 as soon as it is known to pass `limit`."""
    return await receive_body(request.receive, request.headers.get("content-length"), limit)


def _number(value: bytes, what: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(f"{what} must be a number, got {value.decode('latin-1')!r}")
    return int(value)


def _top_k(call: Call) -> int | None:
    value = call.query("top_k", "")
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > 1000:
        raise InvalidInput(f"top_k must be an integer from 0 to 1000, got {value!r}")
    return int(value)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Inference:
    """What both inbound kinds share: the caller's `predict` scope, and the body limit."""

    def __init__(self, auth: Auth, limit: int) -> None:
        self.auth, self.limit = auth, limit

    def allow(self, call: Call, model: str) -> None:
        if self.auth.enforced("predict"):
            authorization = call.authorization
            token = None if authorization is None else authorization.decode("latin-1")
            self.auth.check(token, "predict", model, call.client)

    def key(self, call: Call) -> str | None:
        return None if call.key is None else call.key.decode("latin-1")


class V2Inbound(Inference):
    """A v2 request over HTTP: JSON, or a JSON header and binary tensors (the binary extension)."""

    async def read(self, call: Call) -> InferenceRequest:
        header = call.header_length
        length = None if header is None else _number(header, "Inference-Header-Content-Length")
        return decode_request(await call.body(self.limit), length)


class PredictInbound(Inference):
    """A friendly prediction: the body, `?top_k=`, and the body's content-type."""

    async def read(self, call: Call) -> Predict:
        top_k = _top_k(call)
        content_type = call.content_type
        return (
            await call.body(self.limit),
            top_k,
            "" if content_type is None else content_type.decode("latin-1"),
        )


class Handlers:
    def __init__(self, dataplane: DataPlane, auth: Auth, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.v2 = V2Inbound(auth, max_body_bytes)
        self.friendly = PredictInbound(auth, max_body_bytes)

    async def infer(self, call: Call) -> None:
        params = call.params
        try:
            answer = await self.dataplane.infer(params["name"], params.get("version"), call, self.v2, "rest")
            content, header_length = encode_response(answer)
        except Exception as exc:
            await call.fail(exc)
            return
        served_by = (VERSION, answer.model_version.encode())
        if header_length is None:
            await call.answer(content, extra=(served_by,))
        else:
            length = (b"inference-header-content-length", b"%d" % header_length)
            await call.answer(content, BINARY, (length, served_by))

    async def predict(self, call: Call) -> None:
        params = call.params
        try:
            answer = await self.dataplane.predict(
                params.get("name"), params.get("version"), call, self.friendly
            )
            content = orjson.dumps(answer)
        except Exception as exc:
            await call.fail(exc)
            return
        first = answer[0] if isinstance(answer, list) else answer
        await call.answer(content, extra=((VERSION, b"%d" % first["version"]),) if first else ())


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
