"""What uvicorn leaves to the application, for clients that are slow, idle, many, or gone.

uvicorn's httptools protocol has no deadline for a request's head or body and no cap on open
connections: a client sending a byte a second, or thousands that connect and say nothing, hold a
file descriptor each for as long as they like, until health checks fail. `GuardedProtocol` adds
the three, at the protocol, so refusing costs no request task:

- a connection past `max_connections` takes the place of the one that has waited longest for a
  request, or, when every one is busy, gets 503 + Retry-After and is closed at once;
- a request's head (line and headers) must arrive within `header_timeout_s` of its first byte, or
  of the connection's opening: else 408 and the connection closes;
- its body must arrive within `body_timeout_s` of the head: else the connection closes, and the
  handler reading it sees a client that went away;
- a request refused with Retry-After (overload, a rate limit) holds its connection: the next request
  on it is read once that time has passed, as the client was told;
- a request for a model with no room is refused here, from its URL, before Starlette, a route or a
  request object (`refuse`, from the server: handlers.overload_refusal): refusals must cost far less
  than answers.

`KeepErrorsQuiet` wraps the ASGI app so that an unexpected error is answered (500, logged once by
the exception handler) without Starlette re-raising it into uvicorn, which would log it again and
drop a keep-alive connection the client may still be using.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import resource
import socket
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipyard.config import TransportLimits

log = logging.getLogger("shipyard.server")


def _raw_response(status: bytes, message: bytes, extra: bytes = b"") -> bytes:
    body = b'{"error":"' + message + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"connection: close\r\n\r\n"
        + body
    )


TOO_MANY = _raw_response(
    b"503 Service Unavailable", b"too many open connections: retry later", b"retry-after: 1\r\n"
)
TOO_SLOW = _raw_response(b"408 Request Timeout", b"the request head did not arrive in time")


Refuse = Callable[[bytes], tuple[bytes, int] | None]
"""A POST's raw URL -> its 503 body and Retry-After, or None to let it in (handlers.overload_refusal)."""
HOLD = "shipyard.hold_s"
"""Set in a request's ASGI scope state by a handler that refused it with Retry-After (seconds)."""


def hold_connection(scope: Any, seconds: float) -> None:
    """Ask the protocol not to read the connection's next request for `seconds` (on_response_complete)."""
    scope.setdefault("state", {})[HOLD] = seconds


