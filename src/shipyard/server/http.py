"""The HTTP transport: routes only convert, call the data plane, and convert back.

The hot routes (v2 infer, predict, health) are plain Starlette routes in front: FastAPI's per-request
machinery (dependency solving, exit stacks, its middlewares) measured at about half of the server's
CPU per request on the digits model (py-spy, bench/). FastAPI, mounted behind them, serves everything
else and the OpenAPI docs at /docs, which also describe the hot routes (same handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Query
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from shipyard._version import __version__
from shipyard.dataplane import DataPlane
from shipyard.errors import InvalidInput, PayloadTooLarge, Unauthorized
from shipyard.monitor import dashboard
from shipyard.protocol.v2 import HEADER_LENGTH, decode_request, encode_response
from shipyard.server import errors
from shipyard.server.admin import DeployRequest, RollbackRequest, admin_body, documented
from shipyard.server.openapi import FEEDBACK_BODY, INFER_BODY, PREDICT_BODY

JSON = "application/json"
log = logging.getLogger(__name__)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to pass `limit`."""
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
    if not value.isdigit():
        raise InvalidInput(f"Inference-Header-Content-Length must be a number, got {value!r}")
    return int(value)


def _top_k(request: Request) -> int:
    value = request.query_params.get("top_k", "0")
    if not (value.isascii() and value.isdigit()) or int(value) > 1000:
        raise InvalidInput(f"top_k must be an integer from 0 to 1000, got {value!r}")
    return int(value)


class Handlers:
    """The hot endpoints, as plain `request -> response` functions."""

    def __init__(
        self, dataplane: DataPlane, max_body_bytes: int, admin_tokens: dict[str, str] | None = None
    ) -> None:
        self.dataplane = dataplane
        self.limit = max_body_bytes
        self.admin_tokens = {name: f"Bearer {token}".encode() for name, token in (admin_tokens or {}).items()}

    def require_admin(self, request: Request) -> str:
        """The name of the admin token the request carries: the actor recorded in the history."""
        client = request.client.host if request.client else "unknown"
        if not self.admin_tokens:
            return f"http:{client}"
        given = request.headers.get("authorization", "").encode()
        # compare against every token, so the time taken does not tell which one nearly matched
        matches = [name for name, want in self.admin_tokens.items() if hmac.compare_digest(given, want)]
        if not matches:
            raise Unauthorized("this endpoint needs an admin token: Authorization: Bearer <token>")
        return f"token:{matches[0]}"

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> Response:
        is_ready = self.dataplane.ready()
        return json_response({"ready": is_ready}, 200 if is_ready else 400)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        name, version = request.path_params["name"], request.path_params.get("version")
        try:
            self.dataplane.check_served(name, version)  # an unknown model is a 404 whatever the body
            body = await read_body(request, self.limit)
            decoded = decode_request(body, _header_length(request))
            answer = await self.dataplane.infer(name, version, decoded, "rest", started)
        except Exception as exc:
            self.dataplane.failed(name, version, "rest", errors.status_of(exc), started)
            raise
        content, header_length = encode_response(answer)
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
            if name is not None:
                self.dataplane.check_served(name, version)
            body = await read_body(request, self.limit)
            answer = await self.dataplane.predict(name, version, body, top_k, started)
        except Exception as exc:
            self.dataplane.failed(name, version, "predict", errors.status_of(exc), started)
            raise
        return json_response(answer)

    async def metrics(self, request: Request) -> Response:
        monitor = self.dataplane.monitor
        if monitor is None:
            return Response(b"", media_type="text/plain")
        content, media_type = monitor.metrics.exposition()
        return Response(content, media_type=media_type)


def create_app(
    dataplane: DataPlane,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    also_serve: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None,
    admin_tokens: dict[str, str] | None = None,
) -> Starlette:
    """The ASGI app; `also_serve` runs beside it on the same loop (the gRPC server)."""
    h = Handlers(dataplane, max_body_bytes, admin_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await dataplane.manager.start()
        ticking = None
        if dataplane.monitor is not None:
            dataplane.monitor.start()
            ticking = asyncio.create_task(_tick(dataplane), name="monitor-tick")
        try:
            async with also_serve() if also_serve else contextlib.nullcontext():
                yield
        finally:
            if ticking is not None:
                ticking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
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
    return Starlette(
        routes=[*hot, Mount("/", app=_documented_api(dataplane, h))],
        lifespan=lifespan,
        exception_handlers=errors.handlers(),
    )


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


def _documented_api(dataplane: DataPlane, h: Handlers) -> FastAPI:
    """Metadata, configuration and the docs; the hot routes appear here for /docs with the same handlers."""
    app = FastAPI(
        title="shipyard",
        version=__version__,
        description="KServe v2 inference protocol and a friendly /predict API over ONNX Runtime.",
        default_response_class=Response,
        exception_handlers=errors.handlers(),
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
        h.require_admin(request)
        return json_response(await dataplane.repository_index())

    @app.post("/v2/repository/models/{name}/load", tags=["repository"])
    async def repository_load(request: Request, name: str) -> Response:
        h.require_admin(request)
        await dataplane.repository_load(name)
        return json_response({"name": name, "loaded": True})

    @app.post("/v2/repository/models/{name}/unload", tags=["repository"])
    async def repository_unload(request: Request, name: str) -> Response:
        h.require_admin(request)
        await dataplane.repository_unload(name)
        return json_response({"name": name, "loaded": False})

    @app.post(
        "/v2/repository/models/{name}/deploy", tags=["repository"], openapi_extra=documented(DeployRequest)
    )
    async def deploy(request: Request, name: str) -> Response:
        actor = h.require_admin(request)
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
        actor = h.require_admin(request)
        body = await admin_body(request, RollbackRequest)
        return json_response(await dataplane.rollback(name, reason=body.reason, actor=actor))

    # -- monitoring -------------------------------------------------------------------------------

    @app.post("/v1/models/{name}/feedback", tags=["monitoring"], openapi_extra=FEEDBACK_BODY)
    async def feedback(request: Request, name: str) -> Response:
        return json_response(dataplane.feedback(name, await read_body(request, h.limit)))

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
