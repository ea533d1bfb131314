"""The HTTP transport: routes only convert, call the data plane, and convert back.

The hot routes (v2 infer, predict, health; server/handlers.py) are plain Starlette routes in front:
FastAPI's per-request machinery (dependency solving, exit stacks, its middlewares) measured at about
half of the server's CPU per request on the digits model (py-spy, bench/). FastAPI, mounted behind
them, serves everything else and the OpenAPI docs at /docs, which also describe the hot routes (same
handlers). Every route checks its scope (server/auth.py) before it reads a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from fastapi import Depends, FastAPI, Query
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from shipyard._version import __version__
from shipyard.dataplane import DataPlane
from shipyard.monitor import dashboard
from shipyard.server import errors
from shipyard.server.admin import DeployRequest, RollbackRequest, admin_body, documented
from shipyard.server.auth import Auth, TokenLike
from shipyard.server.handlers import Handlers, json_response, overload_refusal, read_body
from shipyard.server.openapi import FEEDBACK_BODY, INFER_BODY, PREDICT_BODY
from shipyard.server.transport import REFUSE, KeepErrorsQuiet

log = logging.getLogger(__name__)
FEEDBACK_LIMIT = 4 * 1024 * 1024


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
    h = Handlers(dataplane, auth, max_body_bytes)

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

    hot = [
        Route("/v2/health/live", h.live, methods=["GET"]),
        Route("/v2/health/ready", h.ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", h.infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", h.infer, methods=["POST"]),
        Route("/v1/models/{name}/predict", h.predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version}/predict", h.predict, methods=["POST"]),
        Route("/predict", h.predict, methods=["POST"]),
        Route("/metrics", h.metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=[*hot, Mount("/", app=_documented_api(dataplane, h))],
        lifespan=lifespan,
        exception_handlers=errors.handlers(),
    )
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


READ_PREFIXES = ("/v2/models", "/v1/models", "/dashboard")


def scope_of(route: str) -> str | None:
    """The scope a route needs, by its template (`/v2/models/{name}`, never the request's own path, so
    no model name can pass for a route), so that no route can forget to check one. A route this does
    not know needs admin: new routes fail closed."""
    if route.startswith("/v2/health/"):
        return None
    if route.endswith(("/infer", "/predict")):
        return "predict"
    if route.endswith("/feedback"):
        return "feedback"
    if route == "/v2" or route.startswith(READ_PREFIXES):
        return "read"
    return "admin"


def _scope_check(h: Handlers) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        route = request.scope.get("route")
        scope = scope_of(getattr(route, "path", "") or "")
        request.state.actor = None
        if scope is not None and (scope == "admin" or h.auth.enforced(scope)):
            request.state.actor = h.allow(request, scope, request.path_params.get("name"))

    return check


def _documented_api(dataplane: DataPlane, h: Handlers) -> FastAPI:
    """Metadata, configuration and the docs; the hot routes appear here for /docs with the same handlers."""
    app = FastAPI(
        title="shipyard",
        version=__version__,
        description="KServe v2 inference protocol and a friendly /predict API over ONNX Runtime.",
        default_response_class=Response,
        exception_handlers=errors.handlers(unexpected=False),  # the outer app logs those, once
        dependencies=[Depends(_scope_check(h))],
    )

    @app.get("/v2/health/live", tags=["v2"])
    async def live(request: Request) -> Response:
        return await h.live(request)

    @app.get("/v2/health/ready", tags=["v2"])
    async def ready(request: Request) -> Response:
        return await h.ready(request)

    @app.get("/v2", tags=["v2"])
    async def server_metadata() -> Response:
        return json_response(dataplane.server_metadata())

    @app.get("/v2/models/stats", tags=["monitoring"])
    @app.get("/v2/models/{name}/stats", tags=["monitoring"])
    @app.get("/v2/models/{name}/versions/{version}/stats", tags=["monitoring"])
    async def statistics(name: str | None = None, version: str | None = None) -> Response:
        return json_response(dataplane.statistics(name, version))

    @app.get("/v2/models/{name}", tags=["v2"])
    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"])
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return json_response(dataplane.model_metadata(name, version))

    @app.get("/v2/models/{name}/config", tags=["v2"])
    @app.get("/v2/models/{name}/versions/{version}/config", tags=["v2"])
    async def model_config(name: str, version: str | None = None) -> Response:
        return json_response(dataplane.model_config(name, version))

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"])
    async def model_ready(name: str, version: str | None = None) -> Response:
        is_ready = dataplane.model_ready(name, version)
        return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 400)

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=INFER_BODY)
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"], openapi_extra=INFER_BODY)
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        return await h.infer(request)

    # -- repository extension (Triton's), admin --------------------------------------------------

    @app.post("/v2/repository/index", tags=["repository"])
    async def repository_index(request: Request) -> Response:
        return json_response(await dataplane.repository_index())

    @app.post("/v2/repository/models/{name}/load", tags=["repository"])
    async def repository_load(request: Request, name: str) -> Response:
        await dataplane.repository_load(name)
        return json_response({"name": name, "loaded": True})

    @app.post("/v2/repository/models/{name}/unload", tags=["repository"])
    async def repository_unload(request: Request, name: str) -> Response:
        await dataplane.repository_unload(name)
        return json_response({"name": name, "loaded": False})

    @app.post(
        "/v2/repository/models/{name}/deploy", tags=["repository"], openapi_extra=documented(DeployRequest)
    )
    async def deploy(request: Request, name: str) -> Response:
        actor = request.state.actor
        body = await admin_body(request, DeployRequest)
        return json_response(
            await dataplane.deploy(name, body.version, force=body.force, reason=body.reason, actor=actor)
        )

    @app.post(
        "/v2/repository/models/{name}/rollback",
        tags=["repository"],
        openapi_extra=documented(RollbackRequest),
    )
    async def rollback(request: Request, name: str) -> Response:
        actor = request.state.actor
        body = await admin_body(request, RollbackRequest)
        return json_response(await dataplane.rollback(name, reason=body.reason, actor=actor))

    # -- monitoring -------------------------------------------------------------------------------

    @app.post("/v1/models/{name}/feedback", tags=["monitoring"], openapi_extra=FEEDBACK_BODY)
    async def feedback(request: Request, name: str) -> Response:
        return json_response(await dataplane.feedback(name, await read_body(request, FEEDBACK_LIMIT)))

    @app.get("/v1/models/{name}/monitor", tags=["monitoring"])
    async def monitor_status(name: str) -> Response:
        return json_response(await dataplane.snapshot(name))

    @app.get("/dashboard", tags=["monitoring"], response_class=HTMLResponse)
    async def dashboard_index() -> Response:
        return HTMLResponse(dashboard.index(dataplane.manager.names))

    @app.get("/dashboard/{name}", tags=["monitoring"], response_class=HTMLResponse)
    async def dashboard_page(name: str, fragment: bool = False) -> Response:
        snapshot = await dataplane.snapshot(name)
        if fragment:
            return HTMLResponse(dashboard.fragment(snapshot))
        return HTMLResponse(dashboard.page(name, snapshot, dataplane.manager.names))

    @app.get("/v1/models", tags=["friendly"])
    async def list_models() -> Response:
        return json_response({"models": dataplane.models()})

    top_k = Query(0, ge=0, le=1000, description="also return the k most likely classes")

    @app.post("/v1/models/{name}/predict", tags=["friendly"], openapi_extra=PREDICT_BODY)
    @app.post("/v1/models/{name}/versions/{version}/predict", tags=["friendly"], openapi_extra=PREDICT_BODY)
    @app.post("/predict", tags=["friendly"], openapi_extra=PREDICT_BODY)
    async def predict(
        request: Request, name: str | None = None, version: str | None = None, top_k: int = top_k
    ) -> Response:
        return await h.predict(request)

    return app
