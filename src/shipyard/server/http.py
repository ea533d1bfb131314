"""The HTTP transport: the routes of server/routes.py, each answered by one endpoint that converts,
calls the data plane, and converts back.

Plain Starlette routes: FastAPI's per-request machinery (dependency solving, exit stacks, its
middlewares) measured at about half of the server's CPU per request on the digits model (py-spy,
bench/). The OpenAPI document is written from the same table (server/openapi.py). Every route checks
the scope its path needs (routes.scope_of) before it reads a body; inference checks it as the data
plane admits the request (dataplane.Inbound).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard._version import __version__
from shipyard.dataplane import DataPlane
from shipyard.server import errors, openapi
from shipyard.server.auth import Auth, TokenLike
from shipyard.server.endpoints import Endpoints
from shipyard.server.handlers import client_of, overload_refusal
from shipyard.server.routes import ROUTES, scope_of
from shipyard.server.transport import REFUSE, KeepErrorsQuiet

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
TITLE = "shipyard"
DESCRIPTION = "KServe v2 inference protocol and a friendly /predict API over ONNX Runtime."


def create_app(
    dataplane: DataPlane,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    also_serve: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None,
    admin_tokens: dict[str, str] | None = None,
    auth: Auth | None = None,
    tokens: Callable[[], Iterable[TokenLike]] | None = None,
    tokens_interval_s: float = 1.0,
) -> KeepErrorsQuiet:
    """The ASGI app; `also_serve` runs beside it on the same loop (the gRPC server). `tokens` reads the
    registry's tokens, followed every `tokens_interval_s` while the app runs."""
    auth = auth or Auth(admin_tokens)
    document = openapi.document(ROUTES, TITLE, __version__, DESCRIPTION)
    endpoints = Endpoints(dataplane, auth, max_body_bytes, document)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await dataplane.manager.start()
        background = []
        if dataplane.monitor is not None:
            dataplane.monitor.start()
            background.append(asyncio.create_task(_tick(dataplane), name="monitor-tick"))
        if tokens is not None and tokens_interval_s > 0:
            background.append(asyncio.create_task(_follow_tokens(auth, tokens, tokens_interval_s)))
        try:
            async with also_serve() if also_serve else contextlib.nullcontext():
                yield {REFUSE: overload_refusal(dataplane, auth)}  # for the transport
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await dataplane.manager.aclose()
            if dataplane.monitor is not None:
                await asyncio.to_thread(dataplane.monitor.close)

    routes = []
    for route in ROUTES:
        endpoint: Endpoint = getattr(endpoints, route.handler)
        scope = scope_of(route.path)
        if scope is not None and scope != "predict":  # predict: as the data plane admits the request
            endpoint = _checked(endpoint, scope, auth)
        routes.append(Route(route.path, endpoint, methods=[route.method]))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=errors.handlers())
    return KeepErrorsQuiet(app)


async def _follow_tokens(auth: Auth, read: Callable[[], Iterable[TokenLike]], interval_s: float) -> None:
    """Tokens created or revoked in the registry take effect here within `interval_s`."""
    while True:
        await asyncio.sleep(interval_s)  # a polling period, not a synchronisation
        try:
            auth.update(await asyncio.to_thread(lambda: list(read())))
        except Exception:
            log.exception("reading the registry's tokens failed; keeping the ones known")


async def _tick(dataplane: DataPlane) -> None:
    """Once a second: the monitor's gauges (state, drift, accuracy, cost), off the request path."""
    assert dataplane.monitor is not None
    while True:
        await asyncio.sleep(1.0)  # a sampling period, not a synchronisation
        try:
            reports = await asyncio.to_thread(dataplane.monitor.drift_reports)
            dataplane.monitor.tick(dataplane.manager.gauges(), reports)
        except Exception:
            log.exception("monitor tick failed; trying again")


def _checked(endpoint: Endpoint, scope: str, auth: Auth) -> Endpoint:
    """`endpoint`, answered once the caller may use `scope` (on the route's model, if it names one);
    `request.state.actor` is who that is, for the history."""

    async def checked(request: Request) -> Response:
        request.state.actor = None
        if scope == "admin" or auth.enforced(scope):
            authorization = request.headers.get("authorization")
            model = request.path_params.get("name")
            request.state.actor = auth.check(authorization, scope, model, client_of(request))
        return await endpoint(request)

    return checked
