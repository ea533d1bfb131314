"""The HTTP transport: the routes of server/routes.py, each answered by one endpoint that converts,
calls the data plane, and converts back.

Inference is answered on the hot path, straight from ASGI (server/hot.py); the rest by plain
Starlette routes: FastAPI's per-request machinery (dependency solving, exit stacks, its middlewares)
measured at about half of the server's CPU per request on the digits model (py-spy, bench/). The
OpenAPI document is written from the same table (server/openapi.py). Every route checks the scope its
path needs (routes.scope_of) before it reads a body; inference checks it as the data plane admits
the request (dataplane.Inbound). The app has no lifespan: what runs beside it is the
server's (server/serving.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard._version import __version__
from shipyard.dataplane import DataPlane
from shipyard.server import errors, openapi
from shipyard.server.auth import Auth
from shipyard.server.edge import EdgePages
from shipyard.server.endpoints import Endpoints
from shipyard.server.handlers import client_of
from shipyard.server.hot import HotPath
from shipyard.server.routes import ROUTES, scope_of
from shipyard.server.transport import KeepErrorsQuiet

Endpoint = Callable[[Request], Awaitable[Response]]
TITLE = "shipyard"
DESCRIPTION = "KServe v2 inference protocol and a friendly /predict API over ONNX Runtime."


def create_app(
    dataplane: DataPlane,
    auth: Auth,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    edge_pages: Path | None = None,
) -> KeepErrorsQuiet:
    """The ASGI app of `dataplane`, its callers checked by `auth`. `edge_pages`: where the models' web
    pages are built (by default `edge` beside the registry's artifacts folder, in the server's home)."""
    document = openapi.document(ROUTES, TITLE, __version__, DESCRIPTION)
    manager = dataplane.manager
    pages = EdgePages(manager, edge_pages or manager.registry.artifacts.root.parent / "edge")
    endpoints = Endpoints(dataplane, auth, max_body_bytes, document, pages)
    routes, hot = [], {}
    for route in ROUTES:
        if route.hot:  # its scope is checked as the data plane admits the request
            hot[route.path] = getattr(endpoints, route.handler)
            continue
        endpoint: Endpoint = getattr(endpoints, route.handler)
        scope = scope_of(route.path)
        if scope is not None:
            endpoint = _checked(endpoint, scope, auth)
        routes.append(Route(route.path, endpoint, methods=[route.method]))
    starlette = Starlette(routes=routes, exception_handlers=errors.handlers())
    return KeepErrorsQuiet(HotPath(starlette, hot))


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