class GuardedProtocol(HttpToolsProtocol):
    """One deadline for what the client owes (a head, a body, or, after an early answer, to go
    quiet), and one hold after a refusal with Retry-After."""

    def __init__(
        self,
        *args: Any,
        limits: TransportLimits,
        refuse: Refuse | None,
        idle: dict[GuardedProtocol, None],
        deadlines: Deadlines,
        **kwargs: Any,
    ) -> None:
        """`idle`: the server's connections waiting for a request, oldest first; `deadlines`: the one
        timer that enforces every connection's deadline (both shared by the server's connections)."""
        super().__init__(*args, **kwargs)
        self.limits, self.refuse, self.waiting, self.deadlines = limits, refuse, idle, deadlines
        self._due: float | None = None
        self._then: Callable[[], None] | None = None
        self._hold: asyncio.TimerHandle | None = None
        self._in_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadlines.watch(self)
        if len(self.connections) > self.limits.max_connections and not self._evict_idle():
            transport.write(TOO_MANY)
            transport.close()
            return
        self._idle(True)
        self._arm(self.limits.header_timeout_s, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle(False)
        self._arm(None)
        self.deadlines.forget(self)
        if self._hold is not None:
            self._hold.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._idle(False)
        super().on_message_begin()
        self._arm(self.limits.header_timeout_s, self._head_too_slow)

    def _idle(self, idle: bool) -> None:
        """Keep the server's connections that wait for a request in order, oldest first."""
        self.waiting.pop(self, None)
        if idle:
            self.waiting[self] = None

    def _evict_idle(self) -> bool:
        """At the cap, a new connection takes the place of the one that has waited longest for a
        request (as nginx reuses idle keep-alive connections): thousands of idle connections cannot
        lock real clients, health checks included, out."""
        waiting = self.waiting
        while waiting:
            oldest = next(iter(waiting))
            del waiting[oldest]
            if oldest is not self and not oldest.transport.is_closing():
                oldest.transport.close()
                return True
        return False

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._arm(self.limits.body_timeout_s, self._body_too_slow)
        refuse = self.refuse
        refused = refuse(self.url) if refuse is not None and self.parser.get_method() == b"POST" else None
        if refused is None:
            super().on_headers_complete()
            return
        app, self.app = self.app, Refusal(*refused)  # this one request goes to the refusal
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()
        answered = self.cycle is not None and self.cycle.response_complete and not self.pipeline
        # answered before its body was in (404, 401, 503...): the idle clock starts now, unless held
        self._arm(self.timeout_keep_alive if answered and self._hold is None else None, self._quiet)

    def on_response_complete(self) -> None:
        cycle = self.cycle
        hold = cycle.scope.get("state", {}).get(HOLD) if cycle is not None and not self.pipeline else None
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self._idle(True)
        if hold and not self.transport.is_closing():
            # refused with Retry-After: this connection's next request is read once that time has
            # passed, so a client that ignores it cannot turn refusals into a busy loop that starves
            # the requests that were admitted (a new connection is read at once, as before)
            self._unset_keepalive_if_required()  # held, not idle
            self._arm(None)
            self.flow.pause_reading()
            # spread over the told time, so no herd comes back at once and no polite client waits more
            self._hold = self.loop.call_later(hold * random.uniform(0.5, 1.0), self._resume)

    def _resume(self) -> None:
        self._hold = None
        if not self.transport.is_closing():
            self.flow.resume_reading()
            if self._in_body:  # the refused request's body is still coming: it owes the rest
                self._arm(self.limits.body_timeout_s, self._body_too_slow)
            else:
                self._arm(self.timeout_keep_alive, self._quiet)

    def _arm(self, seconds: float | None, then: Callable[[], None] | None = None) -> None:
        """Call `then` once `seconds` have passed (Deadlines checks), unless armed again before."""
        self._due = None if seconds is None else self.loop.time() + seconds
        self._then = then

    def check(self, now: float) -> None:
        """Called by Deadlines: the deadline's action, once it has passed."""
        due, then = self._due, self._then
        if due is not None and then is not None and now >= due:
            self._due = self._then = None
            then()

    def _head_too_slow(self) -> None:
        if not self.transport.is_closing():
            log.debug("closing a connection whose request head did not arrive in time")
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(TOO_SLOW)
            self.transport.close()

    def _body_too_slow(self) -> None:
        if not self.transport.is_closing():
            log.debug("closing a connection whose request body did not arrive in time")
            self.transport.close()

    def _quiet(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


class Refusal:
    """The whole ASGI app of a request refused at the transport: 503, Retry-After, and the hold."""

    def __init__(self, body: bytes, retry_after_s: int) -> None:
        self.body, self.retry_after_s = body, retry_after_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        hold_connection(scope, self.retry_after_s)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"retry-after", str(self.retry_after_s).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class Deadlines:
    """One timer for the deadlines of every connection of a server, checked every `every_s`: a
    deadline moves with each phase of each request, and a timer of its own per move (cancelled and
    made again) cost ~5% of the event loop's time per request. A deadline acts up to `every_s` late."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._watched: set[GuardedProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, protocol: GuardedProtocol) -> None:
        self._watched.add(protocol)
        if self._timer is None:
            self._timer = protocol.loop.call_later(self.every_s, self._sweep, protocol.loop)

    def forget(self, protocol: GuardedProtocol) -> None:
        self._watched.discard(protocol)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for protocol in list(self._watched):
            try:
                protocol.check(now)
            except Exception:  # one connection's trouble must not stop the others' deadlines
                log.exception("enforcing a connection's deadline failed")
        self._timer = loop.call_later(self.every_s, self._sweep, loop) if self._watched else None


def protocol_for(limits: TransportLimits, refuse: Refuse | None = None) -> Callable[..., GuardedProtocol]:
    """What uvicorn calls per connection (`http=`), for one server."""
    shortest = min(limits.header_timeout_s, limits.body_timeout_s, limits.keep_alive_s)
    deadlines = Deadlines(min(0.5, max(0.05, shortest / 10)))
    return functools.partial(GuardedProtocol, limits=limits, refuse=refuse, idle={}, deadlines=deadlines)


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to (host, port), for a server to listen on (OSError when it cannot be).

    Made as TCP by name (IPPROTO_TCP), as asyncio makes its own: asyncio sets TCP_NODELAY on the
    connections of a socket only when it says so. Without it, an answer written in two parts (head,
    body) waited for the client's delayed ACK: ~40 ms a request with wrk, where curl did not show it.
    As uvicorn binds, a port left in TIME_WAIT by a killed server is free to take (SO_REUSEADDR).
    `reuse_port`: processes that are not one another's children (Ray Serve's replicas) share the port,
    the kernel spreading connections among them (SO_REUSEPORT, Linux and the BSDs)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def raise_open_file_limit(wanted: int) -> int:
    """Let the process hold `wanted` descriptors if the hard limit allows; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class KeepErrorsQuiet:
    """See the module's docstring: the 500 has been sent and logged; the connection stays."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:
            if scope["type"] != "http":
                raise
