"""The hot path: inference requests answered straight from ASGI, before Starlette sees them.

Starlette's per-request machinery (its middleware stack, a regex per route tried, a Request, a
Response and their header objects) measured at about a fifth of the server's CPU per request on the
digits model (py-spy, bench/floor.py). The routes marked `hot` in server/routes.py are matched here
by their segments instead, their few headers found in one pass over the scope, and their answers sent
with prebuilt headers; every other request goes on to Starlette unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shipyard.errors import CLIENT_GONE, ClientGone, PayloadTooLarge
from shipyard.server.failures import failure
from shipyard.server.transport import hold_connection

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
JSON = b"application/json"
BINARY = b"application/octet-stream"
NOT_ALLOWED = b'{"error":"Method Not Allowed"}'


class Call:
    """One request on the hot path: its ASGI scope and channels, the route's parameters, and the
    headers the hot path reads (the first of each, as Starlette's `headers.get` would give)."""

    __slots__ = (
        "authorization", "content_type", "header_length", "key", "length", "params", "receive", "scope",
        "send",
    )  # fmt: skip

    def __init__(self, scope: Any, receive: Any, send: Any, params: dict[str, str]) -> None:
        self.scope, self.receive, self.send, self.params = scope, receive, send, params
        self.length: bytes | None = None
        self.header_length: bytes | None = None
        self.authorization: bytes | None = None
        self.key: bytes | None = None
        """X-Shipyard-Key: where a traffic split sends the request (rollout/router.py sticky_point)."""
        self.content_type: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                self.length = self.length or value
            elif key == b"inference-header-content-length":
                self.header_length = self.header_length or value
            elif key == b"authorization":
                self.authorization = self.authorization or value
            elif key == b"x-shipyard-key":
                self.key = self.key or value
            elif key == b"content-type":
                self.content_type = self.content_type or value

    @property
    def client(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "unknown"

    def query(self, name: str, default: str) -> str:
        """A query parameter (the last one given, as Starlette's `query_params.get`)."""
        raw = self.scope.get("query_string")
        if not raw:
            return default
        found: dict[str, str] = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        return found.get(name, default)

    async def body(self, limit: int) -> bytes:
        """The whole body, refused with 413 as soon as it is known to pass `limit`."""
        return await receive_body(self.receive, self.length, limit)

    async def answer(
        self, body: bytes, kind: bytes = JSON, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        await self.respond(200, body, kind, extra)

    async def respond(
        self, status: int, body: bytes, kind: bytes = JSON, extra: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        headers = [(b"content-type", kind), (b"content-length", b"%d" % len(body)), *extra]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def fail(self, exc: BaseException) -> None:
        """The answer of a request that failed (server/failures.py says what and logs it); a refusal
        with Retry-After also holds the connection's next request until then (server/transport.py)."""
        status, message, retry = failure(exc)
        if status == CLIENT_GONE:
            await self.respond(status, b"")
            return
        extra: list[tuple[bytes, bytes]] = []
        if retry:
            hold_connection(self.scope, retry)
            extra.append((b"retry-after", b"%d" % retry))
        await self.respond(status, orjson.dumps({"error": message}), JSON, extra)


async def receive_body(receive: Any, declared: bytes | str | None, limit: int) -> bytes:
    """A request's whole body from ASGI `receive`, refused with 413 as soon as it is known to pass
    `limit` (by its Content-Length before a byte is buffered); ClientGone when the client left."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        length = declared.decode() if isinstance(declared, bytes) else declared
        raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the whole body in one message: the usual case
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        return body
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


Handler = Callable[[Call], Awaitable[None]]


class HotPath:
    """ASGI: the hot routes (`template -> handler`, POST) answered here, the rest by `app`."""

    def __init__(self, app: ASGIApp, routes: dict[str, Handler]) -> None:
        self.app = app
        self._by_length: dict[int, list[tuple[tuple[str, ...], Handler]]] = {}
        for template, handler in routes.items():
            segments = tuple(template.split("/"))
            self._by_length.setdefault(len(segments), []).append((segments, handler))
        self.templates = tuple(routes)

    def match(self, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler of `path` and its parameters, matched as Starlette matches `{name}`: one
        whole, non-empty segment."""
        parts = path.split("/")
        for segments, handler in self._by_length.get(len(parts), ()):
            params: dict[str, str] = {}
            for want, got in zip(segments, parts, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return handler, params
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            found = self.match(scope["path"])
            if found is not None:
                handler, params = found
                call = Call(scope, receive, send, params)
                if scope["method"] != "POST":
                    await call.respond(405, NOT_ALLOWED, JSON, [(b"allow", b"POST")])
                    return
                await handler(call)
                return
        await self.app(scope, receive, send)
